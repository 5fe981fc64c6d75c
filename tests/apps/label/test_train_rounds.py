"""UltrasoundClassifyTrain over two training rounds (a stubbed bundle run, no training): the second round keeps the
first one's parts, and its publication check compares the served model on validation images it never trained on,
where the split drawn anew at each round left too few such images and skipped the check. Runs in MONAI Label's
environment."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

SCRIPT = r"""
import json, os, sys
from pathlib import Path
import numpy as np
from PIL import Image
from monai_ext.apps.label.lineage import Lineage, read_record, serves_published
from monai_ext.apps.label.train import UltrasoundClassifyTrain
from monai_ext.engines.metrics import classification_report

tmp = Path(sys.argv[1])
base = tmp / "base.pt"
base.write_bytes(b"base")
published = tmp / "model" / "usf.pt"
lineage = Lineage.of(base, str(tmp))
classes = {}

def add(image_id, name):
    Image.fromarray(np.full((8, 8), len(classes) * 5, np.uint8)).save(tmp / f"{image_id}.png")
    (tmp / f"{image_id}.json").write_text(json.dumps({"class": name}))
    classes[image_id] = name

class Store:
    def list_images(self):
        return sorted(classes, reverse=True)  # not the order the split is drawn in
    def get_image_uri(self, image_id):
        return str(tmp / f"{image_id}.png")
    def get_label_uri(self, image_id, tag):
        return str(tmp / f"{image_id}.json") if tag == "class" else ""

def report(datalist, mode):  # tell: every image right; guess: one class for every image
    labels = np.array([e["label"] for e in json.loads(Path(datalist).read_text())["validation"]])
    return classification_report(np.eye(2)[labels if mode == "tell" else np.zeros_like(labels)], labels,
                                 ["benign", "malignant"])

class Stub(UltrasoundClassifyTrain):
    mode, calls = "tell", []

    def _run_bundle(self, datalist, start_from, run_dir, params, train_size):
        split = json.loads(Path(datalist).read_text())
        (run_dir / "models").mkdir(parents=True)
        (run_dir / "eval").mkdir()
        # the checkpoint's record of its training and validation images (trained_images), as the bundle writes it
        seen = sorted(os.path.realpath(e["image"]) for part in ("train", "validation") for e in split[part])
        (run_dir / "models" / "model.pt").write_text(json.dumps({"trained_images": seen}))
        validation = report(datalist, type(self).mode)
        (run_dir / "eval" / "metrics.json").write_text(json.dumps([{"val_macro_f1": validation["macro_f1"]}]))
        (run_dir / "eval" / "validation_report.json").write_text(json.dumps(validation))

    def served_trained_images(self, served):
        return set() if Path(served) == base else set(json.loads(Path(served).read_text())["trained_images"])

    def validation_report(self, checkpoint, datalist, out, params):
        served = Path(checkpoint) == published
        n = len(json.loads(Path(datalist).read_text())["validation"])
        type(self).calls.append({"model": "served" if served else "fine-tuned", "images": n})
        return report(datalist, "tell" if served else "guess")

task = Stub(tmp, lambda: published if serves_published(published, lineage) else base, published, lineage,
            ["benign", "malignant"], {})
out = {}
for i in range(10):
    add(f"benign{i}", "benign")
    add(f"malignant{i}", "malignant")
for round, mode, new in [(1, "tell", []), (2, "guess", ["extra0", "extra1"])]:
    for image_id in new:  # labels of one class only came in since the first round
        add(image_id, "benign")
    Stub.mode, Stub.calls = mode, []
    try:
        result = task({}, Store())
    except ValueError as e:
        result = str(e)
    split = json.loads((tmp / "model" / "usf" / "datalist.json").read_text())
    out[f"round{round}"] = {"result": result, "calls": Stub.calls, "published": published.read_text(),
                            "train": sorted(Path(e["image"]).stem for e in split["train"]),
                            "validation": sorted(Path(e["image"]).stem for e in split["validation"]),
                            "record": read_record(published)}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def outcome(label_env, tmp_path_factory) -> dict:
    return label_env.run(SCRIPT, str(tmp_path_factory.mktemp("rounds")))


def test_the_second_round_keeps_the_first_round_s_parts(outcome) -> None:
    first, second = outcome["round1"], outcome["round2"]
    assert not set(second["validation"]) & set(first["train"])  # no remembered image scores the fine-tune
    assert set(first["validation"]) <= set(second["validation"])


def test_the_published_model_s_record_keeps_its_split(outcome) -> None:
    first = outcome["round1"]
    assert first["record"]["split"] == {"trained": first["train"], "validation": first["validation"]}


def test_the_publication_check_runs_in_the_second_round(outcome) -> None:
    """The served model trained on the first round's training images and chose its epoch on its validation images;
    the second round's validation part is these validation images and at most a new one or two, all of one class.
    The check took only images new to the served model: one class, nothing to compare, skipped, and a fine-tune that
    guesses replaced one that tells. It now compares on every validation image, none of which the served one
    trained on, and refuses it."""
    second = outcome["round2"]
    assert second["calls"] == [{"model": "served", "images": len(second["validation"])}]
    assert second["result"].startswith("the best model is not published, usf.pt kept: its balanced accuracy 0.5")
    assert "where the served model, which trained on none of them, scores a balanced accuracy of 1" in second["result"]
    assert second["published"] == outcome["round1"]["published"]  # the first round's model is still served
