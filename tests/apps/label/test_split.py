"""The train task's split is stable across training rounds (apps/label/split.py): no image the served model trained
on moves into validation as labels are added, relabelled or deleted, in any order; validation images stay; every
class of two or more images keeps one in validation; the same datastore gives the same split. Main environment."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from monai_ext.apps.label.datalist import labelled_datalist
from monai_ext.apps.label.lineage import Lineage, publish, read_record
from monai_ext.apps.label.segment_model import mask_datalist
from monai_ext.apps.label.split import SplitMemory, image_identity, trained_before, validation_quotas

CLASSES = ["benign", "malignant", "normal"]


def label(studies: Path, image_id: str, name: str) -> dict[str, str]:
    """Save ``image_id``'s image (once) and its class label; the datastore's item for it."""
    image = studies / f"{image_id}.png"
    if not image.is_file():
        cv2.imwrite(str(image), np.full((8, 12), sum(map(ord, image_id)) % 250, np.uint8))
    (studies / "labels").mkdir(exist_ok=True)
    (studies / "labels" / f"{image_id}.json").write_text(json.dumps({"class": name}))
    return {"image": str(image), "label": str(studies / "labels" / f"{image_id}.json"), "id": image_id}


def split_of(items, tmp_path: Path, memory: SplitMemory | None = None, val_fraction: float = 0.2,
             seed: int = 0) -> dict:
    path, skipped = labelled_datalist(items, CLASSES, tmp_path / "datalist.json", val_fraction, seed, memory)
    assert skipped == {}
    return json.loads(path.read_text())


def ids(split: dict, part: str) -> set[str]:
    return {image_identity(item) for item in split[part]}


@pytest.mark.parametrize("val_fraction", [0.2, 0.34])
@pytest.mark.parametrize("sequence", range(6))
def test_no_training_image_moves_into_validation_as_labels_accumulate(tmp_path, sequence, val_fraction) -> None:
    """Labels come in a random order, a few between trainings, and each training is published: an image that
    trained never validates later (the served model would be scored on its memory), a validation image stays one,
    and every class keeps a validation and a training image. Drawn anew at each round, the old split moved images
    between the parts at almost every round."""
    rng = random.Random(sequence)
    names = [rng.choice(CLASSES) for _ in range(30)]
    order = rng.sample(range(30), 30)
    items, memory, trained, validated, rounds = {}, SplitMemory(), set(), set(), 0
    while order:
        for _ in range(rng.randint(1, 4)):
            if order:
                i = order.pop()
                items[f"img{i:02d}"] = label(tmp_path, f"img{i:02d}", names[i])
        if min(sum(names[int(k[3:])] == c for k in items) for c in CLASSES) < 2:
            continue  # the training is refused until every class has two labelled images
        split = split_of(list(items.values()), tmp_path, memory, val_fraction)
        rounds += 1
        assert not ids(split, "validation") & trained, f"round {rounds}: trained images moved into validation"
        assert validated <= ids(split, "validation"), f"round {rounds}: validation images moved into training"
        for index in range(len(CLASSES)):
            assert any(it["label"] == index for it in split["validation"])
            assert any(it["label"] == index for it in split["train"])
        trained |= ids(split, "train")
        validated |= ids(split, "validation")
        memory = memory.after(split)  # published
    assert rounds >= 3


@pytest.mark.parametrize("order", range(4))
@pytest.mark.parametrize("with_memory", [False, True])
def test_the_split_does_not_depend_on_the_listing_order(tmp_path, order, with_memory) -> None:
    items = [label(tmp_path, f"case{i}", CLASSES[i % 3]) for i in range(24)]
    memory = SplitMemory(frozenset({"case0", "case4"}), frozenset({"case1", "case5"})) if with_memory else None
    expected = split_of(items, tmp_path, memory)
    shuffled = random.Random(order).sample(items, len(items))
    assert ids(split_of(shuffled, tmp_path, memory), "validation") == ids(expected, "validation")


def test_a_moved_datastore_keeps_its_split(tmp_path) -> None:
    """The rank is the image id's, not its path's: a studies folder moved (or mounted elsewhere) splits the same."""
    (tmp_path / "a").mkdir()
    items = [label(tmp_path / "a", f"case{i}", CLASSES[i % 3]) for i in range(15)]
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    moved = [{k: v.replace(str(tmp_path / "a"), str(tmp_path / "b")) for k, v in it.items()} for it in items]
    for item in moved:  # without the id too: the image's name less its suffix
        del item["id"]
    assert ids(split_of(moved, tmp_path), "validation") == ids(split_of(items, tmp_path), "validation")


@pytest.mark.parametrize("counts", [(2, 2, 2), (2, 3, 20), (3, 2, 7), (2, 10, 10)])
def test_every_class_of_two_or_more_validates_and_trains(tmp_path, counts) -> None:
    """A class of two images keeps one for validation; a large one about val_fraction of it."""
    items = [label(tmp_path, f"{name}{i}", name) for name, n in zip(CLASSES, counts) for i in range(n)]
    split = split_of(items, tmp_path)
    for index, n in enumerate(counts):
        in_validation = sum(it["label"] == index for it in split["validation"])
        assert 1 <= in_validation <= n - 1
        assert in_validation == max(1, round(0.2 * n)) or n > 10


@pytest.mark.parametrize("counts, quotas", [({"a": 10, "b": 10}, {"a": 2, "b": 2}), ({"a": 2, "b": 1}, {"a": 1, "b": 0}),
                                            ({"a": 6, "b": 4}, {"a": 1, "b": 1}), ({"a": 3, "b": 3}, {"a": 1, "b": 1})])
def test_validation_quotas(counts, quotas) -> None:
    assert validation_quotas(counts, 0.2) == quotas


def test_a_new_class_member_validates_only_where_its_class_needs_it(tmp_path) -> None:
    """A class that first had two images (one validating) gets a third: the first two keep their parts."""
    items = [label(tmp_path, f"{name}{i}", name) for name in CLASSES for i in range(2)]
    first = split_of(items, tmp_path)
    memory = SplitMemory().after(first)
    items.append(label(tmp_path, "benign2", "benign"))
    second = split_of(items, tmp_path, memory)
    assert ids(first, "validation") <= ids(second, "validation")
    assert ids(first, "train") <= ids(second, "train")


@pytest.mark.parametrize("part", ["validation", "train"])
def test_a_relabelled_image_keeps_its_part(tmp_path, part) -> None:
    """An annotator corrects an image's class: it stays in its part, in its new class (an image the served model
    trained on, whatever its label then, is still remembered)."""
    items = {f"c{i}": label(tmp_path, f"c{i}", CLASSES[i % 3]) for i in range(30)}  # two of each class validate
    first = split_of(list(items.values()), tmp_path)
    memory = SplitMemory().after(first)
    moved = sorted(ids(first, part))[0]
    old_class = next(it["label"] for it in first[part] if image_identity(it) == moved)
    items[moved] = label(tmp_path, moved, CLASSES[(old_class + 1) % 3])
    second = split_of(list(items.values()), tmp_path, memory)
    assert ids(second, "validation") == ids(first, "validation")
    assert next(it["label"] for it in second[part] if image_identity(it) == moved) == (old_class + 1) % 3


def test_relabelling_a_class_s_only_validation_image_asks_for_another(tmp_path) -> None:
    """The only validation image of a class relabelled, every other image of it trained: none can validate without
    the served model's memory, so the training asks for one more label of the class; the next one validates."""
    items = {f"{name}{i}": label(tmp_path, f"{name}{i}", name) for name in CLASSES for i in range(3)}
    first = split_of(list(items.values()), tmp_path)
    memory = SplitMemory().after(first)
    (only,) = [image_identity(it) for it in first["validation"] if it["label"] == 0]
    items[only] = label(tmp_path, only, "malignant")
    with pytest.raises(ValueError, match="class 'benign': the served model trained on all 2 of these labelled "
                                         "images, so none is left to validate on"):
        split_of(list(items.values()), tmp_path, memory)
    items["benign9"] = label(tmp_path, "benign9", "benign")
    second = split_of(list(items.values()), tmp_path, memory)
    assert "benign9" in ids(second, "validation") and only in ids(second, "validation")
    assert not ids(second, "validation") & memory.trained


