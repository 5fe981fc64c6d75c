"""Class labels collected in a MONAI Label datastore, as the classification bundle's JSON datalist.

A classification label is a small file saved for an image through ``PUT /datastore/label?image=<id>&tag=class``:
JSON ``{"class": "malignant"}`` (or ``{"label": ...}``, a class index, or the plain class name as text). MONAI
Label's stock clients draw masks, not classes, so the format is this app's own; the README shows the call. (Class
files saved under ``tag=final`` are read too; see :mod:`monai_ext.apps.label.datastore` for why ``class``.)
"""

from __future__ import annotations

import codecs
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_ext.apps.label.split import SplitMemory, image_identity, stable_split
from monai_ext.data.datalists import class_index_of, write_split
from monai_ext.io.errors import UnreadableImageError
from monai_ext.io.images import read_image


def read_class_label(path: str | os.PathLike, class_names: Sequence[str]) -> int:
    """The class index a label file names.

    The file holds JSON ``{"class": name or index}`` (or ``"label"``), a bare JSON index, or the plain class name as
    text; an index may be written as text (``{"class": "1"}``), read by the datalists' own rule
    (:func:`~monai_ext.data.datalists.class_index_of`).

    Raises:
        ValueError: unreadable file, a class that is not one of ``class_names``, or a bare ``2`` where a class is
            named ``"2"`` and another has index 2 (BI-RADS classes), naming the file.
    """
    try:
        text = _label_text(Path(path))
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read the class label ({type(e).__name__}: {e})") from e
    try:
        value: Any = json.loads(text)
    except ValueError:
        value = text  # a plain class name
    if isinstance(value, dict):
        value = value.get("class", value.get("label"))
    index = class_index_of(value, class_names)
    names = list(class_names)
    if not isinstance(value, str) and text in names and index not in (None, names.index(text)):
        # a bare `2` parses as the JSON index 2, but the annotator may have typed the class name "2"
        raise ValueError(f"{path}: label {text!r} is both the class named {text!r} and the index of class "
                         f"{names[index]!r}; write {{\"class\": \"{text}\"}} or {{\"class\": {index}}}")
    if index is None and text in names:
        index = names.index(text)  # `3` with classes "2", "3", "4": no index 3, so the name
    if index is None:
        raise ValueError(f"{path}: label {value!r} is not one of the model's classes {names!r}")
    return index


def _label_text(path: Path) -> str:
    """The text of a label file: UTF-8, with or without a byte-order mark, or UTF-16 with one (Windows
    PowerShell's ``Out-File`` and Excel write them; the mark read as part of the text made a valid class unknown)."""
    raw = path.read_bytes()
    encoding = "utf-16" if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "utf-8-sig"
    return raw.decode(encoding).strip()


def labelled_datalist(
    items: Sequence[Mapping[str, str]], class_names: Sequence[str], out: str | os.PathLike,
    val_fraction: float = 0.2, seed: int = 0, memory: SplitMemory | None = None,
) -> tuple[Path, dict[str, str]]:
    """Write the datastore's labelled images as a datalist with a stratified validation part that is stable across
    training rounds (:func:`~monai_ext.apps.label.split.stable_split`).

    Args:
        items: ``{"image": path, "label": label file, "id"?: datastore image id}``
            (:func:`~monai_ext.apps.label.datastore.class_label_items`); without ``id``, the image's file name less
            its suffix.
        class_names: the served model's classes (the fine-tuned model keeps them).
        out: the JSON datalist to write (atomically); each item keeps its ``id``.
        val_fraction: share of each class held out for validation (at least one image per class), of the images
            new to the served model's line.
        seed: ranks the images new to the served model's line.
        memory: which images the served model's line trained and validated on (they keep their part); None for a
            model that trained on none of the datastore's images.

    Returns:
        (datalist path, {label file: reason} for labels that were skipped: a label naming no class, or an image
        that cannot be read, such as an upload cut off at 0 bytes, which would otherwise leave its class short in
        validation while the summary counted it).

    Raises:
        ValueError: a class with fewer than two labelled images (one must go to validation), or one whose images
            all trained the served model (see :func:`~monai_ext.apps.label.split.stable_split`).
    """
    train, skipped = [], {}
    for item in items:
        try:
            label = read_class_label(item["label"], class_names)
            read_image(item["image"])  # decoded now, so that the split and its counts hold only usable images
        except (ValueError, UnreadableImageError) as e:
            skipped[str(item["label"])] = str(e)
            continue
        train.append({"image": item["image"], "label": label, "id": image_identity(item)})
    counts = {name: sum(it["label"] == index for it in train) for index, name in enumerate(class_names)}
    short = {name: n for name, n in counts.items() if n < 2}
    if short:
        raise ValueError(f"every class needs at least 2 labelled images (one for validation); too few: {short!r}"
                         f"{skipped_text(skipped)}")
    train, validation = stable_split(train, [f"class {class_names[it['label']]!r}" for it in train], val_fraction,
                                     seed, memory)
    return write_split({"train": train, "validation": validation, "test": []}, class_names, out,
                       "classification"), skipped


def skipped_text(skipped: Mapping[str, str], most: int = 5) -> str:
    """``"; N label(s) skipped: reason; reason"`` for an error message (the first ``most``), or ``""``.

    A "too few labels" error is only half an answer when labels were there but unusable (a misspelt class, a mask
    of the wrong size): the reasons say what to fix.
    """
    if not skipped:
        return ""
    shown = "; ".join(list(skipped.values())[:most])
    more = f"; and {len(skipped) - most} more" if len(skipped) > most else ""
    return f"; {len(skipped)} label(s) skipped: {shown}{more}"
