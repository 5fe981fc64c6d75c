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
import logging
import os
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from monai_ext.io.atomic import atomic_write_text
from monai_ext.io.images import frames_held
from monai_ext.io.paths import unicode_twin

logger = logging.getLogger(__name__)

Item = dict[str, Any]
Task = Literal["classification", "segmentation"]
PARTS = ("train", "validation", "test")


def write_split(split: Mapping[str, Sequence[Item]], class_names: Sequence[str], path: str | os.PathLike,
                task: Task) -> Path:
    """Write one split and the class names as a JSON datalist (atomically).

    Relative paths (``image``, a segmentation ``label``) are written absolute, as they stand from the current
    folder: the reader resolves relative paths from the datalist's own folder, so a protocol built from a relative
    dataset root would otherwise point somewhere else once written.

    Args:
        split: ``{"train": [...], "validation": [...], "test": [...]}`` items.
        class_names: the classes.
        path: the JSON file to write.
        task: ``"classification"`` (a label is a class index or name, written as it is) or ``"segmentation"`` (a
            label is a mask file or a list of them, written absolute). No default: a segmentation split written as
            a classification one would keep relative mask paths that the reader then resolves from the wrong folder.

    Returns:
        ``path``.
    """
    _check_task(task)
    parts = {name: [_absolute_paths(item, task) for item in items] for name, items in split.items()}
    return atomic_write_text(Path(path).expanduser(), json.dumps({"class_names": list(class_names), **parts}, indent=1))


def check_split(split: Mapping[str, Sequence[Item]], class_names: Sequence[str], path: str | os.PathLike,
                task: Task) -> None:
    """:func:`read_split`'s checks on a split before it is written to ``path``: a protocol that lists a file
    missing on disk or an image twice is refused by make-datalist and before cross-validation's first fold trains,
    not when a bundle reads the datalist (after earlier folds have trained).

    Raises:
        ValueError: as :func:`read_split`, naming ``path``.
    """
    _check_task(task)
    path = Path(_absolute(os.fspath(path)))
    written = {part: [_absolute_paths(item, task) for item in split.get(part, [])] for part in PARTS}
    names = _class_names(list(class_names), path, task)
    checked = {part: [_checked_item(item, f"{part}[{i}]", path, task, names) for i, item in enumerate(items)]
               for part, items in written.items()}
    _require_no_repeats(checked, path)
    _require_patients_apart(checked, path)
    _require_files(checked, path, written)


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
        ValueError: the file is missing, is not JSON, lacks ``class_names`` or has no item at all, or has an item
            that is malformed, has a label that is not a class, names files that do not exist or repeats an image
            where that would count it twice; the message names the file and the first items. A part left out is
            empty: the bundle refuses it only when it uses it
            (:func:`monai_ext.apps.bundle_support.split_part`).
    """
    _check_task(task)
    path = Path(_absolute(os.fspath(path)))
    data = _read_json_object(path)
    if "class_names" not in data:
        raise ValueError(f"datalist {str(path)!r} lacks 'class_names'")
    _refuse_misnamed_parts(data, path)
    if not any(data.get(part) for part in PARTS):
        raise ValueError(f"datalist {str(path)!r} has no items in any of {list(PARTS)!r}")
    class_names = _class_names(data["class_names"], path, task)
    result: dict[str, Any] = {"class_names": class_names}
    checked: dict[str, list[Item]] = {}
    for part in PARTS:
        items = data.get(part, [])
        if not isinstance(items, list):
            raise ValueError(f"datalist {str(path)!r}: {part!r} must be a list of items, got {type(items).__name__}")
        checked[part] = [_checked_item(item, f"{part}[{i}]", path, task, class_names) for i, item in enumerate(items)]
    _require_no_repeats(checked, path)
    # before _same_keys drops a patient that only some items of a part give: the others' patients were then
    # unchecked, and a patient in test and in training was read without a word
    _require_patients_apart(checked, path, warn=True)
    for part in PARTS:
        result[part] = _same_keys(checked[part], part, path)
    _require_files(result, path, data)
    warn_of_several_frames(result, path)
    return {**{k: v for k, v in data.items() if k not in result}, **result}


#: Names other datalists give the parts (MONAI's Decathlon lists say "training"; scripts write "val").
_PART_ALIASES = {"training": "train", "val": "validation", "valid": "validation", "testing": "test", "eval": "test"}


def _refuse_misnamed_parts(data: dict[str, Any], path: Path) -> None:
    """Refuse a key that names a part this reader does not read while that part is absent (``"val"``, a misspelt
    ``"tset"``): its items were passed over, and training ran without a test part or stopped on "no validation
    items" without a word about the key. Other keys (a description, a source) are kept as they are."""
    import difflib

    for key, items in data.items():
        # only a list of items ({"image": ...}) is a part under another name; notes or a list of sources are not
        if key in PARTS or not isinstance(items, list) or not items or \
                not all(isinstance(item, dict) and "image" in item for item in items):
            continue
        meant = _PART_ALIASES.get(key.lower()) or next(iter(difflib.get_close_matches(key.lower(), PARTS, 1)), None)
        if meant is not None and meant not in data:
            raise ValueError(f"datalist {str(path)!r}: its part {key!r} is read as no part (did you mean "
                             f"{meant!r}?); the parts are {list(PARTS)!r}")


