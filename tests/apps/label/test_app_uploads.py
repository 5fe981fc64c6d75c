"""What the app's datastore (UltrasoundDatastore, apps/label/app.py) writes for uploads: no tag or image id that
leads out of its folder (``tag=..`` overwrote the image itself), a picture sent without a file name saved under its
own suffix, and every label file the app saves listed again when the datastore's record is rebuilt; and the
``segmentation_overrides`` setting reaching the segmenter's serving and fine-tuning. Runs in MONAI Label's
environment; the live server's HTTP 422 is tested in test_label_server.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SCRIPT = r"""
import json, os, sys
from pathlib import Path
import numpy as np
from fastapi import HTTPException
from PIL import Image
from monai_ext.apps.label.app import UltrasoundDatastore
from monai_ext.apps.label.datastore import IMAGE_PATTERNS

tmp = Path(sys.argv[1])
studies, outside = tmp / "studies", tmp / "outside"
studies.mkdir()
outside.mkdir()
Image.fromarray(np.full((4, 4), 7, np.uint8)).save(studies / "ga.png")
Image.fromarray(np.full((4, 4), 9, np.uint8)).save(studies / "case.1.png")
image_bytes = (studies / "ga.png").read_bytes()
upload = tmp / "upload.png"
Image.fromarray(np.full((4, 4), 1, np.uint8)).save(upload)
store = UltrasoundDatastore(str(studies), extensions=IMAGE_PATTERNS, auto_reload=False)

def answer(call):
    try:
        return ["ok", call()]
    except HTTPException as e:
        return [e.status_code, e.detail]

def files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != ".lock")

out = {"tags": {}, "label_ids": {}, "image_ids": {}}
for tag in ("..", "../../x", "../final", "fin al", "", "final\n", "class/.."):
    out["tags"][tag] = answer(lambda: store.save_label("ga", str(upload), tag, {}))
for image_id in ("../ga", "..", "..\\ga", "ga/..", ".hidden"):
    out["label_ids"][image_id] = answer(lambda: store.save_label(image_id, str(upload), "final", {}))
for image_id in ("../pwn", "../../pwn", "..", "..\\pwn", "sub/pwn", ".pwn"):
    out["image_ids"][image_id] = answer(lambda: store.add_image(image_id, str(upload), {}))
# a link in the studies folder (and in a label folder) to a file elsewhere: an upload would overwrite its target
(outside / "target.png").write_bytes(b"not to be overwritten")
os.symlink(outside / "target.png", studies / "link.png")
out["linked_image"] = answer(lambda: store.add_image("link", str(upload), {}))
os.symlink(outside / "target.png", studies / "labels" / "final" / "ga.png")
out["linked_label"] = answer(lambda: store.save_label("ga", str(upload), "final", {}))
os.unlink(studies / "labels" / "final" / "ga.png")
os.unlink(studies / "link.png")
out["image_kept"] = (studies / "ga.png").read_bytes() == image_bytes
out["target_kept"] = (outside / "target.png").read_bytes() == b"not to be overwritten"
out["outside"] = files(outside)
out["above"] = sorted(p.name for p in tmp.iterdir())
out["accepted"] = [answer(lambda: store.add_image("new", str(upload), {})),
                   answer(lambda: store.save_label("ga", str(upload), "my_tag-2", {}))]

