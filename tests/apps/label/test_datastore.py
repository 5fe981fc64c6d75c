"""Which studies files the MONAI Label datastore lists, and which saved labels each train task reads (main
environment: a stand-in with the ``Datastore`` methods the tasks call; the live server test saves labels for real)."""

from __future__ import annotations

import fnmatch
import re

import pytest

from monai_ext.apps.label.datastore import (
    CLASS_TAG,
    FINAL_TAG,
    IMAGE_PATTERNS,
    LABEL_PATTERNS,
    check_image_id,
    check_label_tag,
    check_uploaded_image,
    class_label_items,
    images_in_subfolders,
    is_labelled,
    is_listed_image,
    is_listed_label,
    label_file_id,
    served_names,
    shadowed_files,
    unlisted_files,
    upload_image_id,
    warn_unlisted_files,
)


@pytest.mark.parametrize("name, listed", [("c1.png", True), ("C2.PNG", True), ("C3.JPG", True), ("US4.DCM", True),
                                          ("scan.tiff", True), ("IM0005", False), ("1.2.840.113619.2.55.6", False),
                                          ("odd.Png", False), ("notes.txt", False)])
def test_scanner_spellings_are_listed_and_the_rest_are_named(tmp_path, name, listed) -> None:
    (tmp_path / name).write_bytes(b"x")
    (tmp_path / "datastore_v2.json").write_text("{}")  # the datastore's own record, not a study
    (tmp_path / ".lock").write_text("")
    (tmp_path / "labels").mkdir()
    # MONAI Label's own matching: fnmatch.filter, case-sensitive on Linux (fnmatchcase everywhere)
    assert any(fnmatch.fnmatchcase(name, pattern) for pattern in IMAGE_PATTERNS) is listed
    assert unlisted_files(tmp_path) == ([] if listed else [name])


class Store:
    """The Datastore methods the train tasks call, over {image id: {tag: label file}}."""

    def __init__(self, labels: dict[str, dict[str, str]]) -> None:
        self.labels = labels

    def list_images(self) -> list[str]:
        return sorted(self.labels)

    def get_image_uri(self, image_id: str) -> str:
        return f"/studies/{image_id}.png"

    def get_label_uri(self, label_id: str, label_tag: str) -> str:
        return self.labels[label_id].get(label_tag, "")


def test_class_labels_come_from_their_tag_and_a_mask_never_hides_one() -> None:
    store = Store({
        "a": {CLASS_TAG: "/labels/class/a.json", FINAL_TAG: "/labels/final/a.png"},  # a class and a mask
        "b": {FINAL_TAG: "/labels/final/b.json"},  # a class saved under final, as before the class tag
        "c": {FINAL_TAG: "/labels/final/c.PNG"},  # a mask only
        "d": {},
        "e": {CLASS_TAG: "/labels/class/e.txt", FINAL_TAG: "/labels/final/e.json"},  # the class tag wins
        # label maps that 3D Slicer and other viewers save: masks, not class files to be refused as unreadable
        "f": {FINAL_TAG: "/labels/final/f.nii.gz"}, "g": {FINAL_TAG: "/labels/final/g.seg.nrrd"},
        "h": {FINAL_TAG: "/labels/final/h.NII"}, "i": {FINAL_TAG: "/labels/final/i.dcm"},
    })
    assert class_label_items(store) == [  # with the datastore id, which keeps the image's part of the split
        {"image": "/studies/a.png", "label": "/labels/class/a.json", "id": "a"},
        {"image": "/studies/b.png", "label": "/labels/final/b.json", "id": "b"},
        {"image": "/studies/e.png", "label": "/labels/class/e.txt", "id": "e"},
    ]


