"""Settings as they arrive from YAML or from a command line."""

from __future__ import annotations

import math
import numbers
import os
from typing import Any

#: What a setting left empty arrives as from a ``monai.bundle run`` command line: fire passes ``--x null`` and
#: ``--x none`` on as text (only ``None`` becomes Python's None), so the YAML word and its command-line spelling agree.
UNSET_WORDS = ("", "none", "null")


def is_unset(value: Any) -> bool:
    """Whether an optional setting (a file, a folder, a digest) is left empty: None, or one of :data:`UNSET_WORDS`
    in any case."""
    return value is None or (isinstance(value, str) and value.strip().lower() in UNSET_WORDS)


def setting_text(value: Any, name: str) -> str:
    """A setting meant as text (a path, a name, a digest) as the text the user typed, whatever fire made of it.

    fire reads every command-line value as a Python literal where it can (``python -m monai.bundle run`` and
    ``python -m monai_ext`` alike): ``--input_dir 2024`` arrives as the int 2024 and ``--input_dir a,b`` as the tuple
    ``("a", "b")``. A whole number is written back in decimal and a tuple or list joined by commas, item by item;
    a float is refused because the text typed is lost (``2024.10`` arrives as 2024.1, ``1e3`` as 1000.0), and so are
    a bool (``True``) and anything else.

    Args:
        value: the setting as parsed.
        name: the setting's name, quoted in the error.

    Raises:
        ValueError: a float, a bool or another type, naming ``name`` and quoting ``value``.
    """
    if isinstance(value, (tuple, list)):
        return ",".join(setting_text(item, name) for item in value)
    if isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return str(os.fspath(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    # on a command line, fire keeps a quoted value as text: --input_dir "'2024.10'"
    hint = "; quote it on the command line to keep the text as typed, as \"'2024.10'\"" if isinstance(value, float) else ""
    raise ValueError(f"{name} must be text (a path or a name), got {type(value).__name__} {value!r}{hint}")


def path_setting(value: Any, name: str) -> str | None:
    """An optional file or folder setting: None when left empty (:func:`is_unset`), else its text
    (:func:`setting_text`: ``--input_dir 2024`` names the folder ``2024``).

    Raises:
        ValueError: a value that cannot be a path (a float, a bool, a dict), naming ``name`` and quoting it.
    """
    return None if is_unset(value) else setting_text(value, name)


def path_list_setting(value: Any, name: str) -> list[str]:
    """A setting holding several files (``input_files``): a list or tuple (``--input_files a.png,b.png``) with each
    item read by :func:`path_setting`, or one path (``--input_files scan.png``: one file, not letters); unset items
    and an unset setting give nothing.

    Raises:
        ValueError: an item that cannot be a path, naming ``name`` and quoting the item.
    """
    items = value if isinstance(value, (tuple, list)) else [value]
    return [path for path in (path_setting(item, name) for item in items) if path is not None]


def number_list_setting(value: Any, name: str, kind: type = float, expected: str | None = None) -> tuple | None:
    """A setting holding several numbers (a sweep, block ids) as YAML or fire hand it over.

    ``--probe#cs 0.1,1,10`` arrives as a tuple but ``--probe#cs 0.1`` as the float 0.1 and ``--probe#cs abc`` as the
    text ``'abc'``, which ``tuple()`` would split into letters: one number is a one-item list, and text is read as
    comma-separated numbers (``"0.1,1,10"``, as a YAML string may hold them).

    Args:
        value: the setting as parsed.
        name: the setting's name, quoted in the error.
        kind: ``float`` (finite real numbers; whole numbers accepted) or ``int`` (whole numbers, ``5.0`` too).
        expected: what the setting must be, for the error (default: "a number or a list of numbers").

    Returns:
        The numbers as ``kind``, or None when left empty (null, none, ``[]``, ``""``): the caller's default applies.

    Raises:
        ValueError: anything else, ``f"{name} must be {expected}, got {value!r}"``.
    """
    if is_unset(value) or (isinstance(value, (list, tuple)) and not value):
        return None
    what = "whole numbers" if kind is int else "numbers"
    error = ValueError(f"{name} must be {expected or f'a number or a list of {what}'}, got {value!r}")
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else [value]
    parsed = []
    for item in items:
        if isinstance(item, str):
            try:  # read as a number first: int("5.0") fails where the float 5.0 is taken as 5
                item = float(item.strip()) if kind is int else kind(item.strip())
            except ValueError:
                raise error from None
        if isinstance(item, bool) or not isinstance(item, numbers.Real):
            raise error
        if not math.isfinite(item):  # NaN would pass any range check the caller makes
            raise error
        if kind is int and not float(item).is_integer():  # 5.0 from a YAML list or a spreadsheet is 5
            raise error
        parsed.append(kind(item))
    return tuple(parsed)