# sent without a file name: MONAI Label's endpoints name the upload .nii.gz
nameless = tmp / "tmpupload.nii.gz"
nameless.write_bytes(upload.read_bytes())
store.save_label("ga", str(nameless), "final", {})
out["nameless_label"] = Path(store.get_label_uri("ga", "final")).name
out["nameless_image"] = answer(lambda: store.add_image("sent", str(nameless), {}))
out["nameless_image_file"] = Path(store.get_image_uri("sent")).name
# sent with neither a file name nor an id: each was "upload", the second over the first
first, second = tmp / "tmpfirst.nii.gz", tmp / "tmpsecond.nii.gz"
Image.fromarray(np.full((4, 4), 10, np.uint8)).save(first, format="PNG")
Image.fromarray(np.full((4, 4), 200, np.uint8)).save(second, format="PNG")
out["nameless_ids"] = [store.add_image("", str(first), {}), store.add_image("", str(second), {})]
out["nameless_pixels"] = [int(np.asarray(Image.open(store.get_image_uri(i)))[0, 0]) for i in out["nameless_ids"]]
# ".." inside a listed file's name is a name like any other: its labels save
Image.fromarray(np.full((4, 4), 3, np.uint8)).save(studies / "pt1..left.png")
store.refresh()
out["dotted_label"] = answer(lambda: store.save_label("pt1..left", str(upload), "final", {}))

# the README's class files, a 3D Slicer mask, and an id with a dot: listed again once the record is rebuilt
for image_id, name in (("ga", "class.json"), ("case.1", "class.txt")):
    (tmp / name).write_text("benign")
    store.save_label(image_id, str(tmp / name), "class", {})
(tmp / "slicer.nii.gz").write_bytes(b"\x1f\x8b not really")
store.save_label("case.1", str(tmp / "slicer.nii.gz"), "final", {})

def label_files(datastore):
    return {i: {t: Path(datastore.get_label_uri(i, t)).name for t in datastore.get_labels_by_image_id(i)}
            for i in sorted(datastore.list_images())}

out["labels_before"] = label_files(store)
(studies / "datastore_v2.json").unlink()
out["labels_rebuilt"] = label_files(UltrasoundDatastore(str(studies), extensions=IMAGE_PATTERNS, auto_reload=False))

# segmentation_overrides: given to the segmenter's loading and to its train task; bad JSON refused naming it
import monai_ext.apps.label.app as app
from types import SimpleNamespace
loaded = []
app.load_bundle_segmenter = lambda root, checkpoint, device=None, overrides=None: loaded.append(overrides) or \
    SimpleNamespace(class_names=["background", "lesion"])
checkpoint = tmp / "seg.pt"
checkpoint.write_bytes(b"a segmenter")
conf = {"segmentation_checkpoint": str(checkpoint), "overrides": '{"image_size": 96}',
        "segmentation_overrides": '{"precision": "fp32"}'}
service = app.SegmentationService(str(tmp / "app"), str(studies), conf, None)
out["segmenter_loaded_with"] = loaded
out["segmenter_trains_with"] = service.train_task().overrides
try:
    app.SegmentationService(str(tmp / "app"), str(studies), {**conf, "segmentation_overrides": "[1]"}, None)
except ValueError as e:
    out["bad_segmentation_overrides"] = str(e)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def outcome(label_env, tmp_path_factory) -> dict:
    return label_env.run(SCRIPT, str(tmp_path_factory.mktemp("uploads")))


@pytest.mark.parametrize("tag", ["..", "../../x", "../final", "fin al", "", "final\n", "class/.."])
def test_a_tag_that_is_no_plain_name_is_a_422_naming_it(outcome, tag) -> None:
    status, detail = outcome["tags"][tag]
    assert status == 422 and detail.startswith(f"label tag {tag!r} is not allowed")


@pytest.mark.parametrize("kind, image_id", [("label_ids", "../ga"), ("label_ids", ".."), ("label_ids", "..\\ga"),
                                            ("label_ids", "ga/.."), ("label_ids", ".hidden"),
                                            ("image_ids", "../pwn"), ("image_ids", "../../pwn"), ("image_ids", ".."),
                                            ("image_ids", "..\\pwn"), ("image_ids", "sub/pwn"), ("image_ids", ".pwn")])
def test_an_image_id_that_leads_out_of_the_studies_folder_is_a_422_naming_it(outcome, kind, image_id) -> None:
    status, detail = outcome[kind][image_id]
    assert status == 422 and detail.startswith(f"image id {image_id!r} is not allowed")


