"""The project's one atomic file write: checkpoints, caches, reports, figures and published models all go through it.

A reader never sees a half-written file: the content goes to a unique temporary file in the target folder (same
filesystem, so the rename is atomic), is flushed and fsynced, takes the permissions a plain ``open`` would give under
the process umask (``mkstemp`` alone leaves 0600, which hides published models from a serving user; a file an older
writer left at 0600 is opened up again by the next write), replaces the target (the file a symbolic link points to,
not the link) with ``os.replace``, and the folder is fsynced so the rename itself survives a power cut. On any
failure the temporary file is removed and the previous target, if any, is left untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_open", "atomic_torch_save", "atomic_write", "atomic_write_bytes", "atomic_write_text"]

#: Bytes of the target's name kept in the temporary file's name (``.{head}.XXXXXXXX.tmp``, at most 78 bytes).
_TMP_NAME_HEAD_BYTES = 64


def _umask_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file: 0o666 less the umask (read without changing it for long)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_dir(folder: Path) -> None:
    """Persist a rename in ``folder``; some filesystems (and Windows) cannot open a folder, which is harmless."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _name_head(name: str) -> str:
    """The first ``_TMP_NAME_HEAD_BYTES`` bytes of ``name`` (whole characters): the temporary file's name must fit
    the filesystem's 255 bytes whenever the target's does, and this head is enough to tell whose leftover it is."""
    return name.encode("utf-8", "surrogateescape")[:_TMP_NAME_HEAD_BYTES].decode("utf-8", "ignore")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """Open a binary file object whose content replaces ``path`` atomically when the block exits without error.

    Args:
        path: target file; missing parent folders are created.

    Yields:
        A writable binary file object (a temporary file beside ``path``).
    """
    path = Path(path)
    if path.is_symlink():
        # the file the link points to is replaced, not the link: replacing the link with a file left its target
        # (a model store the link serves from) stale
        path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{_name_head(path.name)}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(file)`` on a temporary file and move it over ``path`` atomically. Returns ``path``."""
    with atomic_open(path) as f:
        write(f)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically. Returns ``path``."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically. Returns ``path``."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically: a crash mid-write leaves the previous file, never a truncated one."""
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))
