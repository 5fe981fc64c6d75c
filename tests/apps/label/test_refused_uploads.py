"""No upload the app refuses stays in the temporary folder (apps/label/uploads.py): MONAI Label's endpoints save each
upload to a temporary file and remove it in a background task that runs only after a successful answer, so every
refused upload stayed for good (a long-running server, or a client sending large unreadable files, filled /tmp).

Runs MONAI Label's own routers (infer, WSI infer, datastore) over the app's ``infer`` and datastore, in MONAI Label's
environment, with a stand-in model that reads the image as the classifier does."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

SCRIPT = r"""
import io, json, sys, tempfile
from pathlib import Path
import numpy as np
from PIL import Image
from fastapi import FastAPI
from fastapi.testclient import TestClient
import monailabel.endpoints.datastore as datastore_endpoints
import monailabel.endpoints.infer as infer_endpoints
import monailabel.endpoints.wsi_infer as wsi_endpoints
from monai_ext.apps.label.app import UltrasoundClassifierApp, UltrasoundDatastore
from monai_ext.apps.label.datastore import IMAGE_PATTERNS
from monai_ext.apps.label.infer import UltrasoundClassifyInfer
from monai_ext.engines.inference import NonFiniteOutputError
from monai_ext.io.images import read_image

tmp = Path(sys.argv[1])
uploads = tmp / "uploads"  # tempfile's folder: where MONAI Label's endpoints save each upload
uploads.mkdir()
tempfile.tempdir = str(uploads)
studies = tmp / "studies"
studies.mkdir()

def png(value):
    out = io.BytesIO()
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(out, format="PNG")
    return out.getvalue()

(studies / "case0.png").write_bytes(png(7))

class Model:
    # stands for BundleClassifier: reads the file as it does; a first pixel of 255 gives NaN, 254 a crash
    class_names = ["benign", "malignant"]
    device = "cpu"
    def predict(self, path):
        value = int(np.asarray(read_image(path).pixels).flat[0])
        if value == 255:
            raise NonFiniteOutputError(f"the network gave NaN for {path}")
        if value == 254:
            raise RuntimeError("out of memory")
        return {"label": 0, "class": "benign", "probabilities": {"benign": 1.0, "malignant": 0.0}}

model = Model()
stub = tmp / "model.pt"
stub.write_bytes(b"")
app = UltrasoundClassifierApp.__new__(UltrasoundClassifierApp)  # its __init__ loads a checkpoint and starts threads
app.model_name = "usf_mae_classifier"
app._infers = {app.model_name: UltrasoundClassifyInfer(lambda checkpoint: model, lambda: stub)}
app._infers_threadpool = None
app._datastore = UltrasoundDatastore(str(studies), extensions=IMAGE_PATTERNS, auto_reload=False)
app.info = lambda: {}
for module in (infer_endpoints, wsi_endpoints, datastore_endpoints):
    module.app_instance = lambda: app
server = FastAPI()
for module in (infer_endpoints, wsi_endpoints, datastore_endpoints):
    server.include_router(module.router)
client = TestClient(server, raise_server_exceptions=False)  # a crash is MONAI Label's HTTP 500, as served

label = json.dumps({"class": "benign"}).encode()
requests = {
    "unreadable image": ("post", "/infer/usf_mae_classifier", {"output": "json"}, {"file": ("notes.png", b"notes")}, {}),
    "unknown model": ("post", "/infer/nosuchmodel", {"output": "json"}, {"file": ("scan.png", png(7))}, {}),
    "model gave NaN": ("post", "/infer/usf_mae_classifier", {"output": "json"}, {"file": ("scan.png", png(255))}, {}),
    "model crashed": ("post", "/infer/usf_mae_classifier", {"output": "json"}, {"file": ("scan.png", png(254))}, {}),
    "server path in params": ("post", "/infer/usf_mae_classifier", {"output": "json"},
                              {"file": ("scan.png", png(7))}, {"params": json.dumps({"image": "/etc/passwd"})}),
    "output=image without a heat map": ("post", "/infer/usf_mae_classifier", {"output": "image"},
                                        {"file": ("scan.png", png(7))}, {}),
    "upload and label, unknown model": ("post", "/infer/nosuchmodel", {"output": "json"},
                                        {"file": ("scan.png", png(7)), "label": ("mask.png", png(1))}, {}),
    "WSI upload the app cannot tile": ("post", "/infer/wsi_v2/usf_mae_classifier", {"output": "json"},
                                       {"file": ("slide.tif", b"II*\x00 not a slide")}, {}),
    "image id out of the studies folder": ("put", "/datastore/image", {"image": "../pwn"},
                                           {"file": ("scan.png", png(7))}, {}),
    "label tag ..": ("put", "/datastore/label", {"image": "case0", "tag": ".."}, {"label": ("c.json", label)}, {}),
    "label for an unknown image": ("put", "/datastore/label", {"image": "case9", "tag": "class"},
                                   {"label": ("c.json", label)}, {}),
    # served: MONAI Label's background task removes the file, and the check above sees that
    "served infer": ("post", "/infer/usf_mae_classifier", {"output": "json"}, {"file": ("scan.png", png(7))}, {}),
    "saved label": ("put", "/datastore/label", {"image": "case0", "tag": "class"}, {"label": ("c.json", label)}, {}),
}
out = {}
for name, (method, url, query, files, data) in requests.items():
    response = getattr(client, method)(url, params=query, files=files, data=data)
    out[name] = [response.status_code, sorted(p.name for p in uploads.iterdir())]
    for p in uploads.iterdir():  # each request starts from an empty folder, so a leak is told to its request
        p.unlink()

# a file a script hands the datastore is the caller's: refused, it stays
own = tmp / "own.png"
own.write_bytes(png(7))
for call in (lambda: app._datastore.add_image("../pwn", str(own), {}),
             lambda: app._datastore.save_label("case0", str(own), "..", {})):
    try:
        call()
    except Exception as e:
        out.setdefault("scripts_refused", []).append(type(e).__name__)
out["own_file_kept"] = own.is_file()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def outcome(label_env, tmp_path_factory) -> dict:
    return label_env.run(SCRIPT, str(tmp_path_factory.mktemp("refused_uploads")))


@pytest.mark.parametrize("request_name, status", [
    ("unreadable image", 422),
    ("unknown model", 404),
    ("model gave NaN", 500),
    ("model crashed", 500),
    ("server path in params", 404),
    ("output=image without a heat map", 422),
    ("upload and label, unknown model", 404),
    ("WSI upload the app cannot tile", 500),
    ("image id out of the studies folder", 422),
    ("label tag ..", 422),
    ("label for an unknown image", 404),
])
def test_a_refused_upload_leaves_no_temporary_file(outcome, request_name, status) -> None:
    got_status, left = outcome[request_name]
    assert got_status == status
    assert left == [], f"{request_name}: left in the temporary folder: {left}"


@pytest.mark.parametrize("request_name", ["served infer", "saved label"])
def test_a_served_upload_is_removed_as_before(outcome, request_name) -> None:
    assert outcome[request_name] == [200, []]


def test_a_file_a_script_gives_the_datastore_is_kept_when_refused(outcome) -> None:
    assert outcome["scripts_refused"] == ["HTTPException", "HTTPException"]
    assert outcome["own_file_kept"]
