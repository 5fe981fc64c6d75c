"""UltrasoundClassifyTrain (apps/label/train.py) without a server or a training: its metric and description, the
images it trains on (class labels under the class tag, or class files under final, never masks), and its datalist
(a stratified split of the labelled images, a label naming no class skipped with the reason). Runs in MONAI Label's
environment."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

SCRIPT = r"""
import json, sys
from pathlib import Path
import numpy as np
from PIL import Image
from monai_ext.apps.label.lineage import Lineage
from monai_ext.apps.label.train import UltrasoundClassifyTrain
from monai_ext.apps.label.train_settings import train_parameters

tmp = Path(sys.argv[1])
checkpoint = tmp / "served.pt"
checkpoint.write_bytes(b"served")
task = UltrasoundClassifyTrain(tmp, lambda: checkpoint, tmp / "model" / "usf.pt", Lineage.of(checkpoint, str(tmp)),
                               ["benign", "malignant"], {})
out = {"metric": task.metric, "item": task.item, "description": task.description}

images, labels = {}, {}
for i in range(7):
    images[f"case{i}"] = tmp / f"case{i}.png"
    Image.fromarray(np.full((8, 8), 20 * i, np.uint8)).save(images[f"case{i}"])
for i, name in enumerate(["benign", "benign", "benign", "malignant", "malignant", "malignant"]):
    labels[f"case{i}"] = tmp / f"case{i}.json"
    labels[f"case{i}"].write_text(json.dumps({"class": name}))
labels["case6"] = tmp / "case6.json"
labels["case6"].write_text(json.dumps({"class": "cyst"}))

class Store:
    def datalist(self):  # the final labels: masks here, which a classifier does not train on
        return [{"image": str(tmp / "masked.png"), "label": str(tmp / "masked_mask.png")}]
    def list_images(self):
        return sorted(images) + ["masked", "unlabelled"]
    def get_image_uri(self, image_id):
        return str(images.get(image_id, tmp / f"{image_id}.png"))
    def get_label_uri(self, image_id, tag):
        if image_id == "masked" and tag == "final":
            return str(tmp / "masked_mask.png")
        return str(labels[image_id]) if image_id in labels and tag == "class" else ""

out["items"] = task.labelled_items(Store())
path, skipped, out["suspect"] = task.write_datalist(out["items"], tmp / "datalist.json", train_parameters({}))
out["datalist"] = json.loads(Path(path).read_text())
out["skipped"] = skipped

# 20 labelled images, 10 per class: the request's val_fraction and seed decide the split
many = []
for i in range(20):
    image, label = tmp / f"many{i}.png", tmp / f"many{i}.json"
    Image.fromarray(np.full((8, 8), 10 * i, np.uint8)).save(image)
    label.write_text(json.dumps({"class": ["benign", "malignant"][i % 2]}))
    many.append({"image": str(image), "label": str(label)})

def validation(request):
    path, _, _ = task.write_datalist(many, tmp / "many.json", train_parameters(request))
    return sorted(entry["image"].rsplit("/", 1)[-1] for entry in json.loads(Path(path).read_text())["validation"])

out["split_default"] = validation({})
out["split_seed0"] = validation({"seed": 0})
out["split_seed0_again"] = validation({"seed": 0})
out["split_seed1"] = validation({"seed": 1})
out["split_large"] = validation({"val_fraction": 0.25})

# a recorded model's architecture fields become the bundle's settings
import torch
from monai_ext.networks.checkpoints.save import save_model_checkpoint
model = torch.nn.Linear(2, 2)
model.arch_args = {"in_chans": 1, "global_pool": "avg", "linear_probe": False}
recorded = tmp / "recorded.pt"
save_model_checkpoint(recorded, model, "classifier", {"arch": "vit_tiny", "image_size": 64})
out["overrides"] = task.checkpoint_overrides(recorded)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def outcome(label_env, tmp_path_factory) -> dict:
    return label_env.run(SCRIPT, str(tmp_path_factory.mktemp("train")))


def test_the_task_reports_macro_f1_and_names_its_classes(outcome) -> None:
    assert outcome["metric"] == "val_macro_f1" and outcome["item"] == "labelled images"
    assert "benign, malignant" in outcome["description"]


def test_it_trains_on_the_images_with_class_labels_only(outcome) -> None:
    names = [item["image"].rsplit("/", 1)[-1] for item in outcome["items"]]
    assert names == [f"case{i}.png" for i in range(7)]  # the mask under final and the unlabelled image are not


def test_the_datalist_is_a_stratified_split_and_a_label_naming_no_class_is_skipped(outcome) -> None:
    datalist = outcome["datalist"]
    train, validation = datalist["train"], datalist["validation"]
    assert len(train) + len(validation) == 6 and not datalist.get("test")
    assert {entry["label"] for entry in validation} == {0, 1}  # one of each class at least
    assert {entry["image"].rsplit("/", 1)[-1] for entry in train + validation} == {f"case{i}.png" for i in range(6)}
    (reason,) = outcome["skipped"].values()
    assert list(outcome["skipped"])[0].endswith("case6.json") and "'cyst'" in reason
    assert outcome["suspect"] == {}  # a class label is right or skipped


def test_the_request_chooses_the_validation_part(outcome) -> None:
    assert len(outcome["split_default"]) == 4  # val_fraction 0.2 of 20
    assert len(outcome["split_large"]) == 5  # one of 4 stratified folds
    assert outcome["split_seed0"] == outcome["split_seed0_again"] == outcome["split_default"]  # seed 0 is the default
    assert outcome["split_seed1"] != outcome["split_seed0"]


def test_the_recorded_architecture_becomes_the_bundles_settings(outcome) -> None:
    assert outcome["overrides"] == {"arch": "vit_tiny", "image_size": 64, "in_channels": 1, "global_pool": "avg",
                                    "linear_probe": False}
