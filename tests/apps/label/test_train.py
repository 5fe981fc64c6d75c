"""UltrasoundClassifyTrain (apps/label/train.py) without a server or a training: its metric and description, the
images it trains on (class labels under the class tag, or class files under final, never masks), and its datalist
(a stratified split of the labelled images, a label naming no class skipped with the reason). Runs in MONAI Label's
environment."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

SCRIPT = r"""
import json, os, sys
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
out = {"metric": task.metric, "item": task.item, "description": task.description, "served": str(checkpoint)}

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

# a run whose best model guesses (one class for every validation image) is not published where the served model
# tells apart the validation images it did not train on; where the served model guesses too, where too few images are
# new to it, or where the new one tells, it is
from monai_ext.engines.metrics import classification_report

def predicted(mode, labels):  # guess: one class for every image; tell: every image right; one_wrong: the first wrong
    labels = list(labels)
    return {"guess": [0] * len(labels), "tell": labels, "one_wrong": [1 - labels[0], *labels[1:]]}[mode]

class Stub(UltrasoundClassifyTrain):
    new, served_mode, served_trained, calls = "guess", "tell", set(), []

    def _report(self, datalist, mode):
        labels = np.array([e["label"] for e in json.loads(Path(datalist).read_text())["validation"]])
        return classification_report(np.eye(2)[np.asarray(predicted(mode, labels))], labels, self.class_names)

    def _run_bundle(self, datalist, start_from, run_dir, params, train_size):
        report = self._report(datalist, "one_wrong" if type(self).new == "tell" else "guess")
        (run_dir / "models").mkdir(parents=True)
        (run_dir / "eval").mkdir()
        (run_dir / "models" / "model.pt").write_bytes(b"fine-tuned")
        (run_dir / "eval" / "metrics.json").write_text(json.dumps([{"val_macro_f1": report["macro_f1"]}]))
        (run_dir / "eval" / "validation_report.json").write_text(json.dumps(report))

    def served_trained_images(self, served):
        return type(self).served_trained

    def validation_report(self, checkpoint, datalist, out, params):
        served = Path(checkpoint) == checkpoint_served
        n = len(json.loads(Path(datalist).read_text())["validation"])
        type(self).calls.append({"model": "served" if served else Path(checkpoint).name, "images": n,
                                 "datalist": Path(datalist).name})
        return self._report(datalist, type(self).served_mode if served else "guess")

checkpoint_served = checkpoint
published = tmp / "model" / "stub.pt"
stub = Stub(tmp, lambda: checkpoint, published, Lineage.of(checkpoint, str(tmp)), ["benign", "malignant"], {})

class ManyStore:
    def list_images(self):
        return [f"many{i}" for i in range(20)]
    def get_image_uri(self, image_id):
        return str(tmp / f"{image_id}.png")
    def get_label_uri(self, image_id, tag):
        return str(tmp / f"{image_id}.json") if tag == "class" else ""

stub.write_datalist(many, tmp / "labels.json", train_parameters({}))
validation = json.loads((tmp / "labels.json").read_text())["validation"]
real = [os.path.realpath(e["image"]) for e in validation]
one_class = {os.path.realpath(e["image"]) for e in validation if e["label"] == validation[0]["label"]}
out["publication"] = {}
for case, new, served_mode, served_trained in [
        ("guess_where_served_tells", "guess", "tell", set()),
        ("guess_where_served_guesses", "guess", "guess", set()),
        ("tells", "tell", "tell", set()),
        ("guess_where_served_tells_the_images_new_to_it", "guess", "tell", {real[0]}),
        ("guess_where_served_trained_on_a_class_s_images", "guess", "tell", one_class)]:
    Stub.new, Stub.served_mode, Stub.served_trained, Stub.calls = new, served_mode, served_trained, []
    published.unlink(missing_ok=True)
    try:
        result = stub({}, ManyStore()).get("best_val_macro_f1")
    except ValueError as e:
        result = str(e)
    out["publication"][case] = {"result": result, "published": published.exists(), "calls": Stub.calls}
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


def test_a_best_model_that_guesses_where_the_served_one_tells_is_not_published(outcome) -> None:
    """A fine-tuned classifier that called every validation image one class (macro-F1 1/3 on two images) replaced
    the served model for every annotator: the check refused only a best value of 0."""
    refused = outcome["publication"]["guess_where_served_tells"]
    assert refused["result"] == ("the best model is not published, stub.pt kept: its balanced accuracy 0.5 on 4 "
                                 "images of 2 classes, no better than guessing (0.5); predicted: 'benign' 4, where the "
                                 "served model, which trained on none of them, scores a balanced accuracy of 1; label "
                                 "more images or train longer")
    assert refused["published"] is False
    assert refused["calls"] == [{"model": "served", "images": 4, "datalist": "datalist.json"}]


def test_the_served_model_is_compared_on_the_validation_images_it_did_not_train_on(outcome) -> None:
    """The split is drawn anew at every training: an earlier fine-tune scored on its own training images looked
    better than it is, and refused models it should not have."""
    subset = outcome["publication"]["guess_where_served_tells_the_images_new_to_it"]
    assert subset["published"] is False and "on 3 images of 2 classes" in subset["result"]
    assert subset["calls"] == [{"model": "model.pt", "images": 3, "datalist": "held_out.json"},
                               {"model": "served", "images": 3, "datalist": "held_out.json"}]
    too_few = outcome["publication"]["guess_where_served_trained_on_a_class_s_images"]
    assert too_few["published"] is True and too_few["calls"] == []  # one class left: nothing to compare


def test_a_guessing_model_replaces_a_guessing_one_and_a_telling_one_needs_no_comparison(outcome) -> None:
    no_loss, tells = outcome["publication"]["guess_where_served_guesses"], outcome["publication"]["tells"]
    assert no_loss["published"] is True and no_loss["result"] == pytest.approx(1 / 3)
    assert [call["model"] for call in no_loss["calls"]] == ["served"]
    assert tells["published"] is True and tells["result"] == pytest.approx(0.7333, abs=1e-3)
    assert tells["calls"] == []  # the served model is scored only when the new one guesses
