"""UltrasoundSegmentTrain (apps/label/segment_train.py) without a server or a training: its metric and description
(foreground classes), and its datalist from saved masks read as class indices for a model of several classes (a
mask of another size skipped with the reason, a mask without a lesion kept out of validation). Runs in MONAI
Label's environment."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

SCRIPT = r"""
import json, sys
from pathlib import Path
import numpy as np
from PIL import Image
from monai_ext.apps.label.lineage import Lineage
from monai_ext.apps.label.segment_train import UltrasoundSegmentTrain
from monai_ext.apps.label.train_settings import train_parameters

tmp = Path(sys.argv[1])
checkpoint = tmp / "served.pt"  # never read: with two foreground classes masks are class indices
checkpoint.write_bytes(b"served")
task = UltrasoundSegmentTrain(tmp, lambda: checkpoint, tmp / "model" / "seg.pt", Lineage.of(checkpoint, str(tmp)),
                              ["background", "benign", "malignant"], {})
out = {"metric": task.metric, "item": task.item, "description": task.description}
items = []
for i in range(7):
    image, mask = tmp / f"case{i}.png", tmp / f"case{i}_mask.png"
    Image.fromarray(np.full((16, 16), 40 + 10 * i, np.uint8)).save(image)
    label = np.zeros((12, 16) if i == 5 else (16, 16), np.uint8)
    if i < 4:
        label[4:8, 4:8] = 1 + i % 2
    if i == 6:
        label[4:8, 4:8] = 255  # a 0/255 mask: no class index of a 3-class model
    Image.fromarray(label).save(mask)
    items.append({"image": str(image), "label": str(mask)})
path, skipped, suspect = task.write_datalist(items, tmp / "datalist.json", train_parameters({}))
out["datalist"] = json.loads(Path(path).read_text())
out["skipped"] = skipped
out["suspect"] = suspect
# a served model that recorded binary masks: with two foreground classes the app's index masks win
import torch
recorded = tmp / "recorded.pt"
torch.save({"arch": {"config": {"arch": "vit_tiny", "image_size": 64, "mask_encoding": "binary"},
                     "arch_args": {"in_chans": 1}}}, recorded)
out["overrides"] = task.checkpoint_overrides(recorded)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def outcome(label_env, tmp_path_factory) -> dict:
    return label_env.run(SCRIPT, str(tmp_path_factory.mktemp("segment_train")))


def test_the_task_reports_mean_dice_and_names_the_foreground(outcome) -> None:
    assert outcome["metric"] == "val_mean_dice" and outcome["item"] == "masks"
    assert "(benign, malignant)" in outcome["description"] and "background" not in outcome["description"]


def test_the_datalist_holds_the_usable_masks_and_validates_on_lesions_only(outcome) -> None:
    train, validation = outcome["datalist"]["train"], outcome["datalist"]["validation"]
    named = {entry["image"].rsplit("/", 1)[-1] for entry in train + validation}
    assert named == {f"case{i}.png" for i in range(5)}
    assert validation and all(entry["image"].rsplit("/", 1)[-1] != "case4.png" for entry in validation)  # no lesion
    skipped = outcome["skipped"]
    assert sorted(label.rsplit("/", 1)[-1] for label in skipped) == ["case5_mask.png", "case6_mask.png"]
    reasons = {label.rsplit("/", 1)[-1]: reason for label, reason in skipped.items()}
    assert "differs" in reasons["case5_mask.png"]
    assert outcome["suspect"] == {}  # class-index masks of small lesions


def test_masks_are_read_as_class_indices_of_a_model_of_several_classes(outcome) -> None:
    # a 0/255 mask read as binary would train as class 1; as a class index of a 3-class model it is refused
    reason = {label.rsplit("/", 1)[-1]: r for label, r in outcome["skipped"].items()}["case6_mask.png"]
    assert "not a class index below 3" in reason


def test_the_bundle_reads_the_masks_as_the_app_saves_them(outcome) -> None:
    overrides = outcome["overrides"]
    assert overrides["mask_encoding"] == "index"  # not the recorded "binary"
    assert overrides["image_size"] == 64 and overrides["in_channels"] == 1
