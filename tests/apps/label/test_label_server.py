"""A real MONAI Label server (``scripts/run_label_server.sh``, which creates ``.venv-label``) on loopback.

The first run installs MONAI Label's environment (about two minutes); later runs reuse it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import requests

from monai_ext.io.writers import write_dicom
from tests.apps.label.conftest import INFERENCE, TRAIN
from tests.bundles.helpers import REPO, run_bundle, tiny_classify_overrides
from tests.servers import serve

pytestmark = pytest.mark.slow
MODEL = "usf_mae_classifier"
START_TIMEOUT_S = 1200  # includes creating .venv-label on a fresh machine


def sample_images(folder: Path) -> dict[str, Path]:
    """Three textured gray images as PNG, and the last one's pixels again as DICOM."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    files = {}
    for index in range(3):
        pixels = cv2.GaussianBlur(rng.integers(0, 256, (80 + 16 * index, 120), np.uint8), (0, 0), 1 + index)
        files[f"case{index}_png"] = folder / f"case{index}.png"
        cv2.imwrite(str(files[f"case{index}_png"]), pixels)
    files["case3_dcm"] = folder / "case3.dcm"
    write_dicom(pixels, files["case3_dcm"])
    return files


@contextmanager
def label_server(work: Path, conf: dict[str, str], **env: str) -> Iterator[tuple[str, dict[str, Path], Path]]:
    """Start ``scripts/run_label_server.sh`` on ``work/studies`` (sample images written there) with ``--conf`` pairs
    on a free loopback port; yield (base URL, sample files, log path) once it serves; stop its process group."""
    files = sample_images(work / "studies")
    log = work / "server.log"
    cmd = ["bash", str(REPO / "scripts" / "run_label_server.sh"), str(work / "studies")]
    for key, value in conf.items():
        cmd += ["--conf", key, value]

    def start(port: int) -> subprocess.Popen:
        variables = {**os.environ, "LABEL_PORT": str(port), "LABEL_APP_DIR": str(work / "app"), **env}
        with open(log, "wb") as out:
            return subprocess.Popen(cmd, cwd=REPO, env=variables, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    try:
        process, url = serve(start, wait_until_serving, stop_group, log)
    except RuntimeError as error:
        pytest.fail(f"{error}:\n{log.read_text(errors='replace')[-6000:]}")
    try:
        yield url, files, log
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen) -> None:
    """Stop the script and the server it started (its process group)."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(classifier_run, module_tmp):
    """(base URL, sample files, log path) of a running server; stopped after the module."""
    conf = {"checkpoint": str(classifier_run / "models" / "model.pt"), "device": "cpu",
            # repeats a setting the checkpoint also fixes: the conf must win without a clash in the train task
            "overrides": json.dumps({"image_size": 64})}
    # infer tasks in MONAI Label's thread pool, as a busy site runs it
    with label_server(module_tmp("label_server"), conf, MONAI_LABEL_INFER_CONCURRENCY="8") as running:
        yield running


def wait_until_serving(url: str, process: subprocess.Popen) -> None:
    """Return once the server answers; RuntimeError if it exits first."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if requests.get(f"{url}/info/", timeout=5).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or a first /info/ slower than 5 s (ReadTimeout)
            pass
        time.sleep(2)
    pytest.fail(f"server not serving after {START_TIMEOUT_S} s")


@pytest.mark.parametrize("error", [requests.ConnectionError, requests.ReadTimeout, requests.exceptions.ChunkedEncodingError])
def test_the_start_wait_outlasts_a_server_that_is_slow_to_answer(monkeypatch, error) -> None:
    """A first /info/ slower than 5 s (the app loading its model on a busy machine) ended the wait in a ReadTimeout,
    and every test of the module failed in its fixture."""
    answers = [error("not yet"), SimpleNamespace(status_code=200)]

    def get(url: str, timeout: float) -> SimpleNamespace:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(requests, "get", get)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    wait_until_serving("http://127.0.0.1:9", SimpleNamespace(poll=lambda: None))
    assert answers == []