#: Item keys a transform fills when an item leaves them out (the mask loader's foreground class).
FILLED_BY_TRANSFORMS = ("foreground",)


def _same_keys(items: list[Item], part: str, path: Path) -> list[Item]:
    """``items`` with one set of keys: MONAI's collate refuses a batch whose items differ in their keys (a merged or
    hand-written datalist giving ``id`` or ``patient`` to some items only), after a whole training epoch.

    An ``id`` that some items lack is filled with the image path, which is what reports name an image by without
    one (every id then text, as a batch of ids must be of one type); other keys that only some items have are left
    out of every item, with a warning: the bundles read none of them.
    """
    if not items:
        return items
    every = set().union(*items)
    partial = every - set.intersection(*(set(it) for it in items)) - set(FILLED_BY_TRANSFORMS)
    if not partial:
        return items
    dropped = sorted(str(k) for k in partial - {"id"})
    if dropped:
        logger.warning("datalist %s: %s key(s) %s are given for some items only and are left out (the bundles do "
                       "not read them)", path, part, dropped)
    out = [{k: v for k, v in it.items() if k not in partial} for it in items]
    if "id" in partial:
        for item, original in zip(out, items):
            item["id"] = str(original.get("id", original["image"]))
    return out


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


def _check_task(task: str) -> None:
    if task not in ("classification", "segmentation"):
        raise ValueError(f"task must be 'classification' or 'segmentation', got {task!r}")


def _class_names(names: Any, path: Path, task: Task) -> list[str]:
    """``names`` checked: a list of at least two distinct non-empty strings (one class has nothing to tell apart;
    a segmentation's classes count the background as class 0)."""
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"datalist {str(path)!r}: 'class_names' must be a list of names, got {names!r}")
    if len(names) < 2:
        example = '["background", "lesion"]: the background is class 0' if task == "segmentation" else \
            '["benign", "malignant"]'
        raise ValueError(f"datalist {str(path)!r}: 'class_names' needs at least two classes, got {names!r} "
                         f"(e.g. {example})")
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
        masks = [checked["label"]] if isinstance(checked["label"], str) else checked["label"]
        if any(os.path.realpath(mask) == os.path.realpath(checked["image"]) for mask in masks):
            raise ValueError(f"datalist {str(path)!r}: {where} gives its image {item['image']!r} as its own mask")
    return checked


def class_index_of(label: Any, class_names: Sequence[str] | None, count: int | None = None) -> int | None:
    """A class label as its class index, or None when it names no class.

    A label is a class name, or an index: an int, a whole float (``1.0`` from a spreadsheet or pandas export) or its
    decimal text (``"1"``, as CSV exports and command lines give it). Text that is not a class name is read as an
    index only while no class name is made of digits: with ``class_names`` ``["2", "3", "4"]`` (BI-RADS folders),
    ``"1"`` could mean either, so it names no class. A number is always an index: every writer of this project
    writes indices.

    Args:
        label: the label as read from a datalist or a setting.
        class_names: the classes, or None where only their number is known.
        count: the number of classes when ``class_names`` is None.
    """
    count = len(class_names) if class_names is not None else count
    if isinstance(label, str):
        text = label.strip()
        if class_names and text in class_names:
            return list(class_names).index(text)
        if not text.isdecimal() or any(name.strip().isdecimal() for name in class_names or []):
            return None
        label = int(text)
    if isinstance(label, (float, np.floating)) and float(label).is_integer():
        label = int(label)
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
        return None
    return int(label) if 0 <= label and (count is None or label < count) else None


