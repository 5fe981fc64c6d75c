"""Settings as they arrive from YAML or from a command line."""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

#: What a setting left empty arrives as from a ``monai.bundle run`` command line: fire passes ``--x null`` and
#: ``--x none`` on as text (only ``None`` becomes Python's None), so the YAML word and its command-line spelling agree.
UNSET_WORDS = ("", "none", "null")


def is_unset(value: Any) -> bool:
    """Whether an optional setting (a file, a folder, a digest) is left empty: None, or one of :data:`UNSET_WORDS`
    in any case."""
    return value is None or (isinstance(value, str) and value.strip().lower() in UNSET_WORDS)


#: The command line whose typed text :func:`setting_text` recovers; None: ``sys.argv`` (a ``monai.bundle run``
#: process). ``python -m monai_ext`` sets it to the arguments it runs (:func:`typed_command_line`).
_COMMAND_LINE: list[str] | None = None


@contextlib.contextmanager
def typed_command_line(args: Sequence[str]) -> Iterator[None]:
    """Within the block, :func:`setting_text` recovers typed text from ``args`` instead of ``sys.argv``: the
    ``monai_ext`` command line may be run in-process with arguments of its own (``main([...])``)."""
    global _COMMAND_LINE
    previous, _COMMAND_LINE = _COMMAND_LINE, list(args)
    try:
        yield
    finally:
        _COMMAND_LINE = previous


def typed_number_texts(value: int | float, argv: Sequence[str] | None = None) -> list[str]:
    """The texts on the command line that fire reads as this very number, sorted.

    fire reads ``2024_01`` as 202401, ``0x10`` as 16, ``+5`` as 5 and ``2024.10`` as 2024.1: writing the number back
    gives another path. The command line's values (``--name value``, ``--name=value``, plain words, and the items of
    ``a,b``) that fire reads as a number of the same type and value are the candidates; more than one text
    (``--a 0x10 --b 16``) means the one meant cannot be told.

    Args:
        value: the number fire made of a setting.
        argv: the command line (default: the one set by :func:`typed_command_line`, else ``sys.argv[1:]``).
    """
    from fire.parser import DefaultParseValue

    if argv is None:
        argv = _COMMAND_LINE if _COMMAND_LINE is not None else sys.argv[1:]
    texts = set()
    for arg in argv:
        word = arg.split("=", 1)[1] if arg.startswith("--") and "=" in arg else arg
        if word.startswith("-") and not word[1:2].isdigit():  # an option's name, not a value
            continue
        for part in {word, *word.strip("[]()").split(",")}:
            part = part.strip()
            try:
                parsed = DefaultParseValue(part)
            except Exception:  # noqa: BLE001, S112 - a word fire cannot read is no number
                continue
            if type(parsed) is type(value) and parsed == value:
                texts.add(part)
    return sorted(texts)


def setting_text(value: Any, name: str) -> str:
    """A setting meant as text (a path, a name, a digest) as the text the user typed, whatever fire made of it.

    fire reads every command-line value as a Python literal where it can (``python -m monai.bundle run`` and
    ``python -m monai_ext`` alike): ``--input_dir 2024`` arrives as the int 2024, ``--input_dir 2024_01`` as 202401,
    ``--input_dir 0x10`` as 16 and ``--input_dir a,b`` as the tuple ``("a", "b")``. A number is given back as the
    command line typed it (:func:`typed_number_texts`), a whole number found nowhere on it (a YAML value) in
    decimal; a tuple or list is joined by commas, item by item. Refused: a number typed in two ways (which one is
    meant cannot be told), a float not found on the command line (its text is lost: ``1e3`` arrives as 1000.0), a
    bool (``True``) and anything else.

    Args:
        value: the setting as parsed.
        name: the setting's name, quoted in the error.

    Raises:
        ValueError: naming ``name``, quoting ``value`` and, for a number, the quoting that keeps it text.
    """
    if isinstance(value, (tuple, list)):
        return ",".join(setting_text(item, name) for item in value)
    if isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return str(os.fspath(value))
    hint = ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        typed = typed_number_texts(value)
        if len(typed) == 1:  # 2024_01 read as 202401: the folder is the one typed, not the number
            return typed[0]
        if not typed and isinstance(value, int):  # from YAML, or typed as its own decimal
            return str(value)
        # on a command line, fire keeps a quoted value as text: --input_dir "'2024.10'"
        shown = " or ".join(f"\"'{text}'\"" for text in typed) or f"\"'{value!r}'\""
        hint = f"; quote it on the command line to keep the text as typed, as {shown}"
        if typed:
            hint = f", typed as {' and '.join(typed)} on the command line{hint}"
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
