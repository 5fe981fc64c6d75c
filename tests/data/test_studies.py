"""Studies read from folder trees: one rule for the classification and the segmentation protocols."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from monai_ext.data import downstream as ds
from monai_ext.data.segmentation import image_mask_folder_protocol
from monai_ext.data.studies import study_folders, whole_groups_near


def _tree(*groups: tuple[str, int]) -> list[list[str]]:
    """Each image's folders: ``count`` images in each folder path (``"benign/p0"``; ``"benign"`` for loose ones)."""
    return [folder.split("/") for folder, count in groups for _ in range(count)]


@pytest.mark.parametrize("tree, folds, expected", [
    # five studies, two frames each, and one loose image: grouped, the loose image left to the caller
    (_tree(*[(f"benign/p{k}", 2) for k in range(5)], ("benign", 1)), 5,
     [f"benign/p{k}" for k in range(5) for _ in range(2)] + [None]),
    # no sub-folder below the class folder: nothing to group
    (_tree(("benign", 4), ("malignant", 4)), 2, None),
    # sites holding patients: the patients are the studies
    (_tree(*[(f"benign/site{s}/p{k}", 2) for s in range(2) for k in range(3)]), 5,
     [f"benign/site{s}/p{k}" for s in range(2) for k in range(3) for _ in range(2)]),
    # a patient folder holding its frames directly beside a site holding patients: still one study, not four
    (_tree(*[(f"benign/siteA/p{k}", 2) for k in range(6)], ("benign/p7", 4)), 5,
     [f"benign/siteA/p{k}" for k in range(6) for _ in range(2)] + ["benign/p7"] * 4),
    # as many sites as folds: grouped by site (coarse, but no patient crosses parts)
    (_tree(*[(f"benign/site{s}/p{k}", 2) for s in range(5) for k in range(2)]), 5,
     [f"benign/site{s}" for s in range(5) for k in range(2) for _ in range(2)]),
    # patients keeping their frames in left/right sub-folders: the patient is the study, not the side
    (_tree(*[(f"benign/p{k}/{side}", 2) for k in range(6) for side in ("left", "right")]), 5,
     [f"benign/p{k}" for k in range(6) for _ in range(4)]),
    # fewer patients than folds, one with loose frames beside its cine sub-folder: still one study per patient
    (_tree(("benign/p0", 2), ("benign/p0/cine", 2), ("benign/p1/cine", 2), ("benign/p2/cine", 2)), 3,
     ["benign/p0"] * 4 + ["benign/p1", "benign/p1", "benign/p2", "benign/p2"]),
    # three folders, one with 6 of 10 images, against 5 folds: containers (scanners), split by image
    (_tree(("benign/scannerA", 6), ("benign/scannerB", 2), ("benign/scannerC", 2)), 5, None),
    # the same three folders against 3 folds: as many as the folds, so studies whatever their sizes
    (_tree(("benign/scannerA", 6), ("benign/scannerB", 2), ("benign/scannerC", 2)), 3,
     ["benign/scannerA"] * 6 + ["benign/scannerB"] * 2 + ["benign/scannerC"] * 2),
])
def test_study_folders_reads_studies_below_the_class_level(tree, folds, expected) -> None:
    assert study_folders(tree, 1, folds, "set", "remedy") == expected


def test_containers_are_judged_within_each_part_where_parts_are_given() -> None:
    """Six folders over the set fill five folds, but three of one class, one holding half of it, cannot: whole-set
    counting (segmentation) groups, per-class counting (classification, every fold needs every class) does not."""
    tree = _tree(*[(f"{c}/scanner{s}", 6 if s == 0 else 3) for c in ("benign", "malignant") for s in range(3)])
    classes = [path[0] for path in tree]
    assert study_folders(tree, 1, 5, "set", "remedy") is not None
    assert study_folders(tree, 1, 5, "set", "remedy", classes) is None


def test_warning_names_the_part_the_largest_folder_and_the_remedy(caplog) -> None:
    tree = _tree(("benign/a", 6), ("benign/b", 2), ("benign/c", 2), *[(f"malignant/p{k}", 2) for k in range(5)])
    with caplog.at_level(logging.WARNING, logger="monai_ext.data.studies"):
        assert study_folders(tree, 1, 5, "'set'", "do this", [p[0] for p in tree]) is None
    assert ("'set': 20 of 20 image(s) sit in 8 sub-folder(s), but class 'benign' has 3, fewer than the 5 folds, and "
            "'benign/a' holds 6 of its 10 images") in caplog.text
    assert caplog.text.rstrip().endswith("ask for at most 3 folds (--folds 3) or do this")


