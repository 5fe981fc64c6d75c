"""Notes said once per job: the per-file notes of the readers (a DICOM read resampled to square pixels, 12-bit data
in a 16-bit picture) are said the first time a file is read, not at every read.

A training reads every file at every epoch, in DataLoader workers forked anew at each epoch: Python's own
once-per-message memory (and any set kept in a worker) goes with the worker, so every epoch said each note again
(100 epochs of a scanner's 1000 such files: 100 000 lines). This memory is a shared anonymous memory map, made at
import: processes forked from this one (DataLoader workers) share it with it and with each other. Processes started
otherwise (spawned, torchrun's ranks) have their own and say a note once each.

Written here: Python's ``warnings`` filters and ``functools.cache`` are per process, and a ``multiprocessing``
manager would start a server process in every job for a few bits.
"""

from __future__ import annotations

import hashlib
import mmap
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["every_time", "first_time", "warn_once"]

#: Bits of the memory (512 KB). A note sets two bits, chosen by its hash: after 100 000 distinct notes about 0.2 % of
#: new ones find both set already and go unsaid; earlier, far fewer.
_BITS = 1 << 22
_SEEN = mmap.mmap(-1, _BITS // 8)
#: How deep in :func:`every_time` blocks this process is.
_EVERY_TIME = [0]


def first_time(note: str) -> bool:
    """Whether ``note`` (a message naming its file) is said for the first time in this job, remembering it.

    Two processes asking at the same instant may both be told yes: the note is then said twice, never lost. Inside
    :func:`every_time`, always yes.
    """
    digest = hashlib.blake2b(note.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    new = False
    for position in (int.from_bytes(digest[:4], "little") % _BITS, int.from_bytes(digest[4:], "little") % _BITS):
        byte, bit = divmod(position, 8)
        if not _SEEN[byte] >> bit & 1:
            _SEEN[byte] |= 1 << bit
            new = True
    return new or _EVERY_TIME[0] > 0


@contextmanager
def every_time() -> Iterator[None]:
    """Within the block, every note is said (and remembered): for a caller that collects a file's notes to keep them
    under its name (a corpus chunk's record, :func:`~monai_ext.io.errors.collected_reader_warnings`), which a note
    said before in the job (an earlier ingestion in this process) left empty."""
    _EVERY_TIME[0] += 1
    try:
        yield
    finally:
        _EVERY_TIME[0] -= 1


def warn_once(message: str, category: type[Warning] = UserWarning, stacklevel: int = 1) -> None:
    """``warnings.warn`` (``stacklevel`` counted from the caller, as there) the first time ``message``, which names its
    file, is given in this job (:func:`first_time`)."""
    if first_time(message):
        warnings.warn(message, category, stacklevel=stacklevel + 1)
