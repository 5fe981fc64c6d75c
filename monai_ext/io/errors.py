"""Errors of reading files: unreadable ones, and readable ones that are deliberately left out."""

from __future__ import annotations


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