def test_a_class_left_with_validation_images_only_trains_on_one(tmp_path, caplog) -> None:
    """Training images of a class relabelled away or deleted: one of its validation images trains (validation to
    training never scores remembered images), so that the class is still trained on."""
    memory = SplitMemory(frozenset({"m0", "m1"}), frozenset({"b0", "b1", "m2", "n0"}))
    items = [label(tmp_path, "b0", "benign"), label(tmp_path, "b1", "benign"), label(tmp_path, "m0", "malignant"),
             label(tmp_path, "m1", "malignant"), label(tmp_path, "m2", "malignant"), label(tmp_path, "n0", "normal"),
             label(tmp_path, "n1", "normal")]
    split = split_of(items, tmp_path, memory)
    assert len(ids(split, "validation") & {"b0", "b1"}) == 1 and "class 'benign'" in caplog.text
    assert ids(split, "validation") - {"b0", "b1"} == {"m2", "n0"}


def test_a_deleted_image_changes_no_other_image_s_part(tmp_path) -> None:
    items = {f"c{i}": label(tmp_path, f"c{i}", CLASSES[i % 3]) for i in range(30)}  # two of each class validate
    first = split_of(list(items.values()), tmp_path)
    memory = SplitMemory().after(first)
    for gone in (sorted(ids(first, "validation"))[0], sorted(ids(first, "train"))[0]):
        del items[gone]
    second = split_of(list(items.values()), tmp_path, memory)
    assert ids(second, "validation") <= ids(first, "validation") and ids(second, "train") <= ids(first, "train")