@contextmanager
def no_temporary_file_left() -> Iterator[None]:
    """Assert that the block leaves nothing new in the temporary folder, the server's too (tests/conftest.py gives
    both the same TMPDIR): MONAI Label's endpoints left every upload the app refused there for good."""
    folder = Path(tempfile.gettempdir())
    before = set(folder.iterdir())
    yield
    assert sorted(p.name for p in set(folder.iterdir()) - before) == []


def infer(url: str, path: Path, **params) -> requests.Response:
    with open(path, "rb") as f:
        return requests.post(f"{url}/infer/{MODEL}", params={"output": "json"}, files={"file": (path.name, f)},
                             data={"params": json.dumps(params)}, timeout=120)


def test_info_lists_the_classifier_and_its_classes(server) -> None:
    url, _, _ = server
    info = requests.get(f"{url}/info/", timeout=10).json()
    assert info["labels"] == ["benign", "malignant"]
    assert info["models"][MODEL]["type"] == "classification"
    assert info["models"][MODEL]["labels"] == {"benign": 0, "malignant": 1}
    assert MODEL in info["trainers"]
    assert info["datastore"]["total"] == 4  # case0-2.png and case3.dcm: DICOM is in the datastore's patterns


def test_png_and_dicom_predictions_equal_the_bundle_inference(server, classifier_run, tmp_path) -> None:
    url, files, _ = server
    out = tmp_path / "bundle"
    run_bundle([TRAIN, INFERENCE], {**tiny_classify_overrides(classifier_run, classifier_run / "cache"),
                                    "output_dir": str(out), "input_files": [str(p) for p in files.values()]})
    expected = json.loads((out / "predictions.json").read_text())["predictions"]
    served = {}
    for path in files.values():
        response = infer(url, path)
        assert response.status_code == 200, response.text
        served[path] = response.json()
        assert served[path]["class"] == expected[str(path)]["class"]
        assert served[path]["probabilities"] == pytest.approx(expected[str(path)]["probabilities"], abs=1e-6)
    scores = [served[p]["probabilities"]["malignant"] for p in list(files.values())[:3]]
    assert max(scores) - min(scores) > 1e-4  # the images are told apart, so the equality is not trivial


def test_datastore_image_by_id(server) -> None:
    url, files, _ = server
    response = requests.post(f"{url}/infer/{MODEL}", params={"image": "case0", "output": "json"}, timeout=120)
    assert response.status_code == 200, response.text
    assert response.json()["probabilities"] == pytest.approx(infer(url, files["case0_png"]).json()["probabilities"])


@pytest.mark.parametrize("name, content", [("notes.png", b"meeting notes, not pixels"), ("report.dcm", b"%PDF-1.4"),
                                           ("empty.jpg", b"")])
def test_non_image_upload_is_a_client_error_and_the_server_keeps_serving(server, tmp_path, name, content) -> None:
    url, files, _ = server
    (tmp_path / name).write_bytes(content)
    with no_temporary_file_left():
        response = infer(url, tmp_path / name)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"not a readable PNG/JPG/BMP/TIFF/DICOM image: the uploaded file {name!r}: "), detail
    assert "/tmp" not in detail  # the server's temporary file of the upload was named, which means nothing to a client
    assert "''" not in detail  # "cannot identify image file 'the uploaded file 'notes.png''"
    assert infer(url, files["case0_png"]).status_code == 200


@pytest.mark.parametrize("key", ["case0_png", "case3_dcm"])
def test_an_upload_without_a_file_name_is_read_by_its_content(server, key: str) -> None:
    """MONAI Label saves an upload without a name as .nii.gz: a PNG was refused as "not a gzip file"."""
    url, files, _ = server
    content = files[key].read_bytes()
    response = requests.post(f"{url}/infer/{MODEL}", params={"output": "json"}, files={"file": ("", content)},
                             timeout=120)
    assert response.status_code == 200, response.text
    assert response.json()["probabilities"] == pytest.approx(infer(url, files[key]).json()["probabilities"])


