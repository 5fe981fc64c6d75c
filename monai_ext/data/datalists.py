"""The JSON datalists the classification and segmentation bundles read: written by ``make-datalist``, the
cross-validation runner and the MONAI Label app, or by hand.

The format is MONAI's (``load_decathlon_datalist``) with the parts this project uses::

    {"class_names": ["benign", "malignant"],
     "train": [{"image": "images/a.png", "label": 0}, ...],        # segmentation: "label": mask path or [paths]
     "validation": [...],
     "test": [...]}                                                # optional

A hand-written datalist is checked whole before any training starts, and every problem is named with the file and
the item (``train[3]``), because the alternative is an ``IndexError`` from the loss or a missing file in the middle
of the first epoch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from monai_ext.io.atomic import atomic_write_text

Item = dict[str, Any]
Task = Literal["classification", "segmentation"]
PARTS = ("train", "validation", "test")


def write_split(split: Mapping[str, Sequence[Item]], class_names: Sequence[str], path: str | os.PathLike) -> Path:
    """Write one split and the class names as a JSON datalist (atomically).

    Relative paths (``image``, a segmentation ``label``) are written absolute, as they stand from the current
    folder: the reader resolves relative paths from the datalist's own folder, so a protocol built from a relative
    dataset root would otherwise point somewhere else once written."""
    parts = {name: [_absolute_paths(item) for item in items] for name, items in split.items()}
    return atomic_write_text(path, json.dumps({"class_names": list(class_names), **parts}, indent=1))


def read_split(path: str | os.PathLike, task: Task = "classification") -> dict[str, Any]:
    """Read and check a JSON datalist.

    Relative paths are read from the datalist's folder, as MONAI's ``load_decathlon_datalist`` reads them. A
    classification label is a class index or one of ``class_names`` (returned as its index).

    Args:
        path: the JSON file.
        task: ``"classification"`` (``label`` a class) or ``"segmentation"`` (``label`` a mask file or a list of
            mask files, merged).

    Returns:
        ``{"class_names": [...], "train": [...], "validation": [...], "test": [...]}`` with absolute paths.

    Raises:
        ValueError: the file is missing, is not JSON, lacks a part, or has an item that is malformed, has a label
            that is not a class, or names files that do not exist; the message names the file and the first items.
    """
    if task not in ("classification", "segmentation"):
        raise ValueError(f"task must be 'classification' or 'segmentation', got {task!r}")
    path = Path(path)
    data = _read_json_object(path)
    missing = {"class_names", "train", "validation"} - set(data)
    if missing:
        raise ValueError(f"datalist {str(path)!r} lacks {sorted(missing)!r}")
    class_names = _class_names(data["class_names"], path)
    result: dict[str, Any] = {"class_names": class_names}
    for part in PARTS:
        items = data.get(part, [])
        if not isinstance(items, list):
            raise ValueError(f"datalist {str(path)!r}: {part!r} must be a list of items, got {type(items).__name__}")
        result[part] = [_checked_item(item, f"{part}[{i}]", path, task, class_names) for i, item in enumerate(items)]
    _require_files(result, path)
    return {**{k: v for k, v in data.items() if k not in result}, **result}


def _read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; a byte-order mark (Windows editors write one) is allowed."""
    if not path.is_file():
        raise ValueError(f"datalist not found: {str(path)!r}" if not path.exists() else
                         f"datalist {str(path)!r} is not a file")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as e:
        raise ValueError(f"datalist {str(path)!r} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"datalist {str(path)!r} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
                         ) from None
    if not isinstance(data, dict):
        raise ValueError(f"datalist {str(path)!r} must be a JSON object with 'class_names', 'train' and "
                         f"'validation', got a {type(data).__name__}")
    return data


def _class_names(names: Any, path: Path) -> list[str]:
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"datalist {str(path)!r}: 'class_names' must be a non-empty list of names, got {names!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"datalist {str(path)!r}: 'class_names' has repeated names: {names!r}")
    return names


def _checked_item(item: Any, where: str, path: Path, task: Task, class_names: list[str]) -> Item:
    """One item with absolute paths and a class index for a label; ``where`` (``train[3]``) names it in errors."""
    if not isinstance(item, dict):  # a Decathlon "test" list of plain paths has no labels to evaluate against
        raise ValueError(f"datalist {str(path)!r}: {where} must be an object with 'image' and 'label', got {item!r}")
    if not isinstance(item.get("image"), str) or not item["image"]:
        raise ValueError(f"datalist {str(path)!r}: {where} needs 'image' (a file path), got {item!r}")
    checked = {**item, "image": _resolve(item["image"], path.parent)}
    if "label" not in item:
        raise ValueError(f"datalist {str(path)!r}: {where} has no 'label': {item!r}")
    if task == "classification":
        checked["label"] = _class_index(item["label"], class_names, where, path)
    else:
        checked["label"] = _mask_paths(item["label"], where, path)
    return checked


def _class_index(label: Any, class_names: list[str], where: str, path: Path) -> int:
    if isinstance(label, str) and label in class_names:
        return class_names.index(label)
    if isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(class_names):
        return label
    raise ValueError(f"datalist {str(path)!r}: {where} has label {label!r}, which is not a class: give an index "
                     f"0..{len(class_names) - 1} or one of {class_names!r}")


def _mask_paths(label: Any, where: str, path: Path) -> str | list[str]:
    if isinstance(label, str) and label:
        return _resolve(label, path.parent)
    if isinstance(label, list) and label and all(isinstance(p, str) and p for p in label):
        return [_resolve(p, path.parent) for p in label]
    raise ValueError(f"datalist {str(path)!r}: {where} needs 'label' as a mask file or a list of mask files, "
                     f"got {label!r}")


def _resolve(file: str, folder: Path) -> str:
    # MONAI's load_decathlon_datalist follows the same rule for image and label, but it cannot be called here: it
    # indexes test[0] (an empty test list, which this project's writers produce, raises IndexError) and rewrites any
    # other string of an item that happens to name an existing file.
    return os.path.normpath(os.path.join(folder, os.path.expanduser(file)))


def _require_files(split: Mapping[str, Any], path: Path) -> None:
    """Every image and mask exists, else one error naming how many are missing and the first few with their items."""
    missing = [(f"{part}[{i}]", file) for part in PARTS for i, item in enumerate(split[part])
               for file in _files_of(item) if not os.path.isfile(file)]
    if missing:
        shown = ", ".join(f"{where}: {file!r}" for where, file in missing[:3])
        raise ValueError(f"datalist {str(path)!r}: {len(missing)} file(s) not found ({shown}{', ...' * (len(missing) > 3)}"
                         f"); relative paths are read from the datalist's folder")


def _files_of(item: Item) -> list[str]:
    label = item["label"]
    masks = [label] if isinstance(label, str) else label if isinstance(label, list) else []
    return [item["image"], *masks]


def _absolute_paths(item: Item) -> Item:
    label = item.get("label")
    absolute = {**item, "image": os.path.abspath(item["image"])} if "image" in item else dict(item)
    if isinstance(label, str):
        absolute["label"] = os.path.abspath(label)
    elif isinstance(label, list):
        absolute["label"] = [os.path.abspath(p) if isinstance(p, str) else p for p in label]
    return absolute