@pytest.mark.parametrize("key, detail", [
    ("linked_image", "image id 'link' names a file outside the studies folder (a link?): not written"),
    ("linked_label", "the label of image 'ga' under tag 'final' names a file outside its folder (a link?): not written"),
])
def test_a_link_to_a_file_elsewhere_is_not_written_through(outcome, key, detail) -> None:
    assert outcome[key] == [422, detail] and outcome["target_kept"] is True


def test_nothing_was_written_outside_and_the_image_was_kept(outcome) -> None:
    assert outcome["image_kept"] is True and outcome["outside"] == ["target.png"]
    assert outcome["above"] == ["outside", "studies", "upload.png"]
    assert outcome["accepted"] == [["ok", "new"], ["ok", "ga"]]  # plain ids and tags still save


@pytest.mark.parametrize("key, name", [("nameless_label", "ga.png"), ("nameless_image_file", "sent.png")])
def test_a_picture_sent_without_a_file_name_is_saved_under_its_own_suffix(outcome, key, name) -> None:
    assert outcome[key] == name
    assert outcome["nameless_image"] == ["ok", "sent"]


def test_uploads_without_a_file_name_or_an_id_keep_their_own_ids(outcome) -> None:
    assert outcome["nameless_ids"] == ["tmpfirst", "tmpsecond"] and outcome["nameless_pixels"] == [10, 200]


def test_an_image_whose_name_holds_two_dots_takes_labels(outcome) -> None:
    assert outcome["dotted_label"] == ["ok", "pt1..left"]


@pytest.mark.parametrize("image_id, labels", [
    ("ga", {"class": "ga.json", "final": "ga.png", "my_tag-2": "ga.png"}),
    ("case.1", {"class": "case.1.txt", "final": "case.1.nii.gz"}),  # an id with a dot keeps its label
])
def test_a_rebuilt_datastore_lists_the_class_files_and_nifti_masks_on_disk(outcome, image_id, labels) -> None:
    """datastore_v2.json deleted, the restarted app listed no class file: "too few: {'benign': 0, ...}"."""
    assert outcome["labels_before"][image_id] == labels
    assert outcome["labels_rebuilt"][image_id] == labels


def test_segmentation_overrides_reach_the_segmenters_serving_and_training(outcome) -> None:
    # the classifier's overrides (image_size 96) are another bundle's: they stay away from the segmenter
    assert outcome["segmenter_loaded_with"] == [{"precision": "fp32"}]
    assert outcome["segmenter_trains_with"] == {"precision": "fp32"}
    assert outcome["bad_segmentation_overrides"] == "conf 'segmentation_overrides' must be a JSON object, got '[1]'"