def test_heatmap_request_returns_the_grad_cam_png(server) -> None:
    url, files, _ = server
    with open(files["case1_png"], "rb") as f:
        response = requests.post(f"{url}/infer/{MODEL}", params={"output": "image"},
                                 files={"file": ("case1.png", f)}, data={"params": json.dumps({"heatmap": True})},
                                 timeout=120)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    overlay = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert overlay.shape == (96, 120, 3)  # case1's own size (the network saw 64 x 64): it lines up in the viewer


def heatmap_pixels(url: str, path: Path) -> np.ndarray:
    with open(path, "rb") as f:
        response = requests.post(f"{url}/infer/{MODEL}", params={"output": "image"}, files={"file": (path.name, f)},
                                 data={"params": json.dumps({"heatmap": True})}, timeout=300)
    assert response.status_code == 200, response.text
    return cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)


def test_concurrent_heatmap_requests_return_what_sequential_ones_return(server) -> None:
    # MONAI Label 0.8.5 runs one infer at a time (its async endpoint waits on the task, even with
    # MONAI_LABEL_INFER_CONCURRENCY set as here), so this is the end-to-end check for concurrent clients; threads
    # sharing one model are tested in tests/apps/label/test_bundle_model.py and tests/visualize/test_gradcam.py.
    url, files, _ = server
    requests_in_order = [files[name] for name in sorted(files)] * 2  # 8 requests, 4 different images
    sequential = [heatmap_pixels(url, path) for path in requests_in_order]
    with ThreadPoolExecutor(max_workers=len(requests_in_order)) as pool:
        concurrent = list(pool.map(lambda path: heatmap_pixels(url, path), requests_in_order))
    for got, want in zip(concurrent, sequential):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(sequential[0], sequential[1])  # different images, different maps: a mix-up shows


def test_an_image_id_the_datastore_lacks_is_a_404_naming_it(server) -> None:
    """A misspelt id: saving a label ended in a server error, inferring in "not a readable image: ." (HTTP 422)."""
    url, _, _ = server
    response = requests.put(f"{url}/datastore/label", params={"image": "case9", "tag": "class"},
                            files={"label": ("label.json", b'{"class": "benign"}')}, timeout=30)
    assert response.status_code == 404 and "no image 'case9' in the datastore" in response.text, response.text
    response = requests.post(f"{url}/infer/{MODEL}", params={"image": "case9", "output": "json"}, timeout=30)
    assert response.status_code == 404 and "no image 'case9' in the datastore" in response.text, response.text
    assert requests.post(f"{url}/infer/{MODEL}", params={"image": "case0", "output": "json"},
                         timeout=60).status_code == 200


@pytest.mark.parametrize("endpoint, query, value", [
    ("label", {"image": "case0", "tag": ".."}, "label tag '..'"),          # over the study image itself
    ("label", {"image": "case0", "tag": "../../x"}, "label tag '../../x'"),  # outside the studies folder
    ("label", {"image": "../case0", "tag": "final"}, "image id '../case0'"),
    ("", {"image": "../pwn"}, "image id '../pwn'"),                          # MONAI Label's own add_image
    ("image", {"image": "..\\pwn"}, "image id '..\\\\pwn'"),
])
def test_an_upload_that_would_be_written_outside_its_folder_is_a_422_naming_it(server, endpoint, query,
                                                                                value) -> None:
    """The reviewer's requests: ``tag=..`` answered HTTP 200 with the upload written over case0.png itself."""
    url, files, _ = server
    before = {path.name: path.read_bytes() for path in files["case0_png"].parent.parent.rglob("*.png")}
    part = "label" if endpoint == "label" else "file"
    with no_temporary_file_left():
        response = requests.put(f"{url}/datastore/{endpoint}", params=query,
                                files={part: ("mask.png", files["case1_png"].read_bytes())}, timeout=30)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(f"{value} is not allowed"), response.text
    assert {path.name: path.read_bytes() for path in files["case0_png"].parent.parent.rglob("*.png")} == before


