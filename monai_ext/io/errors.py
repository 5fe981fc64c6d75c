"""Errors of reading files (unreadable ones, and readable ones that are deliberately left out), and which errors
mean a user's mistake: those end in one line and exit code 2 on every command line (``python -m monai_ext``,
``python -m monai.bundle run``)."""

from __future__ import annotations

import contextlib
import errno
import logging
import re
import warnings
from collections.abc import Iterator, Sequence

from monai_ext.io.once import every_time

#: Errors that mean "the command line asks for something impossible" (validation raises these naming the value):
#: reported as one line with exit code 2. Set MONAI_EXT_TRACEBACK=1 to see the traceback instead.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError, PermissionError)


def one_line(message: str) -> str:
    """``message`` on one line: terminal colour codes dropped (torch's refusals carry them), whitespace runs joined."""
    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", message).split())


#: Modules whose ``USER_ERRORS`` are validation of what a user asked for: this package, and MONAI's bundle config
#: machinery (an undefined ``@reference``, a malformed override). Told by module name, not file path: a package
#: imported through a symbolic link (a cluster's /home -> /gpfs/...) has frames under the linked path.
_VALIDATING_MODULES = (__name__.split(".")[0] + ".", "monai.bundle.")


def raised_by_validation(error: BaseException) -> bool:
    """Whether ``error`` was raised in :data:`_VALIDATING_MODULES` (its traceback's innermost frame is there).

    A ``ValueError`` from inside a library (torch's "Expected input batch_size ... to match", scikit-learn's "Input
    contains NaN" after a diverged run, a DataLoader worker's error re-raised by torch) is a fault to debug, not a
    user's mistake: it keeps its traceback."""
    trace = error.__traceback__
    if trace is None:  # made but never raised: nothing says where it came from
        return False
    while trace.tb_next is not None:
        trace = trace.tb_next
    return module_name(trace.tb_frame.f_globals).startswith(_VALIDATING_MODULES)


def module_name(frame_globals: dict) -> str:
    """The module a frame runs in: its import name even when it runs as ``__main__`` (``python -m
    monai_ext.cli``), whose spec keeps the real name; "" for code without a module (MONAI's ``eval`` of a config
    expression)."""
    name = str(frame_globals.get("__name__", ""))
    spec = frame_globals.get("__spec__")
    return getattr(spec, "name", name) if name == "__main__" and spec is not None else name


def user_error_in(error: BaseException) -> BaseException | None:
    """The outermost user's mistake in ``error``'s cause chain, or None: the operating system refusing a path the
    user gave (:func:`names_a_file`), or one of ``USER_ERRORS`` that validation raised (:func:`raised_by_validation`).

    MONAI's bundle runner wraps what a config expression raised in ``RuntimeError``s ("Failed to evaluate ...");
    the validation error inside names the bad value. Errors wrapped deliberately below it (a ``CheckpointError``
    over an unpickling error) keep their own, clearer message."""
    current: BaseException | None = error
    while current is not None:
        if names_a_file(current):
            return current
        if isinstance(current, USER_ERRORS):
            return current if raised_by_validation(current) else None
        current = current.__cause__
    return None


#: Operating-system refusals that come from the paths or the disk a user gave: missing, wrong kind, no permission,
#: too long, full or read-only. Others (too many open files, a bad descriptor, a cross-device rename) are faults.
USER_ERRNOS = frozenset(getattr(errno, name) for name in (
    "ENOENT", "ENOTDIR", "EISDIR", "EACCES", "EPERM", "EEXIST", "ENAMETOOLONG", "ENOSPC", "EDQUOT", "EROFS", "ELOOP")
    if hasattr(errno, name))


def names_a_file(error: BaseException) -> bool:
    """Whether ``error`` is the operating system refusing a file the user gave (``[Errno 20] Not a directory:
    'out/sub'``): the message names the file and the reason, wherever it was raised."""
    return isinstance(error, OSError) and error.errno in USER_ERRNOS and error.filename is not None


def root_cause(error: BaseException) -> str:
    """The innermost cause of an exception chain as one line (MONAI wraps transform errors in RuntimeErrors).

    The walk stops at the project's own reading errors (:class:`UnreadableImageError`, :class:`SkippedSource`):
    their message names the file and the reason, while what they wrap (a decoder's exception) names neither."""
    while error.__cause__ is not None and not isinstance(error, (UnreadableImageError, SkippedSource)):
        error = error.__cause__
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300] if text else ''}"


class UnreadableImageError(ValueError):
    """A file that is not a decodable image; the message names the file and the reason."""


class SkippedSource(ValueError):
    """A source that is valid but deliberately not ingested (a modality filter, a volume with no content)."""


class _MessageList(logging.Handler):
    """A logging handler that keeps each record's message, on one line."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(one_line(record.getMessage()))


@contextlib.contextmanager
def collected_reader_warnings(loggers: Sequence[str] = ("pydicom",)) -> Iterator[list[str]]:
    """Warnings raised (``warnings``) and logged (``loggers``) while reading a file, collected instead of printed.

    Over a scanner archive, pydicom's notes on odd files ("Invalid value for VR IS", "Expected explicit VR, but
    found implicit VR", excess pixel padding) would be printed among the progress bar's updates, thousands of lines
    that name no file; a batch job keeps them under the file's name instead. pydicom sends most notes both ways, so
    repeats are dropped (first occurrence kept). Only notes about data are kept (``UserWarning``, ``RuntimeWarning``
    and their kinds); others, such as a library's ``DeprecationWarning`` on its first import, are no note about the
    file and go on to the warning filters as if not caught.

    Yields:
        The list the messages are added to; complete when the block ends.
    """
    messages: list[str] = []
    passed_on: list[warnings.WarningMessage] = []
    handler = _MessageList(messages)
    chosen = [logging.getLogger(name) for name in loggers]
    propagate = [logger.propagate for logger in chosen]
    for logger in chosen:
        logger.addHandler(handler)
        logger.propagate = False  # otherwise Python's last-resort handler prints them too
    try:
        # every note, also one said before in this job: these are kept under the file's name, not shown
        with warnings.catch_warnings(record=True) as caught, every_time():
            warnings.simplefilter("always")
            try:
                yield messages
            finally:
                for warning in caught:
                    if issubclass(warning.category, (UserWarning, RuntimeWarning)):
                        messages.append(one_line(str(warning.message)))
                    else:
                        passed_on.append(warning)
                messages[:] = dict.fromkeys(messages)
        for warning in passed_on:  # outside catch_warnings: the caller's filters decide
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    finally:
        for logger, before in zip(chosen, propagate):
            logger.removeHandler(handler)
            logger.propagate = before
