"""The project's one atomic write: replaced content, umask permissions, no debris on failure, never a torn file."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from monai_ext.io.atomic import atomic_open, atomic_torch_save, atomic_write, atomic_write_bytes, atomic_write_text


@pytest.fixture
def umask() -> Iterator[int]:
    """A umask unlike the usual 0o022, so that a mode taken from it cannot pass by chance; restored afterwards."""
    previous = os.umask(0o027)
    try:
        yield 0o027
    finally:
        os.umask(previous)


def write_with(kind: str) -> Callable[[Path, bytes], Path]:
    """Each public entry point, as a ``write(path, data)``."""
    def via_open(path: Path, data: bytes) -> Path:
        with atomic_open(path) as f:
            f.write(data)
        return path

    return {
        "bytes": atomic_write_bytes,
        "text": lambda path, data: atomic_write_text(path, data.decode("latin-1"), encoding="latin-1"),
        "callback": lambda path, data: atomic_write(path, lambda f: f.write(data)),
        "open": via_open,
    }[kind]


KINDS = ["bytes", "text", "callback", "open"]


@pytest.mark.parametrize("kind", KINDS)
def test_content_replaces_the_previous_file_with_umask_permissions(tmp_path, umask, kind) -> None:
    target = tmp_path / "report.json"
    target.write_bytes(b"old content that is longer than the new one")
    os.chmod(target, 0o600)  # the new file's mode comes from the umask, not from the file it replaces
    assert write_with(kind)(target, b"new") == target
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


@pytest.mark.parametrize("kind", KINDS)
def test_the_process_umask_is_the_same_after_a_write(tmp_path, umask, kind) -> None:
    """The mode is read by setting the umask to 0 and back: without the restore, every later file the process made
    (logs, exports, a server's uploads) was world-writable."""
    write_with(kind)(tmp_path / "report.json", b"new")
    assert os.umask(umask) == umask  # os.umask returns the mask it replaces
    (tmp_path / "later.txt").write_bytes(b"")
    assert stat.S_IMODE((tmp_path / "later.txt").stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("kind", KINDS)
def test_the_content_is_fsynced_before_the_rename_and_the_folder_after_it(tmp_path, monkeypatch, kind) -> None:
    """Without the file's fsync a power cut after the rename can leave an empty or partial checkpoint under the
    final name; without the folder's, the rename itself can be lost (the old file back after a reboot)."""
    target = tmp_path / "sub" / "model.pt"
    real_fsync, synced = os.fsync, []

    def recording_fsync(fd: int) -> None:
        info = os.fstat(fd)
        synced.append((stat.S_ISDIR(info.st_mode), info.st_ino, info.st_size, target.exists()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    write_with(kind)(target, b"weights")
    files = [(ino, size, existed) for is_dir, ino, size, existed in synced if not is_dir]
    folders = [(ino, existed) for is_dir, ino, size, existed in synced if is_dir]
    # the written file, holding all its bytes, before it took the target's name; then the folder, after the rename
    assert files == [(target.stat().st_ino, len(b"weights"), False)], synced
    assert folders == [(target.parent.stat().st_ino, True)], synced
    assert [is_dir for is_dir, *_ in synced] == [False, True]


@pytest.mark.parametrize("kind", KINDS)
def test_missing_parent_folders_are_created(tmp_path, kind) -> None:
    target = tmp_path / "a" / "b" / "c.bin"
    write_with(kind)(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"


def test_a_failing_writer_leaves_the_previous_file_and_no_temporary(tmp_path) -> None:
    target = tmp_path / "model.pt"
    target.write_bytes(b"previous model")

    def half_then_fail(f) -> None:
        f.write(b"half of a new mod")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, half_then_fail)
    # BaseException too: an interrupted job must not leave debris
    with pytest.raises(KeyboardInterrupt), atomic_open(target) as f:
        f.write(b"partial")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"previous model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_torch_save_round_trips_with_weights_only(tmp_path, umask) -> None:
    state = {"weight": torch.arange(6.0).reshape(2, 3), "step": 7}
    path = atomic_torch_save(state, tmp_path / "ckpt" / "model.pt")
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded["weight"], state["weight"]) and loaded["step"] == 7
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_concurrent_writers_never_produce_a_torn_file(tmp_path) -> None:
    target = tmp_path / "chunk.bin"
    payloads = [bytes([value]) * 200_000 for value in (1, 2)]  # big enough that a plain write takes several syscalls
    target.write_bytes(payloads[0])
    rounds, start = 40, threading.Barrier(3)
    seen: set[bytes] = set()
    done = threading.Event()

    def writer(payload: bytes) -> None:
        start.wait()
        for _ in range(rounds):
            atomic_write_bytes(target, payload)

    def reader() -> None:
        start.wait()
        while not done.is_set():  # reads until both writers have finished, however long they take
            data = target.read_bytes()
            seen.add(data[:1] + bytes([len(set(data))]) + len(data).to_bytes(4, "big"))

    threads = [threading.Thread(target=writer, args=(p,)) for p in payloads] + [threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    for thread in threads[:2]:
        thread.join()
    done.set()
    threads[2].join()
    # every read saw one whole payload: a single byte value, full length
    assert seen <= {p[:1] + b"\x01" + len(p).to_bytes(4, "big") for p in payloads}
    assert target.read_bytes() in payloads
    assert [p.name for p in tmp_path.iterdir()] == ["chunk.bin"]


@pytest.mark.parametrize("name", ["超" * 81 + ".png", "a" * 255], ids=["cjk_247_bytes", "ascii_255_bytes"])
@pytest.mark.parametrize("kind", ["bytes", "open"])
def test_any_name_the_filesystem_takes_can_be_written(tmp_path, kind: str, name: str) -> None:
    """The temporary name (``.{head}.XXXXXXXX.tmp``) must not be longer than the target's by more than it can take."""
    write_with(kind)(tmp_path / name, b"content")
    assert [p.name for p in tmp_path.iterdir()] == [name] and (tmp_path / name).read_bytes() == b"content"


@pytest.mark.parametrize("kind", KINDS)
def test_a_symbolic_link_keeps_pointing_at_the_written_file(tmp_path, kind) -> None:
    """The link was replaced by a regular file, and the file it pointed to (a model store) stayed as it was."""
    store = tmp_path / "store"
    store.mkdir()
    (store / "real.pt").write_bytes(b"old")
    link = tmp_path / "served.pt"
    link.symlink_to(store / "real.pt")
    write_with(kind)(link, b"new")
    assert link.is_symlink() and (store / "real.pt").read_bytes() == b"new"
    assert sorted(p.name for p in store.iterdir()) == ["real.pt"]
