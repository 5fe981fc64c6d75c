"""What the MONAI Label app serves of an infer request: datastore ids and the endpoint's own upload, never a server
path a client wrote; yes/no params with the bundles' words; server paths kept out of answers."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from monai_ext.apps.label.infer_request import (
    EndpointCall,
    RequestRefused,
    content_suffix,
    endpoint_call,
    named_by_content,
    request_flag,
    requested_image,
    shown_to_client,
)

IDS = ("case0", "case1")


def app_infer() -> EndpointCall | None:
    """Stands for ``app.infer``: reads the endpoint from its caller's frame, as the app does."""
    frame = sys._getframe(1)
    try:
        return endpoint_call(frame, ENDPOINTS)
    finally:
        del frame


def run_inference(file=None, image: str = "", session_id: str = "", output=None, params_image: str | None = None,
                  label=None):
    """Stands for MONAI Label 0.8.5's ``run_inference``: its variables carry the same names."""
    request = {"image": image}
    if file:
        image_file = "/tmp/tmpab12cd34.png"  # noqa: F841  (read from the frame)
        request["image"] = image_file
    if label:
        label_file = "/tmp/tmplabel99.nii.gz"  # noqa: F841  (read from the frame)
    if session_id == "s1":
        session = SimpleNamespace(image="/sessions/s1/image.png")  # noqa: F841  (read from the frame)
    if params_image is not None:  # the request's params JSON is merged over the endpoint's dict
        request["image"] = params_image
    return app_infer(), request["image"]


def infer_wsi():
    """Stands for MONAI Label's ``infer_wsi``, a frame between the endpoint and ``app.infer``."""
    return app_infer()


def run_wsi_inference():
    file, image_file = SimpleNamespace(filename="slide.png"), "/tmp/tmpzz99yy88.png"  # noqa: F841
    return infer_wsi()


ENDPOINTS = (run_inference.__code__, run_wsi_inference.__code__)


def impostor():
    """A function that has the endpoint's variable names but is not the endpoint."""
    file, image_file = SimpleNamespace(filename="x.png"), "/etc/passwd"  # noqa: F841
    return app_infer()


def test_the_endpoint_is_found_by_its_code_and_its_upload_read_from_its_variables() -> None:
    call, image = run_inference(file=SimpleNamespace(filename="scan.png"), output=SimpleNamespace(value="image"))
    assert call == EndpointCall(upload="/tmp/tmpab12cd34.png", upload_name="scan.png", output="image")
    assert image == call.upload
    assert run_inference(image="case0")[0] == EndpointCall()  # no upload: the query's image is no file of the server
    assert run_wsi_inference().upload == "/tmp/tmpzz99yy88.png"  # through infer_wsi
    assert impostor() is None and app_infer() is None  # outside an endpoint: only datastore ids are served


@pytest.mark.parametrize("file, label, files", [
    (SimpleNamespace(filename="scan.png"), None, ("/tmp/tmpab12cd34.png",)),
    (SimpleNamespace(filename="scan.png"), SimpleNamespace(filename="m.nii.gz"),
     ("/tmp/tmpab12cd34.png", "/tmp/tmplabel99.nii.gz")),
    (None, SimpleNamespace(filename="m.nii.gz"), ("/tmp/tmplabel99.nii.gz",)),
    (None, None, ()),
])
def test_the_files_the_endpoint_saved_are_its_upload_and_label(file, label, files) -> None:
    """The app removes them when it refuses the request (MONAI Label only after a successful answer)."""
    call, _ = run_inference(file=file, image="case0", label=label)
    assert call.files == files


def test_the_upload_and_datastore_ids_are_served() -> None:
    call, image = run_inference(file=SimpleNamespace(filename="scan.png"))
    served = requested_image(image, call, lambda: IDS)
    assert (served.name, served.is_datastore_id) == ("the uploaded file 'scan.png'", False)
    call, image = run_inference(image="case1")
    served = requested_image(image, call, lambda: IDS)
    assert (served.name, served.is_datastore_id) == ("image 'case1'", True)
    call, image = run_inference(image="", session_id="s1")
    assert requested_image("/sessions/s1/image.png", call, lambda: IDS).name == "the image of session 's1'"


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", __file__])
def test_a_server_path_is_a_404_naming_it_even_where_the_file_exists(path) -> None:
    """The app checked the datastore only for images that were no existing path: any file was classified."""
    call, image = run_inference(image=path)
    with pytest.raises(RequestRefused) as refused:
        requested_image(image, call, lambda: IDS)
    assert (refused.value.status, refused.value.detail) == (404, f"no image {path!r} in the datastore")


def test_a_path_in_params_over_an_upload_is_refused() -> None:
    """MONAI Label merges params over the endpoint's dict: {"image": path} replaced the upload's file."""
    call, image = run_inference(file=SimpleNamespace(filename="scan.png"), params_image=__file__)
    assert image == __file__
    with pytest.raises(RequestRefused, match="no image .* in the datastore"):
        requested_image(image, call, lambda: IDS)
    call, image = run_inference(params_image="/tmp/tmpab12cd34.png")  # another request's upload, named
    with pytest.raises(RequestRefused, match="no image '/tmp/tmpab12cd34.png' in the datastore"):
        requested_image(image, call, lambda: IDS)
    with pytest.raises(RequestRefused, match="no image '/tmp/tmpab12cd34.png'"):
        requested_image("/tmp/tmpab12cd34.png", None, lambda: IDS)  # outside an endpoint


