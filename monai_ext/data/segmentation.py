"""Lesion-segmentation datasets read in their distributed layouts, their evaluation protocols, and the simulated
default.

Each adapter returns a :class:`~monai_ext.data.downstream.Protocol` whose class names start with ``background``
and whose datalist items are ``{"image": path, "label": mask path or [mask paths], "id": str}`` plus, where the
layout has them, ``patient`` (splits never separate a patient's images), ``group`` (a class folder or pathology that
splits are stratified by) and ``foreground`` (the class index a binary mask's pixels get). Layouts and where to
get each dataset: ``docs/datasets.md``. Nothing is renamed or copied.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sklearn.model_selection import KFold, StratifiedGroupKFold, StratifiedKFold

from monai_ext.data.downstream import (
    MMOTU_CLASSES,
    Item,
    Protocol,
    Split,
    busbra_protocol,
    check_splittable,
    patient_groups,
    read_utf8,
    warn_unlisted_images,
)
from monai_ext.data.folders import BUSI_MASK, IMAGE_SUFFIXES, file_in_any_case, folder_in_any_case, walk_files
from monai_ext.data.identical import identical_sets, keep_one_copy, warn_of_copies_across_parts
from monai_ext.data.studies import study_folders, whole_groups_near
from monai_ext.data.synthetic import SIMULATOR_VERSION, SimulatorConfig, simulate_frame
from monai_ext.io.atomic import atomic_write_bytes
from monai_ext.io.checkpoints import sha256_of
from monai_ext.io.images import image_stem, is_single_image
from monai_ext.io.settings import is_unset

logger = logging.getLogger(__name__)
BINARY_CLASSES = ["background", "lesion"]
MMOTU_SEG_CLASSES = ["background", *MMOTU_CLASSES]


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise ValueError(f"{what} not found: {str(path)!r}")
    return path


def _check_files(items: list[Item], dataset: str) -> list[Item]:
    """Raise naming up to five missing image or mask files (an incomplete download), else return ``items``."""
    missing = [p for it in items for p in [it["image"], *_as_list(it["label"])] if not Path(p).is_file()]
    if missing:
        raise ValueError(f"{dataset}: {len(missing)} listed files are missing, e.g. {missing[:5]!r}")
    return items


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _warn_orphan_masks(masks: list[Path]) -> None:
    """Name the mask files no image pairs with: left out of the datalist, but said (an incomplete download or a
    renamed image would otherwise just make the dataset smaller)."""
    if masks:
        shown = ", ".join(repr(str(p)) for p in sorted(masks)[:5])
        logger.warning("%d mask files have no image and are left out, e.g. %s", len(masks), shown)


# --------------------------------------------------------------------------------------------------------- splits
def _splitter(items: list[Item], n_splits: int, seed: int, purpose: str):
    """The k-fold splitter that keeps patients together and strata balanced, as far as the items allow.

    ``purpose`` is that of :func:`~monai_ext.data.downstream.check_splittable`: ``"folds"`` or ``"validation"``.
    """
    found = patient_groups(items)  # refuses a mix of items with and without patients
    groups = None if found is None else found.tolist()
    strata = [str(it.get("group", "")) for it in items]
    # over the strata present only: a group absent from a fold's training part is no stratum of it
    stratified = len(set(strata)) > 1 and min(strata.count(s) for s in set(strata)) >= n_splits
    # no class check: strata too small for n_splits fall back to unstratified folds below, never refused
    check_splittable(None, None if groups is None else np.array(groups), n_splits, purpose)
    if groups is not None:
        # without strata, one stratum: StratifiedGroupKFold then puts the groups, in an order shuffled by the seed,
        # each into the fold of fewest images. GroupKFold does not shuffle (scikit-learn < 1.6): every seed gave the
        # same folds, and its first fold, the validation part, always held the largest study
        one = strata if stratified else [""] * len(items)
        return StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed), one, groups
    if stratified:
        return StratifiedKFold(n_splits, shuffle=True, random_state=seed), strata, None
    return KFold(n_splits, shuffle=True, random_state=seed), strata, None


def split_validation(train: list[Item], val_fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    """A validation part carved out of ``train`` (patient-disjoint and stratified by ``group`` where known): of
    patients (studies), whole ones making about ``val_fraction`` of each group's images (:func:`~monai_ext.data.studies.whole_groups_near`),
    else one of ``1 / val_fraction`` k-fold parts."""
    if not 0.0 < val_fraction < 0.5:
        raise ValueError(f"val_fraction must be in (0, 0.5), got {val_fraction!r}")
    if len(train) < 2:
        raise ValueError(f"need at least two training images to carve a validation part, got {len(train)}")
    n_splits = min(max(2, round(1.0 / val_fraction)), len(train))
    groups = patient_groups(train)
    if groups is not None:  # few patients: a larger validation share rather than none
        n_splits = min(n_splits, max(2, len(set(groups.tolist()))))
    splitter, strata, groups = _splitter(train, n_splits, seed, "validation")
    if groups is not None:
        val_idx = whole_groups_near(groups, strata, val_fraction, seed)
        return ([it for i, it in enumerate(train) if i not in val_idx],
                [it for i, it in enumerate(train) if i in val_idx])
    train_idx, val_idx = next(splitter.split(np.zeros(len(train)), strata, groups))
    return [train[i] for i in sorted(train_idx)], [train[i] for i in sorted(val_idx)]


def kfold_splits(items: list[Item], folds: int = 5, val_fraction: float = 0.2, seed: int = 0,
                 max_train: int | None = None) -> list[Split]:
    """``folds`` test folds; each run trains on at most ``max_train`` labelled images (training + validation)."""
    if isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= max(len(items), 2):
        # the classification protocols' words (downstream._kfold): what is allowed, and what more folds need
        allowed = "2" if len(items) <= 2 else f"an integer from 2 to {len(items)}"
        more = "; more folds need more images" if isinstance(folds, int) and folds > len(items) else ""
        raise ValueError(f"folds must be {allowed} (there are {len(items)} image(s)), got {folds!r}{more}")
    if max_train is not None and max_train < 2:
        raise ValueError(f"max_train must be at least 2, got {max_train!r}")
    splitter, strata, groups = _splitter(items, folds, seed, "folds")
    out = []
    for k, (train_idx, test_idx) in enumerate(splitter.split(np.zeros(len(items)), strata, groups)):
        train = [items[i] for i in sorted(train_idx)]
        if max_train is not None and len(train) > max_train:
            keep = np.random.default_rng(seed + k).choice(len(train), size=max_train, replace=False)
            train = [train[i] for i in sorted(keep)]
        train, validation = split_validation(train, val_fraction, seed + k)
        out.append({"train": train, "validation": validation, "test": [items[i] for i in sorted(test_idx)]})
    return out


# --------------------------------------------------------------------------------------------------------- BUS-BRA
def busbra_mask_path(root: Path, image_id: str) -> Path:
    """``Masks/mask_0001-l.png`` for image ``bus_0001-l`` (or the same name in another case, as a copy may have it)."""
    if not image_id.startswith("bus_"):
        raise ValueError(f"BUS-BRA image IDs start with 'bus_', got {image_id!r}")
    return file_in_any_case(root / "Masks" / f"mask_{image_id[len('bus_'):]}.png")


def busbra_segmentation_protocol(root: str | os.PathLike, folds: int = 5) -> Protocol:
    """BUS-BRA lesion masks with the official patient-disjoint folds (``5-fold-cv.csv`` or ``10-fold-cv.csv``)."""
    root = Path(root)
    classification = busbra_protocol(root, folds, classes_tested=False)  # masks: lesion or not, any pathology
    protocol = Protocol("busbra_seg", BINARY_CLASSES)
    for split in classification.splits:
        seg_split: Split = {}
        for part, items in split.items():
            seg_split[part] = [
                {"image": it["image"], "label": str(busbra_mask_path(root, it["id"])), "id": it["id"],
                 "patient": it["patient"], "group": classification.class_names[it["label"]]}
                for it in items
            ]
            _check_files(seg_split[part], "BUS-BRA")
        protocol.splits.append(seg_split)
    used = {os.path.realpath(item["label"]) for items in protocol.splits[0].values() for item in items}
    # pictures only: a folder browsed on Windows holds Thumbs.db (desktop.ini, ...), which is no mask left over
    _warn_orphan_masks([p for p in walk_files(root / "Masks")
                        if p.suffix.lower() in IMAGE_SUFFIXES and os.path.realpath(p) not in used])
    return protocol


# --------------------------------------------------------------------------------------------------------- MMOTU-2D
def _mmotu_image(images: Path, stem: str) -> Path:
    """``images/<stem>.JPG`` as distributed (any image suffix accepted, since stems are what the lists give)."""
    exact = images / f"{stem}.JPG"
    if exact.is_file():
        return exact
    found = sorted(p for p in images.glob(f"{stem}.*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return found[0] if found else exact


def _mmotu_classes(root: Path) -> dict[str, int]:
    """Image stem -> tumour class 0-7 from ``train_cls.txt`` and ``val_cls.txt``."""
    classes = {}
    for name in ("train_cls.txt", "val_cls.txt"):
        path = _require(root / name, f"MMOTU {name} (needed for multi-class masks)")
        for line_no, line in enumerate(read_utf8(path).splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].isdigit() or not 0 <= int(parts[1]) < len(MMOTU_CLASSES):
                raise ValueError(f"{path}:{line_no}: expected 'FILE  LABEL' with a label 0-7, got {line!r}")
            classes[Path(parts[0]).stem] = int(parts[1])
    return classes


def _read_stems(path: Path) -> list[str]:
    return [Path(line.strip()).stem for line in read_utf8(path).splitlines()
            if line.strip()]


def mmotu_segmentation_protocol(root: str | os.PathLike, multiclass: bool = False, val_fraction: float = 0.1,
                                seed: int = 0) -> Protocol:
    """MMOTU-2D segmentation: train on ``train.txt``, test on ``val.txt`` (the official split).

    Masks are ``annotations/<stem>_binary.PNG``. With ``multiclass`` each image's tumour pixels get its class from
    ``train_cls.txt`` / ``val_cls.txt`` (1..8, background 0): every MMOTU image holds one tumour, so this equals the
    RGB multi-class annotation without depending on its colour table.
    """
    root = Path(root)
    classes = _mmotu_classes(root) if multiclass else {}
    parts = {}
    images = folder_in_any_case(root / "images")  # Images/ as a renaming tool leaves it: every image was "missing"
    for part, name in (("train", "train.txt"), ("test", "val.txt")):
        items = []
        for stem in _read_stems(_require(root / name, f"MMOTU {name}")):
            item: Item = {"image": str(_mmotu_image(images, stem)),
                          "label": str(file_in_any_case(root / "annotations" / f"{stem}_binary.PNG")), "id": stem}
            if multiclass:
                if stem not in classes:
                    raise ValueError(f"MMOTU image {stem!r} of {name} has no class in train_cls.txt / val_cls.txt")
                item["foreground"], item["group"] = classes[stem] + 1, MMOTU_CLASSES[classes[stem]]
            items.append(item)
        parts[part] = _check_files(items, "MMOTU-2D")
    both = sorted({it["id"] for it in parts["train"]} & {it["id"] for it in parts["test"]})
    if both:  # as mmotu's train_cls.txt / val_cls.txt: the copy would be trained on and tested on
        raise ValueError(f"MMOTU train.txt and val.txt both list {len(both)} image(s), e.g. {both[0]!r}; an image is "
                         "trained on or tested on, not both")
    train, validation = split_validation(parts["train"], val_fraction, seed)
    names = MMOTU_SEG_CLASSES if multiclass else ["background", "ovarian tumour"]
    protocol = Protocol("mmotu_seg", names, [{"train": train, "validation": validation, "test": parts["test"]}])
    # the checks of the classification protocol (mmotu), over the segmentation lists
    warn_unlisted_images(images, protocol, "MMOTU train.txt and val.txt")
    if multiclass:
        _warn_of_classes_absent_from_test(protocol, "MMOTU val.txt")
    warn_of_copies_across_parts(protocol.splits, "MMOTU train.txt and val.txt")
    return protocol


def _warn_of_classes_absent_from_test(protocol: Protocol, lists: str) -> None:
    """Warn, naming them, of the foreground classes that a published split's test part holds no image of: their Dice
    and IoU are undefined there (no truth of the class), so the test figures are over the other classes only and
    say nothing of them. Items give their class as ``foreground`` (an index into ``protocol.class_names``)."""
    for k, split in enumerate(protocol.splits):
        held = {it.get("foreground") for it in split["test"]}
        absent = [name for c, name in enumerate(protocol.class_names) if c and c not in held]
        if absent:
            logger.warning("%s: the test part of split %d holds no image of %d class(es), %s; their Dice and IoU are "
                           "undefined there and the test figures leave them out", lists, k, len(absent),
                           ", ".join(repr(name) for name in absent))


# ------------------------------------------------------------------------------------------------ generic layouts
def busi_items(root: str | os.PathLike) -> list[Item]:
    """Images with their ``<stem>_mask.png`` / ``<stem>_mask_<k>.png`` files (merged), in one or more folders
    (symbolic links to folders followed, :func:`~monai_ext.data.folders.walk_files`).

    The folder of an image (``benign``, ``malignant``, ``normal`` in BUSI) becomes its ``group``. An image without
    any mask is an error naming it (BUSI ships an empty mask for normal images). Byte-identical images are kept once
    (:func:`_keep_one_copy`; BUSI holds copies under other names).
    """
    root = _require(Path(root), "dataset folder")
    files = sorted(p for p in walk_files(root) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    masks: dict[tuple[Path, str], list[Path]] = {}
    images = []
    for path in files:
        match = BUSI_MASK.match(path.stem)
        if match:
            masks.setdefault((path.parent, match.group("stem")), []).append(path)
        else:
            images.append(path)
    if not images:
        raise ValueError(f"no images found under {str(root)!r}")
    by_folder: dict[Path, list[tuple[Path, str]]] = {}
    for image in images:
        by_folder.setdefault(image.parent, []).append((image, image.stem))
    for folder, found in by_folder.items():
        _one_file_per_stem(found, folder)
    paired = {(image.parent, image.stem) for image in images}
    _warn_orphan_masks([m for key, found in masks.items() if key not in paired for m in found])
    items = []
    for image in images:
        found = sorted(masks.get((image.parent, image.stem), []), key=lambda p: (len(p.stem), p.stem))
        if not found:
            raise ValueError(f"{str(image)!r} has no mask ({image.stem}_mask{image.suffix} or _mask_<k>)")
        label: str | list[str] = str(found[0]) if len(found) == 1 else [str(p) for p in found]
        group = image.parent.relative_to(root).as_posix() if image.parent != root else ""
        items.append({"image": str(image), "label": label, "id": f"{group}/{image.stem}" if group else image.stem,
                      "group": group})
    # the class folder, not the image's folder: copies in two study folders of one class are copies, not a conflict
    paths = [_folders_of(it) for it in items]
    depth = _class_depth(paths)
    return _keep_one_copy(items, repr(str(root)), ["/".join(p[:depth]) for p in paths])


def busi_protocol(root: str | os.PathLike, folds: int = 5, val_fraction: float = 0.2, seed: int = 0,
                  max_train: int | None = None) -> Protocol:
    """A BUSI-style folder (``image.png`` + ``image_mask.png`` [+ ``image_mask_1.png`` ...]), k-fold stratified by
    class folder; images in sub-folders of a class folder (``<class>/<study>/``) are grouped by study
    (:func:`group_by_study_folder`)."""
    items = busi_items(root)
    group_by_study_folder(items, folds, repr(str(root)), "busi")
    return Protocol(Path(root).name, BINARY_CLASSES, kfold_splits(items, folds, val_fraction, seed, max_train))


def image_mask_folder_items(root: str | os.PathLike, images: str = "images", masks: str = "masks") -> list[Item]:
    """``root/images/<stem>.*`` (any format the loader reads) with ``root/masks/<stem>.*`` (picture masks; equal
    stems, ``case.nii.gz`` pairs with ``case.png``). Sub-folders count (``images/site2/a.png`` pairs with
    ``masks/site2/a.png``, its id ``site2/a``): a set gathered from several sites or exports keeps one per folder,
    and files passed over would shrink it without a word. Hidden files (macOS ``._`` copies) are not images.
    ``images/`` and ``masks/`` are found in another letter case too (``Images/``, as some archives name them).
    Byte-identical images are kept once (:func:`_keep_one_copy`).

    Raises:
        ValueError: a folder missing (naming the protocol to use where the root is BUS-BRA or MMOTU-2D, whose masks
            are named otherwise), an image without a mask, or two files of one stem.
    """
    root = Path(root)
    image_dir, mask_dir = _layer_folder(root, images, "images"), _layer_folder(root, masks, "masks")
    mask_files = [(p, _pair_key(p, mask_dir, p.stem)) for p in walk_files(mask_dir)
                  if p.suffix.lower() in IMAGE_SUFFIXES]
    images = [(p, _pair_key(p, image_dir, image_stem(p))) for p in walk_files(image_dir) if is_single_image(p)]
    if not images:
        raise ValueError(f"no images found in {str(image_dir)!r}")
    _one_file_per_stem(images, image_dir)
    _one_file_per_stem(mask_files, mask_dir)
    mask_by_stem = {stem: p for p, stem in mask_files}
    unmatched = [stem for _, stem in images if stem not in mask_by_stem]  # behind its sub-folder, where it has one
    if unmatched:
        raise ValueError(f"{len(unmatched)} images in {str(image_dir)!r} have no mask of the same stem in "
                         f"{str(mask_dir)!r}, e.g. {unmatched[:5]!r}{_masks_of_other_formats(mask_dir, unmatched)}")
    stems = {stem for _, stem in images}
    _warn_orphan_masks([mask for stem, mask in mask_by_stem.items() if stem not in stems])
    items = [{"image": str(p), "label": str(mask_by_stem[stem]), "id": stem} for p, stem in images]
    return _keep_one_copy(items, repr(str(root)))


def _masks_of_other_formats(mask_dir: Path, stems: list[str]) -> str:
    """The end of the "no mask" message where the masks folder holds files of those stems that are no pictures
    (``case.nii.gz`` label maps, as 3D Slicer saves them): they were passed over, and the message said only that
    masks were missing."""
    others = [p for p in walk_files(mask_dir) if p.suffix.lower() not in IMAGE_SUFFIXES
              and _pair_key(p, mask_dir, image_stem(p)) in set(stems)]
    if not others:
        return ""
    return (f"; {str(mask_dir)!r} holds {len(others)} file(s) of those stems that are no pictures, e.g. "
            f"{others[0].name!r}: masks are read as 2-D pictures (PNG label maps: 0 background, 1 or 255 lesion), "
            "convert them to PNG")


#: Files that mark a root as a dataset with a protocol of its own: (file, the folder beside it that the dataset also
#: has, or None, the dataset, its masks, its protocol). A ``train.txt`` alone is common to many sets: MMOTU-2D is named
#: only beside its ``annotations/`` folder, and a generic ``Images/`` + ``Masks/`` set with one is read.
_OWN_PROTOCOL_MARKS = (
    ("bus_data.csv", None, "BUS-BRA", "Masks/mask_<ID without bus_>.png", "busbra-seg"),
    ("train_cls.txt", "annotations", "MMOTU-2D", "annotations/<stem>_binary.PNG", "mmotu-seg"),
    ("train.txt", "annotations", "MMOTU-2D", "annotations/<stem>_binary.PNG", "mmotu-seg"),
)


def _layer_folder(root: Path, name: str, what: str) -> Path:
    """``root/name``, or the one folder beside it whose name differs only in letter case (``Images/``).

    Raises:
        ValueError: neither is there, saying which protocol reads the root where it is BUS-BRA (``bus_data.csv``:
            masks are ``Masks/mask_<id>.png``, not of the image's stem) or MMOTU-2D (``train_cls.txt`` or
            ``train.txt`` beside an ``annotations/`` folder, which holds its masks), and naming the folders of that
            name in several cases.
    """
    path = root / name
    if path.is_dir():
        return path
    for mark, beside, dataset, named, protocol in _OWN_PROTOCOL_MARKS:
        # checked before another case is accepted: BUS-BRA's Images/ and Masks/ do not pair by stem
        # (root / mark) a file: root is a folder. Its folder in any letter case, as Images/ and Masks/ are read
        if (root / mark).is_file() and (beside is None or any(p.is_dir() and p.name.casefold() == beside
                                                               for p in root.iterdir())):
            raise ValueError(f"{what} folder not found: {str(path)!r}; {str(root)!r} holds {mark}, as {dataset} "
                             f"does, whose masks are {named}, not of their image's stem: use make-datalist "
                             f"{protocol}")
    siblings = root.iterdir() if root.is_dir() else iter(())
    found = sorted(p for p in siblings if p.is_dir() and p.name.casefold() == name.casefold())
    if len(found) == 1:
        return found[0]
    if found:
        raise ValueError(f"{what} folder not found: {str(path)!r}; {str(root)!r} holds {len(found)} folders of that "
                         f"name in other letter cases, {[p.name for p in found]!r}: keep one")
    return _require(path, f"{what} folder")


def _keep_one_copy(items: list[Item], source: str, strata: list[str] | None = None) -> list[Item]:
    """``items`` without byte-identical copies of an image, as the classification protocols leave them out
    (:func:`~monai_ext.data.identical.keep_one_copy`, which warns with the count): a copy drawn into training while
    its twin is drawn into test would be tested after being trained on.

    Args:
        items: datalist items, in the order found.
        source: the dataset, named in warnings.
        strata: each item's class folder (default: none), its class there: copies under two class folders are all
            left out, since which is right is the user's call.

    Copies are one image only where their masks are equal too (same bytes or same decoded pixels): for segmentation
    the mask is the label, so copies with different masks are all left out with a warning, as copies of different
    classes are (keeping the first dropped the other's lesion without a word).
    """
    strata = strata if strata is not None else [""] * len(items)
    # copies under two class folders are keep_one_copy's to leave out (and to name as such); within one, the masks
    differ = [found for found in identical_sets([it["image"] for it in items])
              if len({strata[i] for i in found}) == 1 and len({_mask_content(items[i]["label"]) for i in found}) > 1]
    if differ:
        shown = ", ".join(f"{items[i]['image']!r} (mask {items[i]['label']!r})" for i in differ[0])
        logger.warning("%s: %d set(s) of byte-identical images have different masks and are left out, every copy, "
                       "since which mask is right is yours to say: %s", source, len(differ), shown)
    dropped = {i for found in differ for i in found}
    rest = [i for i in range(len(items)) if i not in dropped]
    names = sorted({strata[i] for i in rest})
    # stand-ins that carry the class index keep_one_copy reads from "label" (here a mask), and the item's place
    stand_ins = [{"image": items[i]["image"], "label": names.index(strata[i]), "at": i} for i in rest]
    return [items[kept["at"]] for kept in keep_one_copy(stand_ins, names, source)]


def _mask_content(label: str | list[str]) -> tuple[str, ...]:
    """What a mask (or each of an image's masks) holds: its decoded pixels' digest, or where it does not decode as
    a picture its bytes' digest; so a mask saved again (another PNG compression) equals its original."""
    found = []
    for path in _as_list(label):
        pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        found.append(sha256_of(path) if pixels is None else
                     f"{pixels.shape}:{pixels.dtype}:{hashlib.sha256(pixels.tobytes()).hexdigest()}")
    return tuple(found)


def _folders_of(item: Item) -> list[str]:
    """The folders of an item's ``id`` (``"<folder>/<stem>"``; stems hold no ``/``)."""
    return str(item["id"]).split("/")[:-1]


def _common_depth(paths: list[list[str]]) -> int:
    """How many leading folders every path shares (an archive unpacked into a folder of its own name)."""
    common = 0
    while paths and all(len(p) > common for p in paths) and len({p[common] for p in paths}) == 1:
        common += 1
    return common


#: BUSI-style sets have two or three class folders (benign, malignant, normal): more folders below a folder that
#: holds every image are studies of one class, not classes.
_MOST_CLASS_FOLDERS = 3


def _class_depth(paths: list[list[str]]) -> int:
    """How many leading folders of a BUSI-style item's folders name its class: the common folders and the class
    folder below them; or, for a set of one class (its folder common to every image) whose images all sit in more
    than :data:`_MOST_CLASS_FOLDERS` sub-folders with none deeper, the common folders alone (``malignant/p0/f0``: the
    class is ``malignant``, the study ``p0``; stripped as a wrapper, the class made every study a class of its own
    and nothing was grouped)."""
    common = _common_depth(paths)
    if (common and all(len(p) <= common + 1 for p in paths)
            and len({p[common] for p in paths if len(p) > common}) > _MOST_CLASS_FOLDERS):
        return common
    return common + 1


def group_by_study_folder(items: list[Item], folds: int, source: str, layout: str) -> None:
    """Give each item (in place) its study as ``patient`` where images sit in study sub-folders
    (:func:`~monai_ext.data.studies.study_folders`, over the whole set: the strata only balance the folds), so that
    the frames of one study share a test fold and a side of the validation split.

    The study is read from the item's ``id`` (its folder path, then its stem): for ``layout`` ``"image-mask-folders"``
    the first sub-folder of ``images/`` (``patient3/frame1``), for ``"busi"`` the sub-folder of the class folder
    (``benign/patient3/frame1``; the item's ``group`` becomes the class folder, ``benign``, the stratum; a set of one
    class folder, ``malignant/p0/f0``, :func:`_class_depth`). Folders that every image sits in (an archive unpacked
    into a folder of its own name) are passed over first. An image outside any study folder is a study of its own.
    """
    paths = [_folders_of(it) for it in items]
    depth = _class_depth(paths) if layout == "busi" else _common_depth(paths)  # busi: below the class folder
    studies = study_folders(paths, depth, folds, source, "give each study a sub-folder of its own")
    if studies is None:
        return
    for it, path, study in zip(items, paths, studies):
        it["patient"] = study if study is not None else it["image"]  # a loose image: a study of one (its path)
        if layout == "busi":
            it["group"] = "/".join(path[:depth])


def _pair_key(path: Path, folder: Path, stem: str) -> str:
    """What pairs an image with its mask: the file's stem, behind its sub-folder of ``folder`` where it has one."""
    parent = path.parent.relative_to(folder).as_posix()
    return stem if parent == "." else f"{parent}/{stem}"


def _one_file_per_stem(files: list[tuple[Path, str]], folder: Path) -> None:
    """Raise naming the files of ``folder`` that share a stem: stems pair images with masks, so two masks of one
    stem would leave one unused, and two images of one stem would be two items of one id and one mask."""
    names: dict[str, list[str]] = {}
    for path, stem in files:
        names.setdefault(stem, []).append(path.name)
    shared = [found for found in names.values() if len(found) > 1]
    if shared:
        raise ValueError(f"{len(shared)} stems name more than one file in {str(folder)!r}, e.g. {shared[0]!r}; "
                         "stems pair images with masks: keep one file per stem")


def image_mask_folder_protocol(root: str | os.PathLike, folds: int = 5, val_fraction: float = 0.2, seed: int = 0,
                               max_train: int | None = None) -> Protocol:
    """A folder with ``images/`` and ``masks/`` side by side (thyroid, kidney, nerve, fetal-head sets), k-fold;
    images in sub-folders of ``images/`` (``images/<study>/``) are grouped by study (:func:`group_by_study_folder`)."""
    items = image_mask_folder_items(root)
    group_by_study_folder(items, folds, repr(str(root)), "image-mask-folders")
    return Protocol(Path(root).name, BINARY_CLASSES, kfold_splits(items, folds, val_fraction, seed, max_train))


# ------------------------------------------------------------------------------------------------------ simulated
def synthetic_segmentation_dataset(cache_dir: str | os.PathLike, num: int = 75, seed: int = 0) -> Path:
    """Simulated screen captures with one lesion each (oval, irregular or cyst) and its ground-truth mask, written
    BUSI-style (``us_000000.png`` + ``us_000000_mask.png``, 0/255) into ``cache_dir/seg_lesions_{num}_seed{seed}``.

    Generated once: the folder is complete when its ``synthetic.json`` record exists, and it is reused only while
    that record matches the simulator's settings (a folder made with other settings is generated again over itself,
    as :func:`monai_ext.data.synthetic.generate_dataset` does). Seeds differ from the pretraining default's and from
    the classification benchmark's, so no image is shared with them.
    """
    if num < 5:
        raise ValueError(f"num must be at least 5 (one per fold), got {num!r}")
    root = Path(cache_dir) / f"seg_lesions_{num}_seed{seed}"
    record_path = root / "synthetic.json"
    config = SimulatorConfig(screen_capture=True, lesion_scale=1.6, lesion_probability=1.0)
    record = {"num": num, "seed": seed, "layout": "busi", "config": repr(config), "simulator": SIMULATOR_VERSION}
    if _read_record(record_path) == record:
        return root
    for i in range(num):
        frame = simulate_frame(np.random.default_rng([50_000 + seed, i]), config, "random")
        image = cv2.cvtColor(frame.screen, cv2.COLOR_RGB2BGR) if frame.annotation_mask.any() else frame.image
        for name, pixels in ((f"us_{i:06d}.png", image), (f"us_{i:06d}_mask.png", frame.lesion_mask.astype(np.uint8) * 255)):
            ok, encoded = cv2.imencode(".png", pixels)
            if not ok:
                raise OSError(f"could not encode {name}")
            atomic_write_bytes(root / name, encoded.tobytes())
    atomic_write_bytes(record_path, json.dumps(record, indent=1).encode())
    return root


def _read_record(path: Path) -> dict[str, Any] | None:
    """The generation record at ``path``, or None where there is none or it cannot be read (then the set is made
    again: a cut or hand-edited record must not stand for frames it may not describe)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def synthetic_segmentation_protocol(cache_dir: str | os.PathLike, num: int = 75, seed: int = 0,
                                    max_train: int = 50) -> Protocol:
    """The simulated lesion set as 5 folds with at most ``max_train`` labelled images per run (80/20 train/val)."""
    root = synthetic_segmentation_dataset(cache_dir, num, seed)
    return Protocol("synthetic_seg", BINARY_CLASSES, kfold_splits(busi_items(root), 5, 0.2, seed, max_train))


SEGMENTATION_PROTOCOLS = {
    "busbra-seg": busbra_segmentation_protocol,
    "mmotu-seg": mmotu_segmentation_protocol,
    "busi": busi_protocol,
    "image-mask-folders": image_mask_folder_protocol,
}


def load_segmentation_protocol(name: str, root: str | os.PathLike, **kwargs: Any) -> Protocol:
    """Build a segmentation protocol by name: busbra-seg, mmotu-seg, busi or image-mask-folders."""
    if name not in SEGMENTATION_PROTOCOLS:
        raise ValueError(f"unknown segmentation protocol {name!r}; choose one of {sorted(SEGMENTATION_PROTOCOLS)}")
    return SEGMENTATION_PROTOCOLS[name](root, **kwargs)


def segmentation_split(datalist_file: str | os.PathLike | None, cache_dir: str | os.PathLike, fold: int = 0,
                       seed: int = 0, synthetic_images: int = 75, max_train: int = 50) -> dict[str, Any]:
    """The segmentation bundle's data: a JSON datalist file, or else fold ``fold`` of the simulated lesion set.

    Returns:
        ``{"class_names": [...], "train": [...], "validation": [...], "test": [...]}``.
    """
    from monai_ext.data.datalists import read_split

    if not is_unset(datalist_file):
        return read_split(datalist_file, "segmentation")
    protocol = synthetic_segmentation_protocol(cache_dir, synthetic_images, seed, max_train)
    if not 0 <= fold < len(protocol.splits):
        raise ValueError(f"fold must be in [0, {len(protocol.splits)}), got {fold!r}")
    return {"class_names": protocol.class_names, **protocol.splits[fold]}