def _class_index(label: Any, class_names: list[str], where: str, path: Path) -> int:
    """A classification label as its class index (:func:`class_index_of`), else an error naming the item."""
    index = class_index_of(label, class_names)
    if index is not None:
        return index
    digits = isinstance(label, str) and label.strip().isdecimal()
    hint = "; with class names made of digits, write an index as a number" if digits else ""
    raise ValueError(f"datalist {str(path)!r}: {where} has label {label!r}, which is not a class: give an index "
                     f"0..{len(class_names) - 1} or one of {class_names!r}{hint}")


def _mask_paths(label: Any, where: str, path: Path) -> str | list[str]:
    """A segmentation label as absolute mask paths: one file, or a non-empty list of files (merged)."""
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


def _require_files(split: Mapping[str, Any], path: Path, written: Mapping[str, Any]) -> None:
    """Every image and mask exists, else one error naming how many are missing and the first few with their items.

    Args:
        split: the checked parts, paths resolved.
        path: the datalist, named in the error.
        written: the parts as the file has them, to tell a path relative to the current folder (what make-datalist
            wrote before it wrote absolute paths) from a file that is simply missing.
    """
    # each resolved file beside the path as written (a classification label resolves to no file, so zip stops)
    missing = [(part, i, file, as_written) for part in PARTS for i, item in enumerate(split[part])
               for file, as_written in zip(_files_of(item), _files_of(written[part][i])) if not os.path.isfile(file)]
    if not missing:
        return
    shown = ", ".join(f"{part}[{i}]: {file!r}{_why_not_a_file(file)}" for part, i, file, _ in missing[:3])
    more = ", ..." if len(missing) > 3 else ""
    first = missing[0][3]
    hint = (f"; {first!r} exists from the current folder: the datalist was written with paths relative to where "
            f"make-datalist ran (before classify 0.6.5 / segment 0.1.5), so run make-datalist again"
            if not os.path.isabs(first) and os.path.isfile(first) else "")
    raise ValueError(f"datalist {str(path)!r}: {len(missing)} file(s) not found ({shown}{more}); relative paths are "
                     f"read from the datalist's folder{hint}")


def first_rank() -> bool:
    """Rank 0 of a torchrun job, or a single process: where every rank reads the same list, one warning is
    enough. The launcher's ``RANK`` is read too, since a bundle may read its data before it joins the process
    group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0").strip() in ("", "0")


def warn_of_several_frames(split: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Log a warning naming the images that hold several frames (a cine loop, a multi-frame DICOM, a multi-page
    TIFF, a volume), with how many there are: the bundles train on and score the first frame of each, and a loop's
    first frame is often taken before the probe settles, while its label is about what the whole loop shows.

    Only formats that can hold several frames are opened (DICOM headers only), so a list of PNG or JPEG files
    costs nothing here. :func:`read_split` calls it; writers of a protocol call it once for the protocol, not for
    each fold (:func:`check_split` does not).

    Args:
        split: parts of items whose ``image`` paths exist (as :func:`read_split` and :func:`check_split` leave them).
        path: the datalist, named in the warning.
    """
    if not first_rank():
        return
    several = [(f"{part}[{i}]", item["image"], frames) for part in PARTS for i, item in enumerate(split.get(part, []))
               if (frames := frames_held(item["image"])) > 1]
    if not several:
        return
    total = sum(len(split.get(part, [])) for part in PARTS)
    shown = ", ".join(f"{where} {Path(image).name!r}: {frames} frames" for where, image, frames in several[:3])
    more = ", ..." if len(several) > 3 else ""
    logger.warning("datalist %r: %d of %d image(s) hold several frames (%s%s); training, evaluation and inference "
                   "read the first frame of each. Save the frame each label is about as a picture and list that "
                   "file instead", str(path), len(several), total, shown, more)


def _why_not_a_file(file: str) -> str:
    """What stands at ``file`` instead of a file, where something does: a folder, or the same name in another
    Unicode form (macOS writes names decomposed, "e" + accent, and an editor may save the datalist composed)."""
    if os.path.isdir(file):
        return " is a folder, not a file"
    return unicode_form_note(file)


def unicode_form_note(file: str | os.PathLike) -> str:
    """`` is spelled in another Unicode form on disk (NFD: '...')...`` where :func:`unicode_twin` finds ``file``
    under another Unicode form, else ``""``: the end of a missing-file message (the two spellings look alike)."""
    other = unicode_twin(file)
    if other is None or not other.is_file():
        return ""
    form = next((f for f in ("NFD", "NFC") if unicodedata.normalize(f, str(other)) == str(other)), "mixed")
    return f" is spelled in another Unicode form on disk ({form}: {ascii(str(other))}); write it as the disk has it"