@pytest.mark.parametrize("image, session_id, status, detail", [
    ("", "", 422, "no image: give image=<id> of the datastore or upload a file"),
    ("", "s9", 404, "no session 's9'"),
    (["case0"], "", 422, "'image' must be an image id of the datastore, got ['case0']"),
])
def test_no_usable_image_is_a_client_error(image, session_id, status, detail) -> None:
    call, _ = run_inference(session_id=session_id)
    with pytest.raises(RequestRefused) as refused:
        requested_image(image, call, lambda: IDS)
    assert (refused.value.status, refused.value.detail) == (status, detail)


@pytest.mark.parametrize("value, expected", [(True, True), (False, False), ("yes", True), ("False", False),
                                             ("1", True), (0, False)])
def test_yes_no_params_read_with_the_bundles_words(value, expected) -> None:
    assert request_flag({"heatmap": value}, "heatmap") is expected
    assert request_flag({}, "heatmap") is False


@pytest.mark.parametrize("value", ["maybe", "", 2, None])
def test_other_yes_no_values_are_refused_not_read_as_false(value) -> None:
    with pytest.raises(RequestRefused) as refused:
        request_flag({"heatmap": value}, "heatmap")
    assert refused.value.status == 422
    assert refused.value.detail.startswith("params: heatmap must be one of true/yes/1/false/no/0")
    assert repr(value) in refused.value.detail


def test_server_paths_are_named_as_the_client_knows_them() -> None:
    text = "/tmp/tmpkfq_rnuh.png: cannot decode (ValueError: '/tmp/tmpkfq_rnuh.png' is no image)"
    assert shown_to_client(text, {"/tmp/tmpkfq_rnuh.png": "the uploaded file"}) == \
        "the uploaded file: cannot decode (ValueError: the uploaded file is no image)"
    assert shown_to_client("/data/a.png and /data/a.png.bak", {"/data/a.png": "A", "/data/a.png.bak": "B"}) == \
        "A and B"



@pytest.mark.parametrize("quote", ["'", '"'])
def test_a_quoted_path_is_replaced_with_its_quotes(quote: str) -> None:
    """PIL's message for a non-image upload read "cannot identify image file 'the uploaded file 'notes.png''"."""
    text = f"cannot identify image file {quote}/tmp/tmpab12.png{quote}"
    assert shown_to_client(text, {"/tmp/tmpab12.png": "the uploaded file 'notes.png'"}) == \
        "cannot identify image file the uploaded file 'notes.png'"


PNG = b"\x89PNG\r\n\x1a\n" + bytes(24)
DICOM = bytes(128) + b"DICM" + bytes(16)


@pytest.mark.parametrize("name, content, read_as", [
    ("tmpab12.nii.gz", PNG, ".png"),                    # MONAI Label's name for an upload sent without a file name
    ("tmpab12.nii.gz", b"\xff\xd8\xff\xe0" + bytes(16), ".jpg"),
    ("tmpab12.nii.gz", DICOM, ".dcm"),
    ("tmpab12.nii", b"II*\x00" + bytes(16), ".tif"),
    ("tmpab12.nii.gz", b"GIF89a" + bytes(16), ".gif"),  # formats the reader takes: they were "not a gzip file"
    ("tmpab12.nii.gz", b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(8), ".webp"),
    ("tmpab12.nii.gz", b"RIFF\x10\x00\x00\x00WAVEfmt " + bytes(8), None),  # a RIFF of another kind: not a picture
    ("tmpab12.nii.gz", b"\x1f\x8b\x08" + bytes(16), None),  # gzip: left to the reader, which names the format
    ("tmpab12.nii.gz", b"meeting notes", None),
    ("tmpab12.png", DICOM, None),                       # a named upload keeps its name: the reader sniffs DICOM itself
])
def test_an_upload_named_nifti_by_default_is_read_by_its_content(tmp_path, name: str, content: bytes,
                                                                 read_as: str | None) -> None:
    upload = tmp_path / name
    upload.write_bytes(content)
    with named_by_content(str(upload)) as path:
        assert Path(path).read_bytes() == content
        assert (Path(path).suffix == read_as and path != str(upload)) if read_as else path == str(upload)
    assert not Path(path).exists() if read_as else upload.is_file()
    assert upload.is_file()  # MONAI Label removes its own file


@pytest.mark.parametrize("name, content, read_as", [
    ("tmpab12", DICOM, ".dcm"),                       # a DICOM export's IM0001: the datastore lists no such name
    ("tmpab12.2.840.113619.2.55.3", DICOM, ".dcm"),   # a UID name: MONAI Label took its digits for a suffix
    ("tmpab12.Png", PNG, ".png"),
    ("tmpab12.txt", b"meeting notes", None),          # not an image: kept for the check to refuse by its name
    ("tmpab12.left.png", PNG, None),                  # a listed name stays
])
def test_an_image_upload_under_a_name_the_datastore_does_not_list_is_named_by_its_content(
        tmp_path, name: str, content: bytes, read_as: str | None) -> None:
    upload = tmp_path / name
    upload.write_bytes(content)
    with named_by_content(str(upload), lambda file: file.endswith(".png")) as path:
        assert Path(path).suffix == read_as if read_as else path == str(upload)


def test_content_suffix_of_a_short_file_is_none(tmp_path) -> None:
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    assert content_suffix(tmp_path / "empty.nii.gz") is None