def post_infer(url: str, query: dict, params: dict | None = None, upload: Path | None = None,
               model: str = MODEL) -> requests.Response:
    files = {"file": (upload.name, upload.read_bytes())} if upload else None
    return requests.post(f"{url}/infer/{model}", params=query, files=files,
                         data={"params": json.dumps(params or {})}, timeout=120)


def test_no_file_of_the_server_is_read_by_path_only_datastore_ids_and_uploads(server, tmp_path) -> None:
    """Any existing path was classified (and its Grad-CAM sent back): only ids were checked against the datastore."""
    url, files, _ = server
    outside = tmp_path / "rgb.png"
    cv2.imwrite(str(outside), np.full((40, 50, 3), 128, np.uint8))
    for image in [str(outside), str(files["case0_png"]), "../../etc/passwd"]:  # a studies file by path, too
        for output, params in [("json", {}), ("image", {"heatmap": True})]:
            response = post_infer(url, {"image": image, "output": output}, params)
            assert response.status_code == 404, response.text
            assert response.json()["detail"] == f"no image {image!r} in the datastore"
    # the request's params are merged over the upload's temporary file by MONAI Label: a path there is refused too
    response = post_infer(url, {"output": "json"}, {"image": str(outside)}, upload=files["case1_png"])
    assert response.status_code == 404 and str(outside) in response.json()["detail"], response.text
    assert post_infer(url, {"output": "json"}, upload=outside).status_code == 200  # the same file uploaded


def test_output_image_without_a_heat_map_is_a_422_saying_what_to_ask(server) -> None:
    """It was HTTP 500 (MONAI Label sent a result file named None)."""
    url, files, _ = server
    for query, upload in [({"image": "case0", "output": "image"}, None), ({"output": "image"}, files["case1_png"])]:
        response = post_infer(url, query, {"heatmap": False} if upload else None, upload=upload)
        assert response.status_code == 422, response.text
        assert 'needs params {"heatmap": true}; use output=json' in response.json()["detail"]


