"""Finding a file whose name is spelled in another Unicode form than the list that names it."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path


def unicode_twin(path: str | os.PathLike) -> Path | None:
    """The existing path that differs from ``path`` only in the Unicode form of its names, or None where ``path``
    exists as spelled or no such path does.

    macOS writes names decomposed (NFD: "e" + combining accent) while an editor or spreadsheet saves the list that
    names them composed (NFC), or the other way round: both look alike, compare unequal, and the file reads as
    missing. Each name along ``path`` that is not found as spelled is looked up among its folder's entries by its
    NFC form; one match is taken, none or several (two files that differ only in form) give None.

    Args:
        path: a file or folder as a list names it.

    Returns:
        The path as the disk spells it, or None.
    """
    path = Path(path)
    if os.path.lexists(path):
        return None
    current = Path(path.anchor) if path.anchor else Path()
    for name in path.parts[1:] if path.anchor else path.parts:
        step = current / name
        if not os.path.lexists(step):
            wanted = unicodedata.normalize("NFC", name)
            try:
                found = [entry for entry in os.listdir(current) if unicodedata.normalize("NFC", entry) == wanted]
            except OSError:  # not a folder, or unreadable: nothing to find below it
                return None
            if len(found) != 1:
                return None
            step = current / found[0]
        current = step
    return current if current != path else None
