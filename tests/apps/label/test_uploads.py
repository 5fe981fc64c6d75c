"""The app's removal of MONAI Label's temporary upload files (apps/label/uploads.py): only the file the endpoint saved,
only when the request fails."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from types import SimpleNamespace

import pytest

from monai_ext.apps.label.uploads import discard, discarded_on_failure, endpoint_file_name, endpoint_upload


def datastore_method(path: str) -> list[str]:
    """Stands for the app's datastore method: reads the endpoint from its caller's frame, as the app does."""
    frame = sys._getframe(1)
    try:
        return endpoint_upload(frame, ENDPOINTS, path)
    finally:
        del frame


def save_label(label_file: str, given: str) -> list[str]:
    """Stands for MONAI Label's datastore endpoint: ``label_file`` is its saved upload, ``given`` what it hands on."""
    return datastore_method(given)


def script(label_file: str, given: str) -> list[str]:
    """Has the endpoint's variable names but is no endpoint (a script calling the datastore)."""
    return datastore_method(given)


ENDPOINTS = {save_label.__code__: "label_file"}


@pytest.mark.parametrize("caller, saved, given, expected", [
    (save_label, "/tmp/tmpab.json", "/tmp/tmpab.json", ["/tmp/tmpab.json"]),
    (save_label, "/tmp/tmpab.json", "/data/own.json", []),  # not the endpoint's file
    (save_label, "", "", []),
    (script, "/tmp/tmpab.json", "/tmp/tmpab.json", []),  # found by its code, not its variables' names
])
def test_only_the_endpoints_own_upload_is_named(caller, saved, given, expected) -> None:
    assert caller(saved, given) == expected


@pytest.mark.parametrize("fails", [True, False])
def test_files_are_removed_when_the_block_fails_and_kept_when_it_ends_well(tmp_path, fails) -> None:
    files = [tmp_path / "upload.png", tmp_path / "label.json"]
    for path in files:
        path.write_bytes(b"x")
    with pytest.raises(KeyError) if fails else nullcontext():
        with discarded_on_failure([str(p) for p in files]):
            if fails:
                raise KeyError("refused")
    assert [p.exists() for p in files] == [not fails] * 2


def test_discarding_a_file_already_gone_is_no_error(tmp_path) -> None:
    kept = tmp_path / "other.png"
    kept.write_bytes(b"x")
    discard([str(tmp_path / "gone.png")])
    assert kept.exists()



def add_image(image_file: str, image: str | None, file: SimpleNamespace) -> tuple[str, bool] | None:
    """Stands for MONAI Label's add_image endpoint: ``image`` is the request's id, ``file`` the client's upload."""
    frame = sys._getframe(0)
    try:
        return endpoint_file_name(frame, {add_image.__code__: "image_file"}, image_file)
    finally:
        del frame


@pytest.mark.parametrize("image, filename, expected", [
    (None, "patient1.left.png", ("patient1.left.png", False)),
    ("given", "patient1.left.png", ("patient1.left.png", True)),
    (None, None, ("", False)),  # sent without a file name
    (None, "C:/exports/IM0001", ("IM0001", False)),
])
def test_the_clients_file_name_of_an_image_upload_is_read_from_the_endpoint(image, filename, expected) -> None:
    assert add_image("/tmp/tmpab.png", image, SimpleNamespace(filename=filename)) == expected


def test_a_file_that_is_not_the_endpoints_upload_has_no_client_name() -> None:
    assert endpoint_file_name(sys._getframe(0), {add_image.__code__: "image_file"}, "/data/own.png") is None
