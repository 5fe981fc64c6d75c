"""Downstream classification datasets read in their distributed layouts, and their evaluation protocols.

Each adapter returns a :class:`Protocol`: class names and one split per run, each split a dict with ``train``,
``validation`` and ``test`` datalists of ``{"image": path, "label": int, "id": str[, "patient": str]}``. Layouts and
where to get each dataset: ``docs/datasets.md``. Nothing is renamed or copied.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import numbers
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from monai_ext.data.datalists import patients_by_part
from monai_ext.data.folders import (
    file_in_any_case,
    folder_in_any_case,
    is_hidden_name,
    suffix_counts,
    walk_files,
    without_masks,
)
from monai_ext.data.identical import keep_one_copy, warn_of_copies_across_parts
from monai_ext.data.screening import leave_out_non_images, why_not_an_image
from monai_ext.data.studies import study_folders, whole_groups_near
from monai_ext.data.synthetic import GENERATION_RECORD
from monai_ext.io.images import image_stem, is_single_image
from monai_ext.io.volumes import without_metaimage_data_files

logger = logging.getLogger(__name__)
#: Folder names of a split's parts: a "folder per class" root whose sub-folders are these is a split layout.
SPLIT_FOLDER_NAMES = frozenset({"train", "training", "val", "valid", "validation", "test", "testing"})
#: Sub-folders of a segmentation set (images beside their masks): a "folder per class" root of these is no class set.
SEGMENTATION_FOLDER_NAMES = frozenset({"images", "image", "imgs", "masks", "mask", "labels", "label", "annotations",
                                       "groundtruth", "ground_truth", "gt"})
#: Folder names under which a set files its masks (compared with case, spaces, ``_`` and ``-`` ignored): inside a
#: class folder (``benign/images/`` beside ``benign/masks/``) their files are masks, not images of the class.
MASK_FOLDER_NAMES = frozenset({"mask", "masks", "label", "labels", "gt", "groundtruth", "annotation", "annotations",
                               "segmentation", "segmentations"})
#: Suffixes of JPEG files saved under another name (browsers save ``.jfif``): the readers go by suffix and pass them
#: over, so the warning says how to use them.
JPEG_ALIASES = (".jfif", ".jpe", ".jif")
#: The optional columns of a ``csv`` protocol's sheet, read in lower case only, as ``path`` and ``label``.
OPTIONAL_CSV_COLUMNS = ("fold", "patient")
#: A column name that holds a patient's, case's, subject's or study's identifier (``patient_id``, ``Case``,
#: ``PatientID``, ``subject``, ``Study ID``), compared with case and everything but letters and digits ignored: in a
#: sheet without a ``patient`` column it was ignored, and a patient's images were split across train and test.
PATIENT_LIKE_COLUMN = re.compile(r"(patient|pat|pt|case|subject|subj|participant|study|person|mrn)"
                                 r"(id|ids|no|nr|num|number|code|name|key)?|(id)?(patient|case|subject|study)|pid|mrn")
Item = dict[str, Any]
Split = dict[str, list[Item]]

BUSBRA_CLASSES = ["benign", "malignant"]
MMOTU_CLASSES = [
    "chocolate cyst", "serous cystadenoma", "teratoma", "theca cell tumour", "simple cyst", "normal ovary",
    "mucinous cystadenoma", "high-grade serous cystadenocarcinoma",
]
GIST_CLASSES = ["leiomyoma", "GIST"]  # COCO category ids 1 and 2


@dataclass
class Protocol:
    """A dataset's evaluation protocol: class names and the splits of its runs (one per fold).

    ``fold_values`` are, where a CSV's ``fold`` column sets the folds, the column's value of each split's test part:
    the splits are numbered from 0 (``--fold 1`` is the second), which a column of 1, 2, 3 numbers otherwise.
    """

    name: str
    class_names: list[str]
    splits: list[Split] = field(default_factory=list)
    fold_values: list[int] | None = None

    def fold_name(self, k: int) -> str:
        """``fold 1``, or ``fold 1 (column value 2)`` where a ``fold`` column numbers the folds its own way."""
        return f"fold {k}" + (f" (column value {self.fold_values[k]})" if self.fold_values else "")


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise ValueError(f"{what} not found: {str(path)!r}")
    return path


def read_utf8(path: Path) -> str:
    """A list or sheet's text, a UTF-8 byte-order mark (Excel's "CSV UTF-8") dropped.

    Raises:
        ValueError: the file is not UTF-8 (Excel's plain "CSV" on Windows saves cp1252), naming it and the byte.
    """
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{str(path)!r} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); save "
                         "it as UTF-8 (in Excel: 'CSV UTF-8')") from None


def refuse_missing_images(listing: str, folder: Path, missing: list[str], dataset: str) -> None:
    """Refuse an incomplete download or copy now, naming the list and the first missing images, rather than as a
    missing file when the datalist is checked (which could only name the datalist, not yet written).

    Args:
        listing: the file that lists the images (``5-fold-cv.csv``, ``train_cls.txt``, a COCO split).
        folder: where the images should be.
        missing: the listed images not found there (as the list names them, with a line number where it has one).
        dataset: the dataset's name, to start the message.
    """
    if missing:
        raise ValueError(f"{dataset} {listing} lists {len(missing)} image(s) missing from {str(folder)!r}, e.g. "
                         f"{missing[:5]!r}; the download or copy is incomplete")


def refuse_unreadable_images(listing: str, images: dict[str, Path], dataset: str) -> None:
    """Refuse listed images that are on disk but cannot be images (:func:`~monai_ext.data.screening.why_not_an_image`:
    an empty file an interrupted unzip or copy left, a web page a download saved under the image's name): the
    official split was written whole, and the bundles then left these out of training and of the test figures with
    a warning only, so the test folds were no longer the published ones. Called once the missing ones are refused.

    Args:
        listing: the file that lists the images, for the message.
        images: each listed image (as the list names it, with its line where it has one) and its file on disk.
        dataset: the dataset's name, to start the message.

    Raises:
        ValueError: naming the list, the count and the first images with the reason.
    """
    bad = [(name, reason) for name, path in images.items() if (reason := why_not_an_image(path))]
    if bad:
        shown = "; ".join(f"{name!r}: {reason}" for name, reason in bad[:5])
        raise ValueError(f"{dataset} {listing} lists {len(bad)} image(s) that cannot be images, e.g. {shown}; the "
                         "download or copy is damaged: copy or download those files again")


def warn_unlisted_images(folder: Path, protocol: Protocol, lists: str) -> None:
    """Warn, counting them, of the images in ``folder`` (or the folder so named in another case,
    :func:`~monai_ext.data.folders.folder_in_any_case`) that no split of ``protocol`` uses: a wrong or edited list
    would otherwise shrink the dataset without a word."""
    folder = folder_in_any_case(folder)
    used = {os.path.realpath(item["image"]) for split in protocol.splits for part in split.values() for item in part}
    unlisted = [p for p in walk_files(folder) if is_single_image(p) and os.path.realpath(p) not in used]
    if unlisted:
        logger.warning("%d image(s) in %s are in none of %s and are left out, e.g. %s", len(unlisted), folder,
                       lists, ", ".join(p.name for p in unlisted[:5]))


def warn_of_test_parts_without_a_class(protocol: Protocol, lists: str) -> None:
    """Warn, naming the folds (numbered as ``--folds`` and the cross-validation name them) and the class, where the
    dataset's own split leaves a class out of a test part: macro-F1, balanced accuracy and AUC there are over the
    other classes (a model that never predicts the absent one can score 1.0), so the cross-validation summary counts
    them as undefined for that fold, as the AUC of a one-class fold. Drawn folds refuse this instead
    (:func:`_kfold`)."""
    absent: dict[str, list[int]] = {}
    for k, split in enumerate(protocol.splits):
        held = {it["label"] for it in split["test"]}
        for c, name in enumerate(protocol.class_names):
            if c not in held:
                absent.setdefault(name, []).append(k)
    for name, folds in absent.items():
        logger.warning("%s: test fold(s) %s of %d (numbered from 0) hold no image of class %r; their macro-F1, "
                       "balanced accuracy and AUC leave it out, and the cross-validation summary counts those "
                       "metrics as undefined there", lists, folds, len(protocol.splits), name)


SPLIT_PURPOSES = ("folds", "validation")


def smallest_class(labels: np.ndarray) -> int:
    """Images in the smallest class present in ``labels`` (N,), 0 when empty; a class index no item has is no class
    of these items (a fold's training part can lack a rare class), not a class of 0 images."""
    counts = np.bincount(labels) if len(labels) else np.zeros(0, int)
    return int(counts[counts > 0].min()) if counts.any() else 0


def check_splittable(labels: np.ndarray | None, groups: np.ndarray | None, n_splits: int, purpose: str,
                     class_names: Sequence[str] | None = None) -> None:
    """Refuse, with the counts and what the user can do, a split that scikit-learn's k-fold splitters would refuse
    with their own traceback. Shared by the classification and segmentation protocols, so both say the same.

    Args:
        labels: (N,) class index of each item, or None when the split is not stratified by class.
        groups: (N,) patient of each item, or None.
        n_splits: the parts to make.
        purpose: ``"folds"``: the dataset into ``n_splits`` test folds, a number the user asked for (fewer folds
            are advised only where fewer would do, see :func:`_needs`); ``"validation"``: a fold's training part
            into ``n_splits`` parts, one of them its validation part (no fold count can help there).
        class_names: names of the class indices, for the message (indices where None).

    Raises:
        ValueError: fewer patients than parts, or fewer images than parts in every class; for ``"folds"`` with
            ``labels`` and ``groups``, a class whose images come from fewer patients than folds.
    """
    if purpose not in SPLIT_PURPOSES:
        raise ValueError(f"purpose must be one of {SPLIT_PURPOSES}, got {purpose!r}")
    whole = "the dataset" if purpose == "folds" else "the training part"
    if groups is not None and len(set(groups.tolist())) < n_splits:
        patients = len(set(groups.tolist()))
        raise ValueError(f"{whole} has images of {patients} patient(s); " + _needs(
            purpose, n_splits, patients, "patient-disjoint", f"images of at least {n_splits} patients",
            "add images of other patients"))
    present = labels is not None and len(labels) > 0
    if purpose == "folds" and groups is not None and present:
        _check_patients_per_class(labels, groups, n_splits, class_names)
    counts = {int(c): int(n) for c, n in enumerate(np.bincount(labels)) if n} if present else {}
    if counts and max(counts.values()) < n_splits:
        raise ValueError(f"{whole} has fewer than {n_splits} images in every class (images per class index: {counts}); "
                         + _needs(purpose, n_splits, max(counts.values()), "stratified",
                                  f"a class with at least {n_splits} images", "add images"))


def _check_patients_per_class(labels: np.ndarray, groups: np.ndarray, folds: int,
                              class_names: Sequence[str] | None) -> None:
    """Refuse patient-disjoint test folds that cannot all hold every class: a patient's images share a fold, so a
    class of 3 patients in 5 folds leaves 2 test folds without it, and there macro-F1 and balanced accuracy leave the
    class out (a model that never predicts it scores 1.0 on those folds and lifts the mean).

    Raises:
        ValueError: naming the class with the fewest patients, its patient count and the fold count.
    """
    per_class = {int(c): len(set(groups[labels == c].tolist())) for c in np.unique(labels)}
    c, patients = min(per_class.items(), key=lambda pair: (pair[1], pair[0]))
    if patients >= folds:
        return
    name = class_names[c] if class_names is not None and c < len(class_names) else c
    # make-datalist names the count --folds; cross-validate and label-efficiency --num_folds (--folds picks folds)
    fewer = f"ask for at most {patients} folds (--folds or --num_folds {patients}) or " if patients >= 2 else ""
    raise ValueError(f"class {name!r} has images of {patients} patient(s), fewer than the {folds} folds: a patient's "
                     f"images share a test fold, so {folds - patients} test fold(s) would hold no image of it and "
                     f"score it nowhere; {fewer}add images of other patients of that class")


def _needs(purpose: str, n_splits: int, most: int, kind: str, need: str, remedy: str) -> str:
    """The second half of :func:`check_splittable`'s message: what the split needs and what the user can do.

    ``most`` is the largest fold count the data allows (its patients, or the images of its largest class). Fewer
    folds are offered only when ``most`` is at least 3: each fold's training part must still hold two patients (or
    two images of a class) to give one to its validation part, and 2 folds of 2 leave it one.
    """
    if purpose == "validation":
        return f"a {kind} validation part needs {need}: {remedy}"
    fewer = f" or ask for at most {most} folds" if most >= 3 else ""
    return f"{n_splits} {kind} test folds need {need}: {remedy}{fewer}"


def patient_groups(items: list[Item]) -> np.ndarray | None:
    """Each item's ``patient`` as text, or None where no item carries one.

    Raises:
        ValueError: only some items carry ``patient``: splitting by image would let the others' patients cross the
            split, so the mix is refused rather than grouping silently dropped.
    """
    carried = ["patient" in it for it in items]
    if not any(carried):
        return None
    if not all(carried):
        bare = [str(it.get("image", it.get("id"))) for it in items if "patient" not in it]
        raise ValueError(f"{len(bare)} of {len(items)} images have no patient while the others do, e.g. {bare[0]!r}: "
                         "give every image its patient (or none) so that no patient crosses a split")
    return np.array([str(it["patient"]) for it in items])


def _grouped_validation_split(labels: np.ndarray, groups: np.ndarray, val_fraction: float,
                              seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A patient-disjoint (train, validation) split of about ``val_fraction`` of each class, every class of two or
    more patients on both sides (:func:`~monai_ext.data.studies.whole_groups_near`, the segmentation protocols'
    rule too). A class of one patient stays in training (one never trained on scores 0 in every test, while a
    validation part without it only chooses the best checkpoint on the other classes), with a warning."""
    chosen = whole_groups_near(groups.tolist(), [str(c) for c in labels.tolist()], val_fraction, seed,
                               every_stratum=True)
    # a patient's stratum is its first image's class: one with images of two classes could take the last training
    # images of a class with it; such a patient goes back (the smallest first) until training holds every class
    for c in sorted(set(labels.tolist()) - {int(labels[i]) for i in range(len(labels)) if i not in chosen}):
        holding = sorted({groups[i] for i in chosen if labels[i] == c}, key=lambda g: (int((groups == g).sum()), g))
        chosen -= set(np.flatnonzero(groups == holding[0]).tolist())
    val = np.array(sorted(chosen), dtype=int)
    train = np.setdiff1d(np.arange(len(labels)), val)
    if set(labels[val].tolist()) != set(labels.tolist()):
        logger.warning("no patient-disjoint validation part holds every class (classes in validation: %s, in "
                       "training: %s): a class has too few patients", sorted(set(labels[val].tolist())),
                       sorted(set(labels[train].tolist())))
    return train, val


def _per_class_validation_split(labels: np.ndarray, val_fraction: float,
                                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices of ``labels`` (N,) with ``val_fraction`` of each class in validation, rounded, at
    least one image of a class of two or more and none of a class of one.

    Written by hand because scikit-learn's stratified splitters do not fit a rare class: k-fold with fewer parts
    makes every class's validation share larger (one class of 2 images gives half of the training part to
    validation) and always puts a lone image in the first validation part, so the class is never trained on;
    ``train_test_split`` refuses a class of one image.
    """
    rng = np.random.default_rng(seed)
    val_idx = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n_val = 0 if len(idx) < 2 else min(len(idx) - 1, max(1, int(round(val_fraction * len(idx)))))
        val_idx.extend(idx[rng.permutation(len(idx))[:n_val]].tolist())
    lone = sorted(int(c) for c, n in zip(*np.unique(labels, return_counts=True)) if n == 1)
    if lone:
        logger.warning("class(es) %s have one image in the training part: kept for training, so the validation "
                       "part has none of them", lone)
    val = np.array(sorted(val_idx), dtype=int)
    return np.setdiff1d(np.arange(len(labels)), val), val


def validation_from_train(train: list[Item], val_fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    """Carve a stratified validation part out of ``train``; patient-disjoint when items carry ``patient``.

    The validation part is about ``val_fraction`` of ``train``. Without patients, a class too small to fill every
    part is split on its own (:func:`_per_class_validation_split`: a class of one image stays in training). With
    patients, whole patients make about ``val_fraction`` of each class, at least one of every class of two or more
    patients (:func:`_grouped_validation_split`), whatever the patients' sizes.
    """
    if not 0.0 < val_fraction < 0.5:
        raise ValueError(f"val_fraction must be in (0, 0.5), got {val_fraction!r}")
    labels = np.array([it["label"] for it in train], dtype=int)
    n_splits = max(2, int(round(1.0 / val_fraction)))
    groups = patient_groups(train)
    if groups is None and smallest_class(labels) < n_splits:
        check_splittable(labels, None, 2, "validation")
        train_idx, val_idx = _per_class_validation_split(labels, val_fraction, seed)
    elif groups is None:  # every class fills every part: scikit-learn's stratified k-fold, its first part
        splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        train_idx, val_idx = next(splitter.split(np.zeros(len(train)), labels))
    else:
        check_splittable(labels, groups, 2, "validation")
        train_idx, val_idx = _grouped_validation_split(labels, groups, val_fraction, seed)
    return [train[i] for i in sorted(train_idx)], [train[i] for i in sorted(val_idx)]


# --------------------------------------------------------------------------------------------------------- BUS-BRA
def busbra_protocol(root: str | os.PathLike, folds: int = 5, classes_tested: bool = True) -> Protocol:
    """BUS-BRA with its official patient-disjoint ``5-fold-cv.csv`` or ``10-fold-cv.csv``.

    Run k tests on fold k (``kFold == k``); its training rows have ``valid_k == 1`` and validation rows ``valid_k == 0``.

    Args:
        root: the dataset folder (``bus_data.csv``, the fold sheets, ``Images/``).
        folds: 5 or 10, the sheet to follow.
        classes_tested: warn of a test fold without a pathology (its class-averaged scores leave it out); False for
            the segmentation protocol built on these folds, whose lesion masks have no pathology classes.
    """
    if folds not in (5, 10):
        raise ValueError(f"BUS-BRA ships 5- and 10-fold files, got folds={folds!r}")
    root = Path(root)
    data = _read_sheet(root / "bus_data.csv", ("ID", "Case"))
    cases = _case_of_each_id(data)
    sheet = f"{folds}-fold-cv.csv"
    rows = _read_sheet(root / sheet, ("ID", "Pathology", "kFold", *(f"valid_{k}" for k in range(1, folds + 1))))
    _refuse_repeated_ids(rows, sheet)
    _warn_of_pathology_disagreements(data, rows, sheet)
    without_case = [row["ID"] for row in rows if not cases.get(row["ID"])]
    if without_case:  # its patient unknown, an image could sit in training and validation beside its twin
        raise ValueError(f"BUS-BRA {sheet} lists {len(without_case)} image(s) that bus_data.csv gives no Case "
                         f"(patient), e.g. {without_case[:5]!r}; the patient-disjoint parts need it")
    folder = folder_in_any_case(root / "Images")
    images = {row["ID"]: file_in_any_case(folder / f"{row['ID']}.png") for row in rows}
    refuse_missing_images(sheet, folder, [i for i, path in images.items() if not path.is_file()], "BUS-BRA")
    refuse_unreadable_images(sheet, images, "BUS-BRA")
    protocol = Protocol("busbra", BUSBRA_CLASSES)
    for k in range(1, folds + 1):
        split: Split = {"train": [], "validation": [], "test": []}
        for row in rows:
            pathology = row["Pathology"].strip().lower()
            if pathology not in BUSBRA_CLASSES:
                raise ValueError(f"BUS-BRA row {row['ID']!r} has pathology {row['Pathology']!r}")
            item = {"image": str(images[row["ID"]]), "label": BUSBRA_CLASSES.index(pathology),
                    "id": row["ID"], "patient": cases[row["ID"]]}
            if _sheet_number(row, "kFold", tuple(range(1, folds + 1))) == k:
                split["test"].append(item)
            else:  # every other row is in training (1) or validation (0): none may fall out of the fold
                split["train" if _sheet_number(row, f"valid_{k}", (0, 1)) == 1 else "validation"].append(item)
        _check_patients_apart(split, sheet, k)
        protocol.splits.append(split)
    warn_unlisted_images(folder, protocol, f"BUS-BRA {sheet}")
    if classes_tested:
        warn_of_test_parts_without_a_class(protocol, f"BUS-BRA {sheet}")
    warn_of_copies_across_parts(protocol.splits, f"BUS-BRA {sheet}")
    return protocol


def _case_of_each_id(data: list[dict[str, str]]) -> dict[str, str]:
    """``bus_data.csv``'s Case (patient) of each image ID.

    Raises:
        ValueError: an ID given two Cases: either could be right, and the wrong one could split a patient.
    """
    cases: dict[str, str] = {}
    for row in data:
        known = cases.setdefault(row["ID"], row["Case"])
        if known != row["Case"]:
            raise ValueError(f"BUS-BRA bus_data.csv gives image {row['ID']!r} two Cases, {known!r} and "
                             f"{row['Case']!r}; keep the row that is right")
    return cases


def _refuse_repeated_ids(rows: list[dict[str, str]], sheet: str) -> None:
    """An image listed twice in a fold sheet would be counted twice, or trained on and tested on."""
    repeated = sorted(image_id for image_id, n in Counter(row["ID"] for row in rows).items() if n > 1)
    if repeated:
        raise ValueError(f"BUS-BRA {sheet} lists {len(repeated)} image ID(s) on more than one row, e.g. "
                         f"{repeated[:5]!r}; keep one row per image")


def _warn_of_pathology_disagreements(data: list[dict[str, str]], rows: list[dict[str, str]], sheet: str) -> None:
    """Warn where ``bus_data.csv`` and the fold sheet give an image different pathologies: the fold sheet's is
    used, and an edit to one sheet only would otherwise change labels without a word."""
    if not data or "Pathology" not in data[0]:
        return
    given = {row["ID"]: row["Pathology"].strip().lower() for row in data}
    differ = [row["ID"] for row in rows if row["ID"] in given and given[row["ID"]] != row["Pathology"].strip().lower()]
    if differ:
        logger.warning("BUS-BRA: bus_data.csv and %s give %d image(s) different pathologies, e.g. %s; %s's are used",
                       sheet, len(differ), ", ".join(differ[:5]), sheet)


def _check_patients_apart(split: Split, sheet: str, k: int) -> None:
    """Refuse a test fold whose patients (Cases) have other images in its training or validation part: folds are
    patient-disjoint as published, so an edited or damaged sheet would test on patients trained on. A patient
    across training and validation only makes the checkpoint choice optimistic: a warning."""
    first = patients_by_part(split)
    patients = {part: set(items) for part, items in first.items()}
    crossing = sorted(patients["test"] & (patients["train"] | patients["validation"]))
    if crossing:
        example = first["test"][crossing[0]]["id"]
        raise ValueError(f"BUS-BRA {sheet}: test fold {k} holds {len(crossing)} patient(s) (Case) whose other images "
                         f"are in its training or validation part, e.g. Case {crossing[0]!r} ({example!r}); give a "
                         "patient's images one kFold")
    shared = sorted(patients["train"] & patients["validation"])
    if shared:
        logger.warning("BUS-BRA %s, run %d: %d patient(s) have images in both training and validation (valid_%d), "
                       "e.g. Case %r; the best checkpoint is chosen on images of patients trained on", sheet, k,
                       len(shared), k, shared[0])


def _read_sheet(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """The rows of one of BUS-BRA's CSV sheets as a spreadsheet may have saved it: a UTF-8 byte-order mark (Excel's
    "CSV UTF-8") dropped, spaces around column names and cells stripped, rows without a filled cell left out.

    Raises:
        ValueError: the file is missing or lacks one of ``columns`` (named, with the columns it has).
    """
    text = read_utf8(_require(path, f"BUS-BRA {path.name}"))
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = []
    for row in reader:
        _check_overflow(row, reader.fieldnames or [], path, reader.line_num)
        # cells past the header's last column (a trailing comma, an unquoted BBOX list) come under the key None
        rows.append({k.strip(): (v or "").strip() for k, v in row.items() if k is not None})
    rows = [row for row in rows if any(row.values())]  # cells cleared in a spreadsheet are saved as rows of commas
    found = list(rows[0]) if rows else []
    missing = [c for c in columns if c not in found]
    if missing:
        raise ValueError(f"{str(path)!r} lacks the column(s) {missing!r} (it has {found!r})")
    return rows


def _check_overflow(row: dict[Any, Any], header: list[str], path: Path, line: int) -> None:
    """Cells past the header's last column are harmless when empty (a trailing comma) or when that column is BBOX,
    whose unquoted ``[x, y, w, h]`` list spills them; anywhere else a cell with a comma has shifted the columns after
    it, Case and Pathology among them, and the row cannot be read right.

    Raises:
        ValueError: naming the file, the line and the cells past the header.
    """
    extra = [cell for cell in row.get(None) or [] if cell.strip()]
    if extra and (not header or header[-1].strip() != "BBOX"):
        raise ValueError(f"{str(path)!r} line {line} has {len(extra)} cell(s) more than its header ({extra[:3]!r}): "
                         "a cell with a comma that is not quoted shifts the columns after it; quote it")


def _sheet_number(row: dict[str, str], column: str, allowed: tuple[int, ...] | None = None) -> int:
    """A whole number of a BUS-BRA sheet's cell; ``1.0`` counts as 1, as pandas writes integers of a column that
    has empty cells.

    Raises:
        ValueError: the cell is empty, not a whole number, or not one of ``allowed``; the row's ID is named.
    """
    text = row[column]
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value.is_integer() or (allowed is not None and int(value) not in allowed):
        expected = " or ".join(map(str, allowed)) if allowed else "a whole number"
        raise ValueError(f"BUS-BRA row {row['ID']!r}: {column} is {text!r}, expected {expected}")
    return int(value)


# --------------------------------------------------------------------------------------------------------- MMOTU-2D
def _read_cls_list(path: Path, images: Path) -> list[Item]:
    """The items of ``train_cls.txt`` or ``val_cls.txt`` (``FILE  LABEL`` lines).

    Raises:
        ValueError: a malformed line or an image listed twice (with the line numbers), listed images missing from
            ``images``, or listed ones that cannot be images (:func:`refuse_unreadable_images`).
    """
    items, missing, line_of, listed = [], [], {}, {}
    for line_no, line in enumerate(read_utf8(path).splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or not 0 <= int(parts[1]) < len(MMOTU_CLASSES):
            raise ValueError(f"{path}:{line_no}: expected 'FILE  LABEL' with a label 0-7, got {line!r}")
        first = line_of.setdefault(parts[0].casefold(), line_no)
        if first != line_no:
            raise ValueError(f"{path}: {parts[0]!r} is listed on lines {first} and {line_no}; list each image once")
        image = file_in_any_case(images / parts[0])
        listed[f"{parts[0]} (line {line_no})"] = image
        if not image.is_file():
            missing.append(f"{parts[0]} (line {line_no})")
        items.append({"image": str(image), "label": int(parts[1]), "id": Path(parts[0]).stem})
    refuse_missing_images(path.name, images, missing, "MMOTU")
    refuse_unreadable_images(path.name, listed, "MMOTU")
    return items


def mmotu_protocol(root: str | os.PathLike, val_fraction: float = 0.1, seed: int = 0) -> Protocol:
    """MMOTU-2D (8 classes): train on ``train_cls.txt``, test on ``val_cls.txt``; validation from the train part."""
    root = Path(root)
    folder = folder_in_any_case(root / "images")
    train = _read_cls_list(_require(root / "train_cls.txt", "MMOTU train_cls.txt"), folder)
    test = _read_cls_list(_require(root / "val_cls.txt", "MMOTU val_cls.txt"), folder)
    both = sorted({it["image"] for it in train} & {it["image"] for it in test})
    if both:
        raise ValueError(f"MMOTU train_cls.txt and val_cls.txt both list {len(both)} image(s), e.g. "
                         f"{Path(both[0]).name!r}; an image is trained on or tested on, not both")
    train, validation = validation_from_train(train, val_fraction, seed)
    protocol = Protocol("mmotu", MMOTU_CLASSES, [{"train": train, "validation": validation, "test": test}])
    warn_unlisted_images(folder, protocol, "MMOTU train_cls.txt and val_cls.txt")
    warn_of_test_parts_without_a_class(protocol, "MMOTU val_cls.txt")
    warn_of_copies_across_parts(protocol.splits, "MMOTU train_cls.txt and val_cls.txt")
    return protocol


# ------------------------------------------------------------------------------------------------------- GIST514-DB
def _read_coco(path: Path, images: Path) -> list[Item]:
    """The items of one GIST514 COCO file: an image's label is the category of its annotation(s).

    Raises:
        ValueError: not JSON, a category table that does not name ``lmym`` and ``gist``, an image with no or two
            categories, an image file listed twice (under two image ids), listed images missing from ``images``, or
            listed ones that cannot be images (:func:`refuse_unreadable_images`).
    """
    try:
        coco = json.loads(read_utf8(path))
    except json.JSONDecodeError as e:
        raise ValueError(f"{str(path)!r} is not valid JSON: {e}") from e
    label_of = _gist_category_labels(coco.get("categories"), path)
    labels: dict[int, set[int]] = {}
    for ann in coco.get("annotations", []):
        labels.setdefault(ann["image_id"], set()).add(int(ann["category_id"]))
    items, missing = [], []
    for image in coco["images"]:
        categories = labels.get(image["id"], set())
        if len(categories) != 1 or not categories <= set(label_of):
            raise ValueError(f"{path}: image {image['file_name']!r} has categories {sorted(categories)!r}, expected "
                             f"one of {sorted(label_of)}")
        file = file_in_any_case(images / image["file_name"])
        if not file.is_file():
            missing.append(image["file_name"])
        items.append({"image": str(file), "label": label_of[categories.pop()], "id": Path(image["file_name"]).stem})
    _refuse_images_listed_twice(coco["images"], items, path)
    refuse_missing_images(path.name, images, missing, "GIST514")
    refuse_unreadable_images(path.name, {str(entry["file_name"]): Path(it["image"])
                                         for entry, it in zip(coco["images"], items)}, "GIST514")
    return items


def _refuse_images_listed_twice(entries: list[dict[str, Any]], items: list[Item], path: Path) -> None:
    """Refuse a COCO file that lists one image file under two image ids (``case_001.jpg`` twice, or once as
    ``case_001.JPG``): the image was trained on twice, or trained on and validated on, without a word.

    Args:
        entries: the file's ``images`` entries.
        items: the items read from them, in the same order (their ``image`` the file found on disk).
        path: the COCO file, for the message.

    Raises:
        ValueError: naming the file name and its image ids.
    """
    ids_of: dict[Any, list[Any]] = {}
    name_of: dict[Any, str] = {}
    for entry, item in zip(entries, items):
        key = _same_file(item["image"])
        ids_of.setdefault(key, []).append(entry["id"])
        name_of.setdefault(key, str(entry["file_name"]))
    twice = [key for key, ids in ids_of.items() if len(ids) > 1]
    if twice:
        raise ValueError(f"GIST514 {path.name} lists {len(twice)} image file(s) more than once, e.g. "
                         f"{name_of[twice[0]]!r} as image ids {ids_of[twice[0]]!r}; list each image once")


def _same_file(path: str) -> Any:
    """What tells files apart: device and inode where the file exists (on a case-insensitive disk ``case_001.jpg``
    and ``case_001.JPG`` are one file under two spellings), else the real path (in the system's case: Windows'
    ``normcase``). A filesystem without inode numbers gives 0 for every file (Python's ``st_ino``: "if non-zero";
    FAT, some network shares): every image was then one file listed many times."""
    try:
        stat = os.stat(path)
    except OSError:
        return os.path.realpath(path)
    if stat.st_ino == 0:
        return os.path.normcase(os.path.realpath(path))
    return stat.st_dev, stat.st_ino


#: GIST514's COCO category names and the class index each gets (``GIST_CLASSES``).
GIST_CATEGORY_NAMES = {"lmym": 0, "leiomyoma": 0, "gist": 1}


def _gist_category_labels(categories: Any, path: Path) -> dict[int, int]:
    """The class index of each COCO category id, read by name from the file's ``categories`` table (a copy whose
    ids run the other way would otherwise have every label flipped); ids 1 (leiomyoma) and 2 (GIST), as
    distributed, where the file has no table.

    Raises:
        ValueError: a table whose names are not those of GIST514's two classes, naming what it holds.
    """
    if not categories:
        return {1: 0, 2: 1}
    names = {int(c["id"]): str(c.get("name", "")).strip().lower() for c in categories}
    if sorted(GIST_CATEGORY_NAMES.get(n, -1) for n in names.values()) != [0, 1]:
        raise ValueError(f"{str(path)!r}: categories {sorted(names.items())!r} are not GIST514's 'lmym' and "
                         "'gist' (one each)")
    return {category: GIST_CATEGORY_NAMES[name] for category, name in names.items()}


def gist514_protocol(root: str | os.PathLike, val_fraction: float = 0.1, seed: int = 0) -> Protocol:
    """GIST514-DB: the five COCO splits ``{train,val}_anno_crop_split_{0..4}.json``; ``val`` is the test part."""
    root = Path(root)
    protocol = Protocol("gist514", GIST_CLASSES)
    ann, folder = folder_in_any_case(root / "annotations"), folder_in_any_case(root / "images")
    for k in range(5):
        train = _read_coco(_require(ann / f"train_anno_crop_split_{k}.json", "GIST514 split"), folder)
        test = _read_coco(_require(ann / f"val_anno_crop_split_{k}.json", "GIST514 split"), folder)
        tested = {_same_file(it["image"]) for it in test}
        both = [it["image"] for it in train if _same_file(it["image"]) in tested]
        if both:  # refused now, naming the split's files, as MMOTU's lists are: the datalist check named no COCO file
            raise ValueError(f"GIST514 train_anno_crop_split_{k}.json and val_anno_crop_split_{k}.json both list "
                             f"{len(both)} image(s), e.g. {Path(both[0]).name!r}; an image is trained on or tested "
                             "on, not both")
        train, validation = validation_from_train(train, val_fraction, seed + k)
        protocol.splits.append({"train": train, "validation": validation, "test": test})
    warn_unlisted_images(folder, protocol, "GIST514 annotations/*_split_*.json")
    warn_of_test_parts_without_a_class(protocol, "GIST514 annotations/val_anno_crop_split_*.json")
    warn_of_copies_across_parts(protocol.splits, "GIST514 annotations/*_split_*.json")
    return protocol


# ------------------------------------------------------------------------------------------------ generic layouts
def _kfold(items: list[Item], folds: int, val_fraction: float, seed: int, max_train: int | None,
           class_names: Sequence[str] | None = None) -> list[Split]:
    labels = np.array([it["label"] for it in items], dtype=int)
    smallest = smallest_class(labels)
    if isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= max(smallest, 2):
        allowed = "2" if smallest <= 2 else f"an integer from 2 to {smallest}"  # "from 2 to 2" reads as a range
        more = ("; more folds need more images in that class"
                if isinstance(folds, int) and not isinstance(folds, bool) and folds > smallest else "")
        raise ValueError(f"folds must be {allowed} (the smallest class has {smallest} image(s)), got {folds!r}{more}")
    classes = len(set(labels.tolist()))
    if max_train is not None and (isinstance(max_train, bool) or not isinstance(max_train, numbers.Integral)
                                  or max_train < 2 * classes):
        raise ValueError(f"max_train must be a whole number of at least {2 * classes} (two labelled images for each "
                         f"of the {classes} classes: one to train on, one to validate on), got {max_train!r}")
    groups = patient_groups(items)
    check_splittable(labels, groups, folds, "folds", class_names)
    if groups is not None:
        splits = StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(items)), labels, groups)
    else:
        splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(items)), labels)
    out = []
    for k, (train_idx, test_idx) in enumerate(splits):
        train = [items[i] for i in train_idx]
        if max_train is not None and len(train) > max_train:
            train = _stratified_subset(train, max_train, np.random.default_rng(seed + k))
        train, validation = validation_from_train(train, val_fraction, seed + k)
        out.append({"train": train, "validation": validation, "test": [items[i] for i in sorted(test_idx)]})
    return out


def check_generated_size(per_class: int, folds: int = 5) -> None:
    """Refuse, before a benchmark is generated, a ``per_class`` too small for its fixed ``folds``: the split would
    refuse it only after generating, advising a fold count the benchmark does not take.

    Raises:
        ValueError: quoting ``per_class``.
    """
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < folds:
        raise ValueError(f"per_class must be a whole number of at least {folds} (the benchmark's {folds} folds test "
                         f"one image of each class in each), got {per_class!r}")


def _stratified_subset(items: list[Item], size: int, rng: np.random.Generator) -> list[Item]:
    """``size`` items keeping the class proportions (largest remainders), and at least two of every class that has
    two (one to train on, one to validate on): a rare class's share rounds to none under a small cap, and that class
    was then tested but never trained on. ``size`` is at least twice the number of classes (:func:`_kfold`)."""
    labels = np.array([it["label"] for it in items])
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts / counts.sum() * size
    take = np.floor(quota).astype(int)
    for i in np.argsort(-(quota - take))[: size - take.sum()]:
        take[i] += 1
    need = np.minimum(counts, 2)
    while (short := np.flatnonzero(take < need)).size:
        donor = int(np.argmax(take - need))  # the class with the most to spare gives one
        take[donor] -= 1
        take[short[0]] += 1
    chosen = []
    for c, n in zip(classes, take):
        idx = np.flatnonzero(labels == c)
        chosen.extend(rng.choice(idx, size=n, replace=False).tolist())
    return [items[i] for i in sorted(chosen)]


def labels_per_class(split: Split, count: int, num_classes: int, val_fraction: float = 0.2, seed: int = 0) -> Split:
    """The split with exactly ``count`` labelled images per class (training + validation together); test unchanged.

    ``max_train`` of the protocols caps the total and keeps the class proportions; a label-efficiency curve needs
    the count per class. The images are drawn from the split's training and validation parts, per class in one
    seeded order that does not depend on ``count``, so the labelled set of a smaller count is a subset of that of a
    larger one (nested budgets: the curve moves with the count, not with a new draw); then a stratified validation
    part (:func:`validation_from_train`, patient-disjoint when items carry ``patient``) is carved out of them.

    Args:
        split: ``{"train", "validation", "test"}`` datalists.
        count: labelled images per class, at least 2 (one for training, one for validation).
        num_classes: K; every class 0..K-1 must have ``count`` labelled images, including a class that has none in
            this split's training and validation parts (a rare class can be absent from a fold).
        val_fraction: share of the ``count`` images per class held out for validation.
        seed: the draw.

    Raises:
        ValueError: ``count`` below 2 or not an integer, or a class with fewer than ``count`` labelled images.
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 2:
        raise ValueError(f"labels per class must be an integer of at least 2, got {count!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer of at least 2, got {num_classes!r}")
    pool = sorted(split["train"] + split["validation"], key=lambda it: (it["label"], str(it["id"]), str(it["image"])))
    labels = np.array([it["label"] for it in pool])
    rng = np.random.default_rng(seed)
    chosen: list[Item] = []
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        if len(idx) < count:
            raise ValueError(f"class {c} has {len(idx)} labelled images in the split's training and validation parts "
                             f"(its other images are in the test part), fewer than {count} labels per class")
        chosen.extend(pool[i] for i in idx[rng.permutation(len(idx))[:count]])
    train, validation = validation_from_train(chosen, val_fraction, seed)
    return {"train": train, "validation": validation, "test": list(split["test"])}


def folder_protocol(root: str | os.PathLike, folds: int = 5, val_fraction: float = 0.2, seed: int = 0,
                    max_train: int | None = None) -> Protocol:
    """Folder per class (``root/<class>/*.png``, or any format the loader reads: DICOM, NIfTI, NRRD, MHA, ...;
    linked study folders followed), stratified k-fold; optionally at most ``max_train`` training images.

    The images inside a sub-folder of a class folder (``root/<class>/<study>/frame.png``, at any depth below it) are
    one study: they share a test fold and a side of the validation split (``patient`` is that first-level
    sub-folder), since frames of one study tested after their neighbours were trained on inflate every figure. An
    image directly in its class folder is a study of its own. Files in a mask folder inside a class folder
    (``<class>/masks/``, :data:`MASK_FOLDER_NAMES`) are masks and are left out, as are files the loader cannot read
    (cine loops, notes), each with a warning that counts them.

    Raises:
        ValueError: fewer than two class folders, class folders whose names differ only in case or surrounding
            spaces (one class saved twice), sub-folders that are a split's parts or a segmentation set's images
            and masks (naming the protocol that reads a published set), or a class folder without images (an empty
            class would otherwise become a class no image has). Hidden folders and an unzipped archive's
            ``__MACOSX`` are not classes.
    """
    root = Path(root)
    folders = sorted(p.name for p in _require(root, "dataset folder").iterdir()
                     if p.is_dir() and not is_hidden_name(p.name))
    _refuse_names_differing_in_case(folders, root, "class folders", "merge them into one folder")
    # the layout is refused before the class folders are walked: their masks and other files are not worth warning of
    parts = [name for name in folders if name.lower() in SPLIT_FOLDER_NAMES]
    if len(parts) >= 2:  # ROOT/train/<class>, ROOT/test/<class>: the classes would be "train" and "test"
        raise ValueError(f"the sub-folders {parts!r} of {str(root)!r} are parts of a split, not classes; give the "
                         "folder whose sub-folders are the classes, or a CSV with a 'fold' column (protocol csv)")
    layers = [name for name in folders if name.lower() in SEGMENTATION_FOLDER_NAMES]
    if len(layers) >= 2:  # ROOT/images, ROOT/masks: the classes would be "images" and "masks"
        raise ValueError(f"the sub-folders {layers!r} of {str(root)!r} are a segmentation set's images and masks, "
                         f"not classes; {_protocol_for_images_and_masks(root)}")
    found = {name: _class_folder_files(root / name) for name in folders}
    _warn_of_files_left_out(root, found)
    _warn_of_images_in_no_class_folder(root)
    images = {name: without_masks(found[name][0], root / name) for name in folders}
    empty = [name for name, kept in images.items() if not kept]
    if empty:
        raise ValueError(f"class folders without images under {str(root)!r}: {empty!r}; remove them or add images")
    if len(folders) < 2:
        raise ValueError(f"{str(root)!r} needs one sub-folder per class (at least two), found {folders!r}")
    items = [{"image": str(p), "label": c, "id": image_stem(p)} for c, name in enumerate(folders) for p in images[name]]
    _group_by_study_folder(items, root, folders, folds)
    items = keep_one_copy(leave_out_non_images(items, repr(str(root))), folders, repr(str(root)))
    _require_every_class(items, folders, repr(str(root)))
    return Protocol(root.name, folders, _kfold(items, folds, val_fraction, seed, max_train, folders))


def _protocol_for_images_and_masks(root: Path) -> str:
    """What to run on a root whose sub-folders are images and masks (the end of :func:`folder_protocol`'s message):
    a published set's own protocol where its lists are there (``image-mask-folders`` would refuse BUS-BRA's
    ``Images/`` and ``Masks/``, whose file names differ, and drop its official folds), else ``image-mask-folders``."""
    if (root / "bus_data.csv").is_file():
        return ("it holds bus_data.csv, so it is BUS-BRA: make-datalist busbra (classification, its official folds) "
                "or busbra-seg (segmentation)")
    if (root / "train_cls.txt").is_file():
        return ("it holds train_cls.txt, so it is MMOTU-2D: make-datalist mmotu (classification, its published "
                "split) or mmotu-seg (segmentation)")
    if (root / "annotations" / "train_anno_crop_split_0.json").is_file():
        return "it holds annotations/train_anno_crop_split_0.json, so it is GIST514-DB: make-datalist gist514"
    return "make a segmentation datalist (make-datalist image-mask-folders)"


def is_mask_folder(name: str) -> bool:
    """Whether a folder name is one of :data:`MASK_FOLDER_NAMES` (``Masks``, ``ground_truth``, ``Ground Truth``)."""
    return re.sub(r"[\s_-]", "", name).casefold() in MASK_FOLDER_NAMES


def _class_folder_files(folder: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """(images the loader reads, files in mask folders, other files) under one class folder, from one walk.

    The images keep :func:`walk_files`' order, as before, so that the folds drawn from them do not change
    (:func:`~monai_ext.data.folders.list_images_and_others` sorts its paths, which reorders a class folder's loose
    images and sub-folders). A generated set's record (``synthetic.json`` at the top, which the synthetic benchmark
    writes into each class folder) and a MetaImage header's voxel file (read through the ``.mhd``) are neither.
    """
    images, masks, others = [], [], []
    for path in walk_files(folder):
        if any(is_mask_folder(part) for part in path.relative_to(folder).parts[:-1]):
            masks.append(path)
        elif is_single_image(path):
            images.append(path)
        elif path != folder / GENERATION_RECORD:
            others.append(path)
    return images, masks, without_metaimage_data_files(others, images)


def _warn_of_files_left_out(root: Path, found: dict[str, tuple[list[Path], list[Path], list[Path]]]) -> None:
    """Warn, counting them, of the files in mask folders and of those the loader cannot read
    (:func:`_class_folder_files` of each class folder): a ``<class>/masks/`` folder was trained and tested as images
    of its class, and cine loops or JPEGs saved as ``.jfif`` were dropped without a word."""
    masks = [p for _, in_masks, _ in found.values() for p in in_masks]
    if masks:
        folders = sorted({_mask_folder_of(p, root) for p in masks})
        shown = ", ".join(folders[:5]) + (" ..." if len(folders) > 5 else "")
        logger.warning("%s: %d file(s) in mask folders inside the class folders (%s) are masks, not images of their "
                       "class, and are left out", root, len(masks), shown)
    others = [p for _, _, other in found.values() for p in other]
    if others:
        jpegs = sorted({p.suffix.lower() for p in others if p.suffix.lower() in JPEG_ALIASES})
        hint = f"; {', '.join(jpegs)} files are JPEGs: rename them to .jpg to use them" if jpegs else ""
        logger.warning("%s: %d file(s) in the class folders are of no format the image loader reads and are left "
                       "out (%s), e.g. %s%s", root, len(others), suffix_counts(others),
                       ", ".join(p.relative_to(root).as_posix() for p in others[:3]), hint)


def _warn_of_images_in_no_class_folder(root: Path) -> None:
    """Warn, counting them, of images directly in the dataset folder: they are in no class folder, so no class
    takes them, and a class unpacked into the root instead of its folder was dropped without a word."""
    loose = sorted(p for p in root.iterdir() if p.is_file() and not is_hidden_name(p.name) and is_single_image(p))
    if loose:
        logger.warning("%s: %d image(s) lie directly in the dataset folder, in no class folder, and are left out, "
                       "e.g. %s; move them into their class folder to use them", root, len(loose),
                       ", ".join(p.name for p in loose[:3]))


def _mask_folder_of(path: Path, root: Path) -> str:
    """``benign/masks`` for ``root/benign/masks/a.png``: the path, below ``root``, to the first mask folder that
    holds ``path`` below its class folder."""
    parts = path.relative_to(root).parts
    depth = next(i for i in range(1, len(parts) - 1) if is_mask_folder(parts[i]))
    return "/".join(parts[: depth + 1])


def _group_by_study_folder(items: list[Item], root: Path, folders: list[str], folds: int) -> None:
    """Give each item (in place) its study as ``patient`` where class folders have sub-folders
    (:func:`~monai_ext.data.studies.study_folders`, within each class, since every test fold needs every class): the
    sub-folder of its class folder (``<class>/<study>``; below sites or scanners holding studies, the folder below),
    or for an image directly in its class folder its own path (a study of one). Sub-folders that look like
    containers (``benign/benign/``, ``benign/scannerA/``) leave the images to be split one by one, with a warning.
    Every item gets a study or none: :func:`patient_groups` refuses a mix.
    """
    # walk_files gives paths as reached under the class folder, so a linked study folder keeps its name here
    relative = [Path(it["image"]).relative_to(root / folders[it["label"]]).parts for it in items]
    classes = [folders[it["label"]] for it in items]
    studies = study_folders([[c, *parts[:-1]] for c, parts in zip(classes, relative)], 1, folds, str(root),
                            "list each image's patient in a CSV (protocol csv, 'patient' column)", classes)
    if studies is None:
        return
    for it, c, parts, study in zip(items, classes, relative, studies):
        it["patient"] = study if study is not None else f"{c}/{parts[0]}"
    _warn_of_studies_under_several_classes([s for s in studies if s is not None], root)


def _warn_of_studies_under_several_classes(studies: list[str], root: Path) -> None:
    """Warn, naming them, of study folders of one name under several class folders (``benign/pt0/`` and
    ``malignant/pt0/``): each is a study of its own, so if they are one patient's (a benign and a malignant lesion),
    that patient is tested on a model trained on its other lesion. Only the CSV protocol's ``patient`` column can
    say which folders are one patient.

    Args:
        studies: the study folders (``"benign/pt0"``), class folder first.
        root: the dataset folder, for the message.
    """
    classes_of: dict[str, set[str]] = {}
    for study in studies:
        class_name, _, below = study.partition("/")
        classes_of.setdefault(below, set()).add(class_name)
    shared = sorted(below for below, classes in classes_of.items() if len(classes) > 1)
    if shared:
        shown = ", ".join(" and ".join(f"{c}/{below}/" for c in sorted(classes_of[below])) for below in shared[:3])
        logger.warning("%s: %d study folder name(s) are under several class folders (%s%s); each folder is a patient "
                       "of its own here: if they are one patient's, list each image's patient in a CSV (protocol "
                       "csv, 'patient' column) to keep them on one side of the split", root, len(shared), shown,
                       " ..." if len(shared) > 3 else "")


def _require_every_class(items: list[dict], class_names: list[str], source: str) -> None:
    """Refuse a class left with no image once files that cannot be images and copies are left out."""
    left = sorted(set(range(len(class_names))) - {it["label"] for it in items})
    if left:
        raise ValueError(f"{source}: class(es) {[class_names[c] for c in left]!r} have no image left once the files "
                         "that cannot be images and the copies across classes are left out (see the warnings)")


def _read_csv_rows(csv_path: str | os.PathLike) -> list[tuple[int, dict[str, str]]]:
    """The rows of a ``path, label`` CSV as a spreadsheet writes it, each with its line in the file: a UTF-8
    byte-order mark (Excel's "CSV UTF-8") is dropped, cells lose surrounding spaces, rows with every cell empty
    (a spreadsheet's trailing ``,,``) are no entries; paths resolved against the CSV's folder, and spelled as the disk
    has them where they differ only in case or Unicode form (:func:`~monai_ext.data.folders.file_in_any_case`).

    Raises:
        ValueError: a folder given for the CSV, no rows or columns missing, an empty label, or files that do not exist
            (the lines named).
    """
    csv_path = Path(_require(Path(csv_path), "CSV file"))
    if csv_path.is_dir():  # "[Errno 21] Is a directory" said nothing of the protocol a folder of classes takes
        raise ValueError(f"{str(csv_path)!r} is a folder: the csv protocol reads a CSV file of path,label rows; for a "
                         "folder of class folders use 'make-datalist folder'")
    rows = []
    reader = csv.DictReader(io.StringIO(read_utf8(csv_path), newline=""))
    for row in reader:
        cells = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        if any(cells.values()):
            rows.append((reader.line_num, cells))  # the file's line: blank lines are skipped, not counted
    if not rows or not {"path", "label"} <= set(rows[0][1]):
        header = [name.strip() for name in reader.fieldnames or []]
        raise ValueError(f"{str(csv_path)!r} needs columns 'path' and 'label' (lower case, comma-separated); its "
                         f"header has {header!r}" + ("" if rows else " and no rows"))
    unlabelled = [line for line, r in rows if not r["label"]]
    if unlabelled:
        raise ValueError(f"{str(csv_path)!r}: empty label on line(s) {unlabelled[:10]!r}")
    for _, r in rows:
        # "é" composed in the sheet, decomposed on disk (macOS), or "IMG_1.PNG" for "img_1.png" (a sheet written where
        # names ignore case, read on Linux): the same name to the user
        r["path"] = str(file_in_any_case((csv_path.parent / r["path"]).resolve()))
    missing = [(line, r["path"]) for line, r in rows if not Path(r["path"]).is_file()]
    if missing:
        raise ValueError(f"{str(csv_path)!r}: {len(missing)} file(s) not found, on line(s) "
                         f"{[line for line, _ in missing[:10]]!r}, e.g. {missing[0][1]!r}")
    return rows


def csv_protocol(csv_path: str | os.PathLike, folds: int | None = None, val_fraction: float = 0.2,
                 seed: int = 0) -> Protocol:
    """CSV with columns ``path, label`` and optional ``fold`` (test fold of the row) and ``patient``.

    Relative paths are relative to the CSV's folder. Labels may be names (sorted into indices) or integers. An
    optional column is used only when every row fills it (a blank cell is refused: it would silently turn the
    user's folds or patient grouping off); a patient's images must share one fold. Column names are read in lower
    case only: ``Path`` or ``Patient`` is refused, naming it.

    Raises:
        ValueError: as :func:`_read_csv_rows`; ``Patient`` or ``Fold`` (a column that is ``patient`` or ``fold`` in
            another case); no ``patient`` column but one named like a patient's identifier (``patient_id``, ``Case``:
            :func:`_check_unread_columns`, which also warns of every column not read); a partly blank ``fold`` or ``patient`` column, a fold that is not a whole number, or a
            patient in several folds (naming the lines); ``folds`` given for a CSV whose ``fold`` column sets them
            (it was ignored in silence).
    """
    rows = _read_csv_rows(csv_path)
    _refuse_optional_columns_in_another_case(list(rows[0][1]), csv_path)
    _check_unread_columns(list(rows[0][1]), csv_path)
    names = sorted({r["label"] for _, r in rows}, key=lambda v: (not v.isdigit(), int(v) if v.isdigit() else v))
    _refuse_names_differing_in_case(names, csv_path, "labels", "write each class one way")
    patients = _complete_column(rows, "patient", csv_path)
    fold_cells = _complete_column(rows, "fold", csv_path)
    items = []
    for line, r in rows:
        item = {"image": r["path"], "label": names.index(r["label"]), "id": Path(r["path"]).stem}
        if patients:
            item["patient"] = r["patient"]
        if fold_cells:
            item["fold"] = _whole_number(r["fold"], csv_path, line, "fold")
        items.append(item)
    items = keep_one_copy(leave_out_non_images(items, repr(str(csv_path))), names, repr(str(csv_path)))
    _require_every_class(items, names, repr(str(csv_path)))
    if fold_cells and folds is not None:
        raise ValueError(f"{str(csv_path)!r} has a 'fold' column, which sets the folds; leave out folds={folds!r} "
                         "(--folds, --num_folds), or empty the column to let the folds be drawn")
    if fold_cells and len({it["fold"] for it in items}) < 2:
        raise ValueError(f"{str(csv_path)!r}: its 'fold' column holds one fold ({items[0]['fold']!r}); a test fold "
                         "needs others to train on: give at least two folds, or empty the column")
    if fold_cells:
        _check_patients_in_one_fold(items, csv_path)
        splits = []
        for k in sorted({it["fold"] for it in items}):
            train = [it for it in items if it["fold"] != k]
            train, validation = validation_from_train(train, val_fraction, seed + k)
            splits.append({"train": train, "validation": validation, "test": [it for it in items if it["fold"] == k]})
    else:
        splits = _kfold(items, 5 if folds is None else folds, val_fraction, seed, None, names)
    protocol = Protocol(Path(csv_path).stem, names, splits)
    if fold_cells:
        protocol.fold_values = sorted({it["fold"] for it in items})
        warn_of_test_parts_without_a_class(protocol, f"{str(csv_path)!r} 'fold' column")
    return protocol


def _refuse_optional_columns_in_another_case(columns: list[str], csv_path: str | os.PathLike) -> None:
    """Refuse ``Patient`` or ``Fold``, as spreadsheets capitalise headers: only ``patient`` and ``fold`` are read,
    so the column was ignored without a word, and patients crossed splits or folds were drawn instead of the
    user's. Refused rather than read in any case, as ``Path`` and ``Label`` are (:func:`_read_csv_rows`): one rule,
    lower case, for every column, and a sheet read today means what it meant before.

    Args:
        columns: the header's column names, surrounding spaces stripped.
        csv_path: the CSV, for the message.

    Raises:
        ValueError: naming the column(s) and the spelling that is read.
    """
    other_case = [c for c in columns if c.casefold() in OPTIONAL_CSV_COLUMNS and c not in OPTIONAL_CSV_COLUMNS]
    if other_case:
        wanted = [c.casefold() for c in other_case]
        raise ValueError(f"{str(csv_path)!r}: column(s) {other_case!r} are read only as {wanted!r} (column names are "
                         "lower case, as 'path' and 'label'); rename them, or they would be ignored")


def _check_unread_columns(columns: list[str], csv_path: str | os.PathLike) -> None:
    """Warn of the columns a ``csv`` protocol does not read (every one but ``path``, ``label``, ``fold`` and
    ``patient``), naming them, and refuse a sheet without a ``patient`` column whose other column names a patient's
    identifier (:data:`PATIENT_LIKE_COLUMN`): ``patient_id`` or ``Case`` was ignored without a word, the images were
    split one by one, and a patient's images landed in both training and test.

    Args:
        columns: the header's column names, surrounding spaces stripped.
        csv_path: the CSV, for the messages.

    Raises:
        ValueError: naming the column(s) that look like a patient's identifier, and the name that is read.
    """
    unread = [c for c in columns if c not in ("path", "label", *OPTIONAL_CSV_COLUMNS)]
    if "patient" not in columns:
        patient_like = [c for c in unread if PATIENT_LIKE_COLUMN.fullmatch(re.sub(r"[^0-9a-z]", "", c.casefold()))]
        if patient_like:
            raise ValueError(f"{str(csv_path)!r}: column(s) {patient_like!r} look like a patient's identifier, but "
                             "only a column named 'patient' groups a patient's images (they would be split across "
                             "train and test); rename it to 'patient'")
    if unread:
        logger.warning("%r: column(s) %r are not read (a csv protocol reads path, label, fold and patient)",
                       str(csv_path), unread)


def _refuse_names_differing_in_case(names: list[str], source: str | os.PathLike, what: str, remedy: str) -> None:
    """``benign`` and ``Benign`` in one sheet, or folders ``benign/`` and ``Benign/`` (or ``malignant /`` with a
    trailing space) in one dataset, are one class saved twice, not two classes.

    Args:
        names: the class names as found.
        source: the CSV or dataset folder, for the message.
        what: ``"labels"`` or ``"class folders"``, for the message.
        remedy: what the user can do, for the message.

    Raises:
        ValueError: naming the spellings.
    """
    spellings: dict[str, list[str]] = {}
    for name in names:
        spellings.setdefault(name.strip().casefold(), []).append(name)
    twice = [found for found in spellings.values() if len(found) > 1]
    if twice:
        raise ValueError(f"{str(source)!r}: {what} {twice[0]!r} differ only in case or surrounding spaces; {remedy}")


def _complete_column(rows: list[tuple[int, dict[str, str]]], column: str, csv_path: str | os.PathLike) -> bool:
    """Whether the optional ``column`` is in use: filled on every row (True) or on none (False).

    Raises:
        ValueError: filled on some rows only, naming the blank lines (line 1 is the header).
    """
    blank = [line for line, r in rows if not r.get(column)]
    if len(blank) == len(rows):
        return False
    if blank:
        raise ValueError(f"{str(csv_path)!r}: column {column!r} is blank on line(s) {blank[:10]!r} but filled on "
                         f"others; fill it on every row or leave it empty on all")
    return True


def _whole_number(text: str, csv_path: str | os.PathLike, line: int, column: str) -> int:
    """``"2"``, or ``"2.0"`` as spreadsheets export whole numbers, as 2.

    Raises:
        ValueError: anything else, naming the file, line and column.
    """
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if not number.is_integer():
        raise ValueError(f"{str(csv_path)!r}: {column} {text!r} on line {line} is not a whole number")
    return int(number)


def _check_patients_in_one_fold(items: list[Item], csv_path: str | os.PathLike) -> None:
    """Refuse a ``fold`` column that splits a patient's images: they would be tested on a model trained on them."""
    folds_of: dict[str, set[int]] = {}
    for it in items:
        if "patient" in it:
            folds_of.setdefault(str(it["patient"]), set()).add(it["fold"])
    split = {patient: sorted(folds) for patient, folds in folds_of.items() if len(folds) > 1}
    if split:
        shown = dict(list(split.items())[:5])
        raise ValueError(f"{str(csv_path)!r}: {len(split)} patient(s) have images in several folds, e.g. {shown!r}; "
                         "give each patient's images one fold")


PROTOCOLS = {"busbra": busbra_protocol, "mmotu": mmotu_protocol, "gist514": gist514_protocol,
             "folder": folder_protocol, "csv": csv_protocol}


def load_protocol(name: str, root: str | os.PathLike, **kwargs: Any) -> Protocol:
    """Build a protocol by name: busbra, mmotu, gist514, folder or csv."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[name](root, **kwargs)