def test_parts_of_another_length_are_refused() -> None:
    with pytest.raises(ValueError, match=r"one part per image \(2\), got 1"):
        study_folders([["a", "p0"], ["a", "p1"]], 1, 2, "set", "remedy", ["a"])


def _write_sites(root: Path, write, sites: int = 2, patients: int = 4, frames: int = 2) -> None:
    for s in range(sites):
        for p in range(patients):
            for f in range(frames):
                write(root, f"site{s}", f"patient{p}", f"frame{f}.png")


def test_classification_and_segmentation_read_one_site_tree_alike(tmp_path: Path) -> None:
    """``<class or images>/siteS/patientP/frame.png``: the classification folder protocol grouped by site (2 sites
    against 3 folds), so every image of a site shared a test fold; both protocols now group by patient."""
    rng = np.random.default_rng(0)

    def write(path: Path, pixels: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), pixels)

    def classification(root: Path, site: str, patient: str, name: str) -> None:
        for c in ("benign", "malignant"):  # every picture its own: copies would be left out
            write(root / "cls" / c / site / patient / name, rng.integers(0, 256, (16, 16), np.uint8))

    def segmentation(root: Path, site: str, patient: str, name: str) -> None:
        write(root / "seg" / "images" / site / patient / name, rng.integers(0, 256, (16, 16), np.uint8))
        write(root / "seg" / "masks" / site / patient / name, np.pad(np.ones((4, 4), np.uint8), 6))

    _write_sites(tmp_path, classification)
    _write_sites(tmp_path, segmentation)
    cls = ds.folder_protocol(tmp_path / "cls", folds=3)
    seg = image_mask_folder_protocol(tmp_path / "seg", folds=3)
    cls_patients = {it["patient"].split("/", 1)[1] for part in cls.splits[0].values() for it in part}
    seg_patients = {it["patient"] for part in seg.splits[0].values() for it in part}
    assert cls_patients == seg_patients == {f"site{s}/patient{p}" for s in range(2) for p in range(4)}


@pytest.mark.parametrize("seed", range(6))
def test_classification_validation_is_a_share_of_the_images_not_of_the_patients(seed) -> None:
    """A patient of 60 images among nine of 6, in each class: a part of grouped k-fold is a fifth of the patients,
    so the long patient was the whole validation part of some seeds (60 of 114 images, never trained on). Whole
    patients now make about a fifth of each class's images, and the long one is always trained on."""
    items = [{"image": f"{c}-{p}-{j}.png", "label": c, "patient": f"{c}-{p}"}
             for c in (0, 1) for p in range(10) for j in range(60 if p == 0 else 6)]
    train, validation = ds.validation_from_train(items, 0.2, seed)
    for c in (0, 1):
        held = [it for it in validation if it["label"] == c]
        assert abs(len(held) - 0.2 * 114) <= 6 and f"{c}-0" not in {it["patient"] for it in held}
    assert not {it["patient"] for it in train} & {it["patient"] for it in validation}


@pytest.mark.parametrize("every_stratum, taken_of_b", [(False, set()), (True, {"b0"})])
def test_every_stratum_takes_the_smallest_group_of_a_stratum_that_would_give_none(every_stratum, taken_of_b) -> None:
    """Stratum b has groups of 20 and 30 images against a target of 5: neither brings the count nearer, so b gives
    none unless every stratum must be in validation, then its smallest group."""
    groups = [f"a{k}" for k in range(20)] + ["b0"] * 20 + ["b1"] * 30
    strata = ["a"] * 20 + ["b"] * 50
    taken = {groups[i] for i in whole_groups_near(groups, strata, 0.1, seed=3, every_stratum=every_stratum)}
    assert len({g for g in taken if g.startswith("a")}) == 2 and {g for g in taken if g.startswith("b")} == taken_of_b


@pytest.mark.parametrize("seed", range(8))
def test_a_patient_of_two_classes_never_takes_a_class_out_of_training(seed) -> None:
    """A patient's stratum is its first image's class: P0, with 3 images of class 0 and the only 2 of class 2, went
    wholly to validation for some seeds, and class 2 was never trained on, without a warning."""
    items = [{"image": f"p0-{j}.png", "label": 0 if j < 3 else 2, "patient": "P0"} for j in range(5)]
    items += [{"image": f"p{p}-{j}.png", "label": p % 2, "patient": f"P{p}"} for p in range(1, 10) for j in range(3)]
    train, validation = ds.validation_from_train(items, 0.2, seed)
    assert {it["label"] for it in train} == {0, 1, 2}
    assert not {it["patient"] for it in train} & {it["patient"] for it in validation}