ENDPOINT_SCRIPT = r"""
import json, sys, tempfile
from pathlib import Path
import numpy as np
from PIL import Image
from fastapi import FastAPI
from fastapi.testclient import TestClient
import monailabel.endpoints.datastore as datastore_endpoints
from monai_ext.apps.label.app import UltrasoundDatastore
from monai_ext.apps.label.datastore import IMAGE_PATTERNS

tmp, sent = Path(sys.argv[1]), Path(sys.argv[2])
uploads = tmp / "uploads"  # tempfile's folder: where MONAI Label's endpoint saves each upload
uploads.mkdir()
tempfile.tempdir = str(uploads)
studies = tmp / "studies"
studies.mkdir()
store = UltrasoundDatastore(str(studies), extensions=IMAGE_PATTERNS, auto_reload=False)

class App:
    def datastore(self):
        return store

    def on_save_label(self, image_id, label_id):
        return {}

datastore_endpoints.app_instance = lambda: App()
server = FastAPI()
server.include_router(datastore_endpoints.router)
client = TestClient(server, raise_server_exceptions=False)
out = {}
for name, query in [("patient1.left.png", {}), ("patient1.right.png", {}), ("IM0001", {}), ("IM0001", {"image": "given"}),
                    ("1.2.840.113619.2.55.3.604688119.969.1268071029.320", {}),
                    ("1.2.840.113619.2.55.3.604688119.969.1268071029.321", {}), ("scan.Png", {}),
                    ("notes.txt", {}), ("empty.png", {}), ("scan.png.png", {}), ("scan.Png", {"image": "x.png"})]:
    response = client.put("/datastore/image", params=query, files={"file": (name, (sent / name).read_bytes())})
    out[name + json.dumps(query)] = [response.status_code, response.json()]
out["left_in_uploads"] = sorted(p.name for p in uploads.iterdir())
out["files"] = sorted(p.name for p in studies.iterdir() if p.is_file() and p.name not in (".lock", "datastore_v2.json"))
out["first_pixels"] = {i: int(np.asarray(Image.open(store.get_image_uri(i)))[0, 0]) if store.get_image_uri(i) else None
                       for i in ("patient1", "patient1.left", "patient1.right")}
# an id the datastore lacks: MONAI Label's ImageNotFoundException was answered HTTP 500
for name, (method, url, query, data) in {
        "remove unknown image": ("delete", "/datastore/image", {"id": "nosuch"}, None),
        "info of unknown image": ("put", "/datastore/image/info", {"image": "nosuch"}, {"info": "{}"}),
        "info of unknown label": ("put", "/datastore/label/info", {"label": "scan", "tag": "final"}, {"info": "{}"}),
        "info of an image": ("put", "/datastore/image/info", {"image": "scan"}, {"info": '{"seen": 1}'})}.items():
    response = getattr(client, method)(url, params=query, **({"data": data} if data else {}))
    out[name] = [response.status_code, response.text]
out["info_kept"] = store.get_image_info("scan").get("seen")
# a mask sent under a name without a suffix (curl -F label=@mask): stored as labels/final/scan, no picture to training
response = client.put("/datastore/label", params={"image": "scan", "tag": "final"},
                      files={"label": ("mask", (sent / "scan.Png").read_bytes())})
out["mask_label"] = [response.status_code, Path(store.get_label_uri("scan", "final")).name]
(studies / "datastore_v2.json").unlink()  # the record rebuilt from the files: every upload is listed again
rebuilt = UltrasoundDatastore(str(studies), extensions=IMAGE_PATTERNS, auto_reload=False)
out["rebuilt"] = sorted(rebuilt.list_images())
out["rebuilt_mask_label"] = Path(rebuilt.get_label_uri("scan", "final")).name
print(json.dumps(out))
"""
UID = "1.2.840.113619.2.55.3.604688119.969.1268071029.32"


@pytest.fixture(scope="module")
def image_uploads(label_env, tmp_path_factory) -> dict:
    """MONAI Label's own ``PUT /datastore/image`` endpoint over the app's datastore, sent files named as
    annotators' files are (two views of a patient, a PACS export's names, a text file, a copy cut off at 0 bytes)."""
    from PIL import Image

    from monai_ext.io.writers import write_dicom

    sent = tmp_path_factory.mktemp("sent")
    Image.fromarray(np.full((40, 50), 10, np.uint8)).save(sent / "patient1.left.png")
    Image.fromarray(np.full((60, 70), 250, np.uint8)).save(sent / "patient1.right.png")
    Image.fromarray(np.full((8, 8), 5, np.uint8)).save(sent / "scan.Png", format="PNG")
    Image.fromarray(np.full((8, 8), 6, np.uint8)).save(sent / "scan.png.png")
    for name, value in (("IM0001", 1), (f"{UID}0", 2), (f"{UID}1", 3)):
        write_dicom(np.full((8, 8), value, np.uint8), sent / name)
    (sent / "notes.txt").write_text("meeting notes")
    (sent / "empty.png").write_bytes(b"")
    return label_env.run(ENDPOINT_SCRIPT, str(tmp_path_factory.mktemp("image_uploads")), str(sent))


