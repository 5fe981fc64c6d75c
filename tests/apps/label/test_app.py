"""The MONAI Label app module (apps/label/app.py) without a server: the ``overrides`` setting parsed as a JSON
object or refused quoting it, and UltrasoundDatastore (class labels count as labels, hidden files are not listed, a
label for an unknown image is an HTTP 404). The app's requests are tested on a live server in
test_label_server.py. Runs in MONAI Label's environment."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

SCRIPT = r"""
import json, sys
from pathlib import Path
import numpy as np
from fastapi import HTTPException
from PIL import Image
from monai_ext.apps.label.app import UltrasoundDatastore, parse_overrides
from monai_ext.apps.label.datastore import IMAGE_PATTERNS

tmp = Path(sys.argv[1])
out = {"overrides": parse_overrides('{"precision": "fp32", "batch_size": 2}'), "empty": parse_overrides("{}")}
refusals = {}
for text in ("[1, 2]", "precision=fp32", '"fp32"'):
    try:
        parse_overrides(text)
    except ValueError as e:
        refusals[text] = str(e)
out["refusals"] = refusals
studies = tmp / "studies"
studies.mkdir()
for name in ("case0.png", "case1.PNG", "._case0.png"):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(studies / name, format="PNG")
store = UltrasoundDatastore(str(studies), extensions=IMAGE_PATTERNS, auto_reload=False)
out["listed"] = sorted(store.list_images())
label = tmp / "class.json"
label.write_text(json.dumps({"class": "malignant"}))
store.save_label("case0", str(label), "class", {})
out["labelled"] = store.get_labeled_images()
out["unlabelled"] = store.get_unlabeled_images()
out["labelled_final"] = store.get_labeled_images("final")  # a client asking about masks only
out["unlabelled_final"] = sorted(store.get_unlabeled_images("final"))

# the app's datastore says which files of the studies folder it will not serve
import logging
from types import SimpleNamespace
from monai_ext.apps.label.app import UltrasoundClassifierApp
other = tmp / "other_studies"
other.mkdir()
Image.fromarray(np.zeros((4, 4), np.uint8)).save(other / "case0.png")
(other / "scan0001").write_bytes(b"DICM without a suffix")
warnings = []
handler = logging.Handler(logging.WARNING)
handler.emit = lambda record: warnings.append(record.getMessage())
datastore_logger = logging.getLogger("monai_ext.apps.label.datastore")
datastore_logger.addHandler(handler)
try:
    served = UltrasoundClassifierApp.init_datastore(SimpleNamespace(studies=str(other)))
    out["served_store"] = [type(served).__name__, sorted(served.list_images())]
    observer = getattr(served, "_observer", None)  # auto_reload's folder watcher: stopped, the interpreter is shared
    if observer is not None:
        observer.stop()
        observer.join(timeout=5)
finally:
    datastore_logger.removeHandler(handler)
out["unlisted_warnings"] = warnings
try:
    store.save_label("nobody", str(label), "class", {})
except HTTPException as e:
    out["unknown"] = [e.status_code, e.detail]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def outcome(label_env, tmp_path_factory) -> dict:
    return label_env.run(SCRIPT, str(tmp_path_factory.mktemp("app")))


def test_overrides_are_a_json_object(outcome) -> None:
    assert outcome["overrides"] == {"precision": "fp32", "batch_size": 2} and outcome["empty"] == {}


def test_overrides_that_are_no_json_object_are_refused_quoting_them(outcome) -> None:
    refusals = outcome["refusals"]
    assert sorted(refusals) == sorted(["[1, 2]", "precision=fp32", '"fp32"'])
    for text, message in refusals.items():
        assert message.startswith("conf 'overrides' must be a JSON object, got ") and repr(text) in message


def test_hidden_files_are_not_listed(outcome) -> None:
    assert outcome["listed"] == ["case0", "case1"]


def test_a_class_label_makes_an_image_labelled(outcome) -> None:
    assert outcome["labelled"] == ["case0"] and outcome["unlabelled"] == ["case1"]


def test_a_client_asking_about_one_tag_counts_that_tag_only(outcome) -> None:
    assert outcome["labelled_final"] == [] and outcome["unlabelled_final"] == ["case0", "case1"]


def test_the_apps_datastore_names_the_files_it_does_not_serve(outcome) -> None:
    assert outcome["served_store"] == ["UltrasoundDatastore", ["case0"]]
    (warning,) = outcome["unlisted_warnings"]
    assert "1 file(s)" in warning and "not served" in warning and "scan0001" in warning


def test_a_label_for_an_unknown_image_is_a_404(outcome) -> None:
    assert outcome["unknown"] == [404, "no image 'nobody' in the datastore"]
