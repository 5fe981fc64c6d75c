"""UltrasoundClassifyInfer (apps/label/infer.py) without a server, on a stand-in classifier: its labels and type,
the model loaded at start-up and again when the served checkpoint is replaced, the class JSON with its latency, a
Grad-CAM PNG only on request, and a heatmap param that is no yes/no word refused. Runs in MONAI Label's environment."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

SCRIPT = r"""
import json, os, sys, time
from pathlib import Path
import cv2
import numpy as np
from monailabel.interfaces.tasks.infer_v2 import InferType
from monai_ext.apps.label.infer import UltrasoundClassifyInfer

tmp = Path(sys.argv[1])
checkpoint = tmp / "model.pt"
checkpoint.write_bytes(b"first")
loads = []

class Stub:
    class_names = ["benign", "malignant"]
    device = "cpu"
    delay = 0.0  # seconds a prediction takes
    explains = True  # False: a network without ViT blocks, no Grad-CAM

    def __init__(self, path):
        self.content = Path(path).read_bytes().decode()

    def predict(self, image):
        time.sleep(self.delay)
        return {"label": 1, "class": "malignant", "probabilities": {"benign": 0.25, "malignant": 0.75},
                "model": self.content, "image": image}

    def predict_and_explain(self, image):
        overlay = np.zeros((6, 8, 3), np.uint8)
        overlay[..., 0] = 200
        return self.predict(image), overlay if self.explains else None

def load(path):
    loads.append(str(path))
    return Stub(path)

task = UltrasoundClassifyInfer(load, lambda: checkpoint)
out = {"loads_at_start": len(loads), "labels": task.labels, "classification": task.type == InferType.CLASSIFICATION,
       "dimension": task.dimension, "config": task.config(), "valid": task.is_valid(),
       "description": task.description}
file, result = task({"image": "x.png"})
out["plain"] = {"file": file, "result": result}
file, result = task({"image": "x.png", "heatmap": "yes"})
heat = cv2.imread(file)
out["heatmap"] = {"suffix": file[-12:], "shape": list(heat.shape), "bgr": heat[0, 0].tolist(), "class": result["class"]}
os.unlink(file)
try:
    task({"image": "x.png", "heatmap": "perhaps"})
    out["bad_flag"] = None
except ValueError as e:
    out["bad_flag"] = str(e)
replacement = tmp / "new.pt"
replacement.write_bytes(b"second")
os.replace(replacement, checkpoint)  # a train task publishes atomically
out["after_publish"] = task({"image": "x.png"})[1]["model"]
out["loads"] = len(loads)
Stub.delay = 0.05
out["slow_latency"] = task({"image": "x.png"})[1]["latency_s"]
Stub.delay, Stub.explains = 0.0, False
file, result = task({"image": "x.png", "heatmap": True})
out["no_overlay"] = {"file": file, "class": result["class"]}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def outcome(label_env, tmp_path_factory) -> dict:
    return label_env.run(SCRIPT, str(tmp_path_factory.mktemp("infer")))


def test_the_task_describes_the_served_classes(outcome) -> None:
    assert outcome["loads_at_start"] == 1  # a bad checkpoint stops the server at start-up
    assert outcome["labels"] == {"benign": 0, "malignant": 1}
    assert outcome["classification"] and outcome["dimension"] == 2 and outcome["valid"]
    assert outcome["config"] == {"heatmap": False}
    assert "benign, malignant" in outcome["description"]


def test_a_plain_request_gives_the_class_and_its_latency_without_a_file(outcome) -> None:
    file, result = outcome["plain"]["file"], outcome["plain"]["result"]
    assert file is None
    assert result["class"] == "malignant" and result["probabilities"] == {"benign": 0.25, "malignant": 0.75}
    assert isinstance(result["latency_s"], float) and result["latency_s"] >= 0


def test_a_heatmap_request_writes_the_overlay_as_png(outcome) -> None:
    heat = outcome["heatmap"]
    assert heat["suffix"] == "_gradcam.png" and heat["shape"] == [6, 8, 3]
    assert heat["bgr"] == [0, 0, 200] and heat["class"] == "malignant"  # the RGB overlay, red


def test_the_latency_is_measured(outcome) -> None:
    assert 0.05 <= outcome["slow_latency"] < 5  # the stand-in sleeps 0.05 s


def test_a_heatmap_request_without_an_overlay_writes_no_file(outcome) -> None:
    assert outcome["no_overlay"] == {"file": None, "class": "malignant"}  # a network without ViT blocks


def test_a_heatmap_param_that_is_no_yes_no_word_is_refused(outcome) -> None:
    assert outcome["bad_flag"] and "heatmap" in outcome["bad_flag"] and "perhaps" in outcome["bad_flag"]


def test_a_replaced_checkpoint_is_loaded_by_the_next_request(outcome) -> None:
    assert outcome["after_publish"] == "second" and outcome["loads"] == 2