@pytest.mark.parametrize("name, query, image_id", [
    ("patient1.left.png", {}, "patient1.left"), ("patient1.right.png", {}, "patient1.right"),
    ("IM0001", {}, "IM0001"), ("IM0001", {"image": "given"}, "given"),
    (f"{UID}0", {}, f"{UID}0"), (f"{UID}1", {}, f"{UID}1"), ("scan.Png", {}, "scan"),
])
def test_an_uploaded_image_keeps_its_own_name_as_its_id(image_uploads, name, query, image_id) -> None:
    """MONAI Label's endpoint cut every suffix off the name: patient1.left.png and patient1.right.png were both
    "patient1" (the second written over the first), every UID-named DICOM was "1", and IM0001 was written under a
    name the datastore does not list (gone from it once its record was rebuilt)."""
    assert image_uploads[name + json.dumps(query)] == [200, {"image": image_id}]


def test_uploaded_images_are_stored_under_names_the_datastore_lists_and_none_over_another(image_uploads) -> None:
    assert image_uploads["files"] == [f"{UID}0.dcm", f"{UID}1.dcm", "IM0001.dcm", "given.dcm", "patient1.left.png",
                                      "patient1.right.png", "scan.png"]
    assert image_uploads["first_pixels"] == {"patient1": None, "patient1.left": 10, "patient1.right": 250}
    assert image_uploads["rebuilt"] == [f"{UID}0", f"{UID}1", "IM0001", "given", "patient1.left", "patient1.right",
                                        "scan"]


@pytest.mark.parametrize("name, detail", [
    ("notes.txt", "the uploaded file 'notes.txt' is no image the datastore lists (PNG, JPG, BMP, TIFF or DICOM, by "
                  "its name or content): not added"),
    ("empty.png", "not a readable PNG/JPG/BMP/TIFF/DICOM image: the uploaded file 'empty.png': empty file (0 bytes); "
                  "not added"),
])
def test_an_upload_that_is_no_readable_image_is_a_422_naming_it(image_uploads, name, detail) -> None:
    """Both were answered HTTP 200 and put in the annotators' worklist, which no viewer opens."""
    assert image_uploads[name + "{}"] == [422, {"detail": detail}]
    assert image_uploads["left_in_uploads"] == []  # refused uploads' temporary files removed


@pytest.mark.parametrize("request_name, detail", [
    ("remove unknown image", "no image 'nosuch' in the datastore"),
    ("info of unknown image", "no image 'nosuch' in the datastore"),
    ("info of unknown label", "no label of image 'scan' under tag 'final' in the datastore"),
])
def test_an_image_or_label_the_datastore_lacks_is_a_404_naming_it(image_uploads, request_name, detail) -> None:
    """MONAI Label's ImageNotFoundException and LabelNotFoundException were answered HTTP 500."""
    status, text = image_uploads[request_name]
    assert (status, json.loads(text)) == (404, {"detail": detail})
    assert image_uploads["info of an image"][0] == 200 and image_uploads["info_kept"] == 1


@pytest.mark.parametrize("name, query, detail", [
    ("scan.png.png", {}, "image id 'scan.png' would be stored as 'scan.png.png', which the datastore lists as image "
                         "'scan': give another id (image=...) or rename the file"),
    ("scan.Png", {"image": "x.png"}, "image id 'x.png' would be stored as 'x.png.png', which the datastore lists as "
                                     "image 'x': give another id (image=...) or rename the file"),
])
def test_an_id_the_datastore_would_list_as_another_is_a_422_naming_it(image_uploads, name, query, detail) -> None:
    """MONAI Label removes every copy of the suffix from a listed name: the image was listed under another id once
    the datastore rebuilt its record, away from the id the client was given and its labels."""
    assert image_uploads[name + json.dumps(query)] == [422, {"detail": detail}]


def test_a_mask_sent_under_a_name_without_a_suffix_is_stored_as_the_picture_it_is(image_uploads) -> None:
    """It was stored as ``labels/final/scan``: training skipped it as "not a mask image", a rebuilt record lost it."""
    assert image_uploads["mask_label"] == [200, "scan.png"]
    assert image_uploads["rebuilt_mask_label"] == "scan.png"