def test_images_the_datastore_would_hide_are_named(tmp_path, caplog) -> None:
    """MONAI Label's local datastore lists only the files directly in the studies folder, one per name less suffix:
    a PACS export's per-patient folders and a DICOM's PNG preview were left out of the worklist without a word."""
    for name in ("US0001.dcm", "US0001.png", "Läsion rechts 2.png", "patient7/scan1.png", "patient7/deeper/s2.JPG",
                 "patient8/notes.txt", "labels/final/US0001.png", ".thumbs/a.png", "patient9/.a.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert images_in_subfolders(tmp_path) == {"patient7": 2}
    assert shadowed_files(tmp_path) == [["US0001.dcm", "US0001.png"]]
    with caplog.at_level("WARNING"):
        warn_unlisted_files(tmp_path)
    assert "2 image(s) in sub-folders of" in caplog.text and "patient7/ 2" in caplog.text
    assert "US0001.dcm, US0001.png in" in caplog.text and "share the id 'US0001'" in caplog.text
    assert "Läsion" not in caplog.text  # spaces and accents are served as they are


@pytest.mark.parametrize("labels, label_tag, done", [
    ({CLASS_TAG: "/labels/class/a.json"}, None, True),   # a class: MONAI Label's own count left it "unlabelled"
    ({FINAL_TAG: "/labels/final/a.png"}, None, True),    # a mask
    ({}, None, False),
    ({CLASS_TAG: "/labels/class/a.json"}, FINAL_TAG, False),  # a client asking about masks only
    ({FINAL_TAG: "/labels/final/a.png"}, CLASS_TAG, False),
])
def test_an_image_with_a_class_label_is_labelled_for_next_sample_and_progress(labels, label_tag, done) -> None:
    assert is_labelled(labels, label_tag) is done


def test_hidden_companion_files_are_not_served() -> None:
    """macOS writes ._case0.png beside case0.png on SMB and exFAT shares: it matched *.png and became a case."""
    listed = {"case0.png": "case0.png", "._case0.png": "._case0.png", ".DS_Store.png": ".DS_Store.png"}
    assert served_names(listed) == {"case0.png": "case0.png"}


@pytest.mark.parametrize("tag, allowed", [("final", True), ("class", True), ("my_tag-2", True), ("..", False),
                                          ("../../x", False), ("class/..", False), ("", False), ("final\n", False),
                                          ("fin al", False), (None, False)])
def test_a_label_tag_must_be_a_plain_folder_name(tag, allowed) -> None:
    """``tag=..`` saved the label over the study image itself; ``../../x`` outside the studies folder."""
    if allowed:
        assert check_label_tag(tag) == tag
    else:
        with pytest.raises(ValueError, match=f"^label tag {re.escape(repr(tag))} is not allowed"):
            check_label_tag(tag)


@pytest.mark.parametrize("image_id, allowed", [("case0", True), ("Läsion rechts 2", True), ("case.1", True),
                                               ("../pwn", False), ("..", False), ("..\\pwn", False),
                                               ("sub/pwn", False), ("a..b", True), ("pt1..left", True),
                                               (".hidden", False), ("", False), (None, False)])
def test_an_image_id_must_name_a_file_directly_in_the_studies_folder(image_id, allowed) -> None:
    if allowed:
        assert check_image_id(image_id) == image_id
    else:
        with pytest.raises(ValueError, match=f"^image id {re.escape(repr(image_id))} is not allowed"):
            check_image_id(image_id)


@pytest.mark.parametrize("name, found", [("ga.json", ("ga", ".json")), ("case.1.txt", ("case.1", ".txt")),
                                         ("ga.nii.gz", ("ga", ".nii.gz")), ("ga.seg.nrrd", ("ga", ".seg.nrrd")),
                                         ("GA.JSON", ("GA", ".JSON")), ("ga.png", None), ("ga.dcm", None),
                                         ("notes.csv", None)])
def test_label_files_are_listed_and_named_by_their_whole_suffix(name, found) -> None:
    """MONAI Label lists label folders with the image patterns: class files and NIfTI masks were lost whenever the
    datastore's record was rebuilt."""
    assert label_file_id(name) == found
    assert any(fnmatch.fnmatchcase(name, p) for p in LABEL_PATTERNS) is (found is not None)


@pytest.mark.parametrize("name, image_id", [
    ("patient1.left.png", "patient1.left"),  # MONAI Label cut ".left.png": .left and .right were one "patient1"
    ("US 2024.03.01 scan.png", "US 2024.03.01 scan"),
    ("scan.Png", "scan"), ("US4.DCM", "US4"), ("case.tiff", "case"),
    ("IM0001", "IM0001"),  # a DICOM export's names: the whole name (every UID-named file was image "1")
    ("1.2.840.113619.2.55.3.604688119.969.1268071029.320", "1.2.840.113619.2.55.3.604688119.969.1268071029.320"),
    ("scan Müller 超声 1.png", "scan Müller 超声 1"), (".png", ".png"),
])
def test_an_uploads_id_is_its_name_less_its_image_suffix_only(name, image_id) -> None:
    assert upload_image_id(name) == image_id


@pytest.mark.parametrize("name, listed", [("a.png", True), ("A.PNG", True), ("a.dcm", True), ("a.Png", False),
                                          ("IM0001", False), ("1.2.840.3", False), ("a.gif", False),
                                          ("a.nii.gz", False), ("notes.txt", False)])
def test_listed_images_are_the_datastores_patterns(name, listed) -> None:
    assert is_listed_image(name) is listed


@pytest.mark.parametrize("name, listed", [("case0.png", True), ("case0.json", True), ("case.1.txt", True),
                                          ("case0.nii.gz", True), ("case0", False), ("case0.Png", False)])
def test_listed_labels_are_pictures_class_files_and_label_maps(name, listed) -> None:
    assert is_listed_label(name) is listed


@pytest.mark.parametrize("name", ["tmpab12.nii.gz", "tmpab12.nii", "tmpab12.nrrd", "tmpab12.mha"])
def test_a_volume_upload_is_refused_saying_what_to_send_instead(tmp_path, name: str) -> None:
    """3D Slicer's MONAI Label module uploads the image it shows as a volume (NIfTI by default): such an upload was
    stored (HTTP 200) before the datastore refused unlisted images; its 422 named what the datastore lists but not
    what a Slicer user is to send instead."""
    (tmp_path / name).write_bytes(b"\x1f\x8b volume")
    with pytest.raises(ValueError) as error:
        check_uploaded_image(str(tmp_path / name), "the uploaded file 'vol.nii.gz'")
    assert str(error.value).startswith("the uploaded file 'vol.nii.gz' is no image the datastore lists")
    assert "3D Slicer" in str(error.value) and "the picture or DICOM file itself" in str(error.value)
    (tmp_path / "notes.txt").write_text("meeting notes")  # no volume: no word of Slicer
    with pytest.raises(ValueError, match="not added$"):
        check_uploaded_image(str(tmp_path / "notes.txt"), "the uploaded file 'notes.txt'")


def test_an_uploaded_image_is_refused_when_unlisted_or_unreadable_naming_it(tmp_path) -> None:
    from PIL import Image

    Image.new("L", (3, 2)).save(tmp_path / "ok.png")
    check_uploaded_image(str(tmp_path / "ok.png"), "the uploaded file 'ok.png'")
    (tmp_path / "notes.txt").write_text("meeting notes")
    with pytest.raises(ValueError, match=r"^the uploaded file 'notes.txt' is no image the datastore lists"):
        check_uploaded_image(str(tmp_path / "notes.txt"), "the uploaded file 'notes.txt'")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError) as error:
        check_uploaded_image(str(tmp_path / "empty.png"), "the uploaded file 'empty.png'")
    assert str(error.value) == ("not a readable PNG/JPG/BMP/TIFF/DICOM image: the uploaded file 'empty.png': empty "
                                "file (0 bytes); not added")
    (tmp_path / "text.png").write_text("not pixels")
    with pytest.raises(ValueError, match="the uploaded file 'text.png': cannot decode") as error:
        check_uploaded_image(str(tmp_path / "text.png"), "the uploaded file 'text.png'")
    assert str(tmp_path) not in str(error.value)  # the server's temporary file means nothing to the client