def _require_no_repeats(split: Mapping[str, Any], path: Path) -> None:
    """No image in two parts (trained on and tested on, it would inflate the test figures unseen), none twice in
    validation or test (counted twice in their figures) and none with two labels. A repeat in train with the same
    label is allowed: it is oversampling.

    Images are compared as files (``os.path.realpath``), so a folder reached through a symbolic link or a ``..``
    does not hide a repeat.
    """
    seen: dict[str, tuple[str, int, Any]] = {}
    for part in PARTS:
        for i, item in enumerate(split[part]):
            where = f"{part}[{i}]"
            label = _same_file_key(item["label"])
            first = seen.setdefault(os.path.realpath(item["image"]), (part, i, label))
            if first == (part, i, label):
                continue
            earlier = f"{first[0]}[{first[1]}]"
            if first[2] != label:
                given = split[first[0]][first[1]]["label"]
                reason = f"has two labels, {given!r} as {earlier} and {item['label']!r} as {where}"
            elif first[0] != part:
                reason = f"is both {earlier} and {where}; an image belongs to one of train, validation and test"
            elif part != "train":
                reason = f"is {earlier} and {where} again; it would be counted twice in the {part} figures"
            else:
                continue
            raise ValueError(f"datalist {str(path)!r}: {item['image']!r} {reason}")


def patients_by_part(split: Mapping[str, Sequence[Item]]) -> dict[str, dict[str, Item]]:
    """Each part's patients (as text), each with its first item; items without ``patient`` are passed over."""
    return {part: {str(item["patient"]): item for item in reversed(split.get(part, [])) if "patient" in item}
            for part in PARTS}


def _require_patients_apart(split: Mapping[str, Any], path: Path, warn: bool = False) -> None:
    """No patient both in test and in training or validation, where items carry ``patient``: a hand-written list
    that splits a patient's images tests on a patient trained on, as a repeated image would (the protocols never do).

    Args:
        split: the checked parts.
        path: the datalist, named in messages.
        warn: also warn of a patient in both training and validation (the best checkpoint chosen on a patient
            trained on); the bundles' reader says it, a protocol's writer already has.

    Raises:
        ValueError: naming the patient and an image of it on each side.
    """
    first = patients_by_part(split)
    test = first["test"]
    for part in ("train", "validation"):
        crossing = sorted(set(test) & set(first[part]))
        if crossing:
            patient = crossing[0]
            raise ValueError(f"datalist {str(path)!r}: {len(crossing)} patient(s) have images in test and in {part}, "
                             f"e.g. {patient!r} ({test[patient]['image']!r} and {first[part][patient]['image']!r}); "
                             "give each patient's images one part")
    shared = sorted(set(first["train"]) & set(first["validation"]))
    if warn and shared and first_rank():
        logger.warning("datalist %r: %d patient(s) have images in both train and validation, e.g. %r; the best "
                       "checkpoint is chosen on images of patients trained on", str(path), len(shared), shared[0])


def _same_file_key(label: Any) -> Any:
    """A label to compare: a class index as it is; mask files as the files they are (``os.path.realpath``)."""
    if isinstance(label, str):
        return os.path.realpath(label)
    return tuple(os.path.realpath(mask) for mask in label) if isinstance(label, list) else label


def _files_of(item: Item) -> list[str]:
    """The image and mask files of an item: its image, then its mask or masks (a class label names no file)."""
    label = item["label"]
    masks = [label] if isinstance(label, str) else label if isinstance(label, list) else []
    return [item["image"], *masks]


def _absolute_paths(item: Item, task: Task) -> Item:
    """``item`` with its image (and, for segmentation, its mask) paths absolute; a class label is kept."""
    label = item.get("label")
    absolute = {**item, "image": _absolute(item["image"])} if "image" in item else dict(item)
    if task == "segmentation" and isinstance(label, str):
        absolute["label"] = _absolute(label)
    elif task == "segmentation" and isinstance(label, list):
        absolute["label"] = [_absolute(p) if isinstance(p, str) else p for p in label]
    return absolute


def _absolute(file: str) -> str:
    """``file`` as it stands from the current folder."""
    return _resolve(file, Path.cwd())