def test_a_heatmap_param_that_is_no_yes_no_word_is_refused(server) -> None:
    """"maybe" was read as false: no heat map, and nothing said."""
    url, _, _ = server
    response = post_infer(url, {"image": "case0", "output": "json"}, {"heatmap": "maybe"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("params: heatmap must be one of true/yes/1/false/no/0")
    assert post_infer(url, {"image": "case0", "output": "json"}, {"heatmap": "no"}).status_code == 200


def test_an_unknown_model_is_a_404_naming_the_served_ones(server) -> None:
    url, files, _ = server
    response = post_infer(url, {"image": "case0", "output": "json"}, model="nosuchmodel")
    assert response.status_code == 404, response.text
    assert response.json()["detail"] == f"no model 'nosuchmodel'; this server serves {MODEL!r}"
    with no_temporary_file_left():  # an upload to it, refused, is removed
        response = post_infer(url, {"output": "json"}, upload=files["case0_png"], model="nosuchmodel")
    assert response.status_code == 404, response.text
    assert response.json()["detail"] == f"no model 'nosuchmodel'; this server serves {MODEL!r}"


def test_server_listens_on_loopback_only(server) -> None:
    _, _, log = server
    assert "Uvicorn running on http://127.0.0.1:" in log.read_text()


def save_label(url: str, image_id: str, tag: str, name: str, content: bytes) -> None:
    response = requests.put(f"{url}/datastore/label", params={"image": image_id, "tag": tag},
                            files={"label": (name, content)}, timeout=30)
    assert response.status_code == 200, response.text


def wait_for_training(url: str, timeout_s: float = 600) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = requests.get(f"{url}/train/", timeout=10).json()
        if status.get("status") in ("DONE", "ERROR"):
            return status
        time.sleep(2)
    pytest.fail(f"training still running after {timeout_s} s")


def test_train_with_a_bad_parameter_ends_in_error_naming_it(server) -> None:
    url, _, _ = server
    response = requests.post(f"{url}/train/{MODEL}", json={"max_epochs": 0}, timeout=30)
    assert response.status_code == 200, response.text
    status = wait_for_training(url)
    assert status["status"] == "ERROR"
    assert any("'max_epochs' must be an integer of at least 1, got 0" in line for line in status["details"])
    assert requests.get(f"{url}/info/", timeout=10).status_code == 200


def test_train_task_fine_tunes_on_datastore_labels_and_the_server_serves_the_result(server, classifier_run,
                                                                                     tmp_path) -> None:
    # last in this file: it replaces the served model
    url, files, log = server
    info = requests.get(f"{url}/info/", timeout=10).json()
    assert MODEL in info["trainers"] and info["trainers"][MODEL]["config"]["max_epochs"] == 10
    before = infer(url, files["case0_png"]).json()["probabilities"]
    # class labels under the app's "class" tag, one under "final" as the README had it before the tag existed; and
    # a mask under "final" for case0, as an annotator's viewer saves it: neither may hide a class label
    assert requests.get(f"{url}/datastore/", params={"output": "stats"}, timeout=10).json()["completed"] == 0
    for image_id, name, tag in [("case0", "benign", "class"), ("case1", "benign", "final"),
                                ("case2", "malignant", "class"), ("case3", "malignant", "class")]:
        save_label(url, image_id, tag, "label.json", json.dumps({"class": name}).encode())
    # every image has its class now: progress says so, and Next Sample offers none of them again (it counted
    # "final" labels only: the class-tagged images stayed "unlabelled")
    assert requests.get(f"{url}/datastore/", params={"output": "stats"}, timeout=10).json()["completed"] == 4
    offered = requests.post(f"{url}/activelearning/random", json={}, timeout=10)
    assert offered.status_code == 200 and not (offered.json() or {}).get("id"), offered.text
    save_label(url, "case0", "final", "case0.png", cv2.imencode(".png", np.zeros((80, 120), np.uint8))[1].tobytes())
    response = requests.post(f"{url}/train/{MODEL}", json={"max_epochs": 2, "num_workers": 0, "batch_size": 4,
                                                           "base_lr": 0.05}, timeout=30)
    assert response.status_code == 200, response.text
    status = wait_for_training(url)
    assert status["status"] == "DONE", "\n".join(status.get("details", [])) + log.read_text()[-4000:]
    published = log.parent / "app" / "model" / f"{MODEL}.pt"
    stats = json.loads((published.with_suffix("") / "train_stats.json").read_text())
    assert (stats["train"], stats["validation"], stats["epochs"]) == (2, 2, 2)
    assert stats["started_from"] == str(classifier_run / "models" / "model.pt")
    # two epochs on two images leave a model that guesses; the served model, scored on the same validation images
    # by the bundle's evaluate.yaml, guesses too: no loss, so the new one is published
    assert "as the served model does (balanced accuracy 0.5)" in log.read_text()

    out = tmp_path / "bundle"
    run_bundle([TRAIN, INFERENCE], {**tiny_classify_overrides(classifier_run, classifier_run / "cache"),
                                    "ckpt_path": str(published), "output_dir": str(out),
                                    "input_files": [str(files["case0_png"])]})
    expected = json.loads((out / "predictions.json").read_text())["predictions"][str(files["case0_png"])]
    after = infer(url, files["case0_png"]).json()["probabilities"]
    assert after == pytest.approx(expected["probabilities"], abs=1e-6)
    assert after != pytest.approx(before, abs=1e-6)  # the fine-tuned model is the one served
