"""What the app's datastore (UltrasoundDatastore, apps/label/app.py) writes for uploads: no tag or image id that
leads out of its folder (``tag=..`` overwrote the image itself), a picture sent without a file name saved under its
own suffix, and every label file the app saves listed again when the datastore's record is rebuilt; and the
``segmentation_overrides`` setting reaching the segmenter's serving and fine-tuning. Runs in MONAI Label's
environment; the live server's HTTP 422 is tested in test_label_server.py."""

from __future__ import annotations

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