@pytest.mark.parametrize("sequence", range(3))
def test_masks_keep_their_part_across_rounds(tmp_path, sequence) -> None:
    """The segmentation train task's split (masks with a lesion) is as stable: drawn anew at each round, it scored
    the fine-tune's Dice on masks the served model had trained on."""
    rng = random.Random(sequence)
    order, items, memory, trained, validated = rng.sample(range(16), 16), [], SplitMemory(), set(), set()
    while order:
        for _ in range(rng.randint(2, 4)):
            if order:
                i = order.pop()
                cv2.imwrite(str(tmp_path / f"us{i}.png"), np.full((8, 8), 60, np.uint8))
                mask = np.zeros((8, 8), np.uint8)
                mask[2:5, 2:5] = 255
                cv2.imwrite(str(tmp_path / f"us{i}_mask.png"), mask)
                items.append({"image": str(tmp_path / f"us{i}.png"), "label": str(tmp_path / f"us{i}_mask.png")})
        path, skipped, _ = mask_datalist(items, ["background", "lesion"], tmp_path / "d.json", 0.2, 0, memory=memory)
        split = json.loads(path.read_text())
        assert not ids(split, "validation") & trained and validated <= ids(split, "validation")
        assert split["validation"] and skipped == {}
        trained, validated = trained | ids(split, "train"), validated | ids(split, "validation")
        memory = memory.after(split)


def test_the_lineage_record_keeps_the_split_memory(tmp_path) -> None:
    (tmp_path / "run.pt").write_bytes(b"model")
    (tmp_path / "base.pt").write_bytes(b"base")
    memory = SplitMemory(frozenset({"a", "b"}), frozenset({"c"}), recorded=True)
    publish(tmp_path / "run.pt", tmp_path / "model.pt", Lineage.of(tmp_path / "base.pt", str(tmp_path)),
            {"split": memory.as_record()})
    record = read_record(tmp_path / "model.pt")
    assert SplitMemory.from_record(record) == memory and Lineage.of(tmp_path / "base.pt", str(tmp_path)).matches(record)
    assert SplitMemory.from_record({"sha256": "x"}) == SplitMemory()  # a record written before the split was kept

    # the app started with its own published file on another studies folder: the record's ids are another datastore's
    assert SplitMemory.from_record(record, str(tmp_path)) == memory
    assert SplitMemory.from_record(record, str(tmp_path / "other studies")) == SplitMemory()


def test_what_a_served_model_without_a_split_record_trained_on_is_never_recorded_as_validated_only(tmp_path) -> None:
    """A model published before the split record (or a copy served as the configured checkpoint) has trained on
    some of this round's validation images: recorded as validated only, they counted as new to the line for good,
    and the publication check scored the served model on images it remembers."""
    paths = {name: tmp_path / f"{name}.png" for name in ("a", "b", "c", "d")}
    for path in paths.values():
        path.write_bytes(b"png")
    split = {"train": [{"image": str(paths["d"])}], "validation": [{"image": str(paths[n])} for n in "abc"]}
    served_trained = {str(paths["a"].resolve()), str(tmp_path / "elsewhere.png")}
    naive = SplitMemory().after(split)
    assert "a" in naive.validation  # what the record said before: a new image to the line
    after = SplitMemory().after(split, trained_before(split, served_trained))
    assert after.trained == {"a", "d"} and after.validation == {"b", "c"} and after.recorded
