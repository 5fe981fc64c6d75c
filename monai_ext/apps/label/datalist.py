"""Class labels collected in a MONAI Label datastore, as the classification bundle's JSON datalist.

A classification label is a small file saved for an image through ``PUT /datastore/label?image=<id>&tag=final``:
JSON ``{"class": "malignant"}`` (or ``{"label": ...}``, a class index, or the plain class name as text). MONAI
Label's stock clients draw masks, not classes, so the format is this app's own; the README shows the call.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_ext.data.datalists import write_split
from monai_ext.data.downstream import validation_from_train


def read_class_label(path: str | os.PathLike, class_names: Sequence[str]) -> int:
    """The class index a label file names.

    Raises:
        ValueError: unreadable file, or a class that is not one of ``class_names``, naming the file.
    """
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read the class label ({type(e).__name__}: {e})") from e
    try:
        value: Any = json.loads(text)
    except ValueError:
        value = text  # a plain class name
    if isinstance(value, dict):
        value = value.get("class", value.get("label"))
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(class_names):
        return value
    if isinstance(value, str) and value in class_names:
        return list(class_names).index(value)
    raise ValueError(f"{path}: label {value!r} is not one of the model's classes {list(class_names)!r}")


def labelled_datalist(
    items: Sequence[Mapping[str, str]], class_names: Sequence[str], out: str | os.PathLike,
    val_fraction: float = 0.2, seed: int = 0,
) -> tuple[Path, dict[str, str]]:
    """Write the datastore's labelled images as a datalist with a stratified validation part.

    Args:
        items: MONAI Label ``datastore.datalist()`` entries, ``{"image": path, "label": label file}``.
        class_names: the served model's classes (the fine-tuned model keeps them).
        out: the JSON datalist to write (atomically).
        val_fraction: share of each class held out for validation (at least one image per class).
        seed: split seed.

    Returns:
        (datalist path, {label file: reason} for labels that were skipped).

    Raises:
        ValueError: a class with fewer than two labelled images (one must go to validation).
    """
    train, skipped = [], {}
    for item in items:
        try:
            train.append({"image": item["image"], "label": read_class_label(item["label"], class_names)})
        except ValueError as e:
            skipped[str(item["label"])] = str(e)
    counts = {name: sum(it["label"] == index for it in train) for index, name in enumerate(class_names)}
    short = {name: n for name, n in counts.items() if n < 2}
    if short:
        raise ValueError(f"every class needs at least 2 labelled images (one for validation); too few: {short!r}")
    train, validation = validation_from_train(train, val_fraction, seed)
    return write_split({"train": train, "validation": validation, "test": []}, class_names, out,
                       "classification"), skipped
