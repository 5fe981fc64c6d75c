"""What the MONAI Label app accepts of an infer request, and how its answers name the image.

MONAI Label 0.8.5's infer endpoint (``monailabel.endpoints.infer.run_inference``) hands ``app.infer`` one dict. Its
``image`` is the query's ``image`` (meant as a datastore id) or, for an upload, the temporary file the endpoint saved
it to (``tempfile.NamedTemporaryFile(suffix=...).name``), or a session's image; then the request's ``params`` JSON is
merged over the dict, so a client may set ``image`` to any text. MONAI Label reads any existing path as the image: a
client could have any file of the server classified (and its Grad-CAM sent back). The dict alone cannot tell the
endpoint's own upload from a path a client wrote, so the app looks at the endpoint's variables (its frame, found by
its code object, :func:`endpoint_call`) and serves only a datastore id or the file the endpoint made for this very
request (:func:`requested_image`); anything else is refused, and outside the endpoint only datastore ids are served.

Nothing here imports MONAI Label: the main environment tests it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

from monai_ext.apps.bundle_support import FLAG_WORDS, as_flag
from monai_ext.io.images import is_dicom_by_content

#: how many frames above ``app.infer`` the endpoint may be (MONAI Label's ``infer_wsi`` calls ``infer`` in between)
_MAX_DEPTH = 8
UPLOAD_NAME = "the uploaded file"
#: the suffix MONAI Label gives an upload sent without a file name (its endpoint's default), and plain NIfTI's
_NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: (offset, magic bytes, suffix) of the formats the app reads; DICOM PS3.10: b"DICM" after a 128-byte preamble;
#: WebP: a RIFF container whose form type, at byte 8, is WEBP
_MAGIC = ((0, b"\x89PNG\r\n\x1a\n", ".png"), (0, b"\xff\xd8\xff", ".jpg"), (128, b"DICM", ".dcm"),
          (0, b"II*\x00", ".tif"), (0, b"MM\x00*", ".tif"), (0, b"BM", ".bmp"), (0, b"GIF87a", ".gif"),
          (0, b"GIF89a", ".gif"), (8, b"WEBP", ".webp"))


class RequestRefused(Exception):
    """An infer request the app refuses; the app answers it with ``status`` and ``detail``.

    Args:
        status: the HTTP status (4xx).
        detail: the reason, for the client.
    """

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class EndpointCall:
    """What MONAI Label's infer endpoint made of the HTTP request (its own variables, never the client's params).

    Attributes:
        upload: the temporary file it saved this request's upload to, or None without an upload.
        upload_name: the client's name of the uploaded file ("" when it sent none).
        session_id: the request's ``session_id`` ("" without one).
        session_image: the image file of that session, when the session exists.
        output: the requested ``output`` (``json``, ``image``, ``all``, ...), or None.
        label: the temporary file it saved this request's ``label`` upload to, or None without one.
    """

    upload: str | None = None
    upload_name: str = ""
    session_id: str = ""
    session_image: str | None = None
    output: str | None = None
    label: str | None = None

    @property
    def files(self) -> tuple[str, ...]:
        """The temporary files the endpoint saved for this request, which MONAI Label removes only after a
        successful answer (:mod:`monai_ext.apps.label.uploads`)."""
        return tuple(path for path in (self.upload, self.label) if path)


@dataclass(frozen=True)
class RequestedImage:
    """The image an accepted request names.

    Attributes:
        name: how answers name it: ``image 'case0'`` or ``the uploaded file 'scan.png'``.
        is_datastore_id: True for an image id of the datastore; False for the endpoint's upload or session file.
    """

    name: str
    is_datastore_id: bool


def endpoint_call(frame: FrameType | None, endpoints: Collection[CodeType]) -> EndpointCall | None:
    """The endpoint's view of the request, read from the first of ``frame`` and its callers that runs one of
    ``endpoints`` (compared by identity, so a function of the same name elsewhere is no endpoint).

    Args:
        frame: the frame of ``app.infer``'s caller.
        endpoints: the code objects of MONAI Label's endpoint functions (``run_inference.__code__``, ...).

    Returns:
        None when ``app.infer`` was not called by an endpoint (batch inference, MONAI Label's command line).
    """
    depth = 0
    while frame is not None and depth < _MAX_DEPTH:
        if any(frame.f_code is code for code in endpoints):
            local = frame.f_locals
            file, session, output = local.get("file"), local.get("session"), local.get("output")
            # image_file is set only where the endpoint saved an upload; file is the client's UploadFile
            upload = local.get("image_file") if file else None
            label = local.get("label_file") if local.get("label") else None  # likewise for the label upload
            return EndpointCall(
                upload=str(upload) if upload else None,
                upload_name=str(getattr(file, "filename", "") or ""),
                session_id=str(local.get("session_id") or ""),
                session_image=str(session.image) if session is not None and getattr(session, "image", None) else None,
                output=getattr(output, "value", output),  # MONAI Label's ResultType enum, or None
                label=str(label) if label else None,
            )
        frame, depth = frame.f_back, depth + 1
    return None


def requested_image(image: Any, call: EndpointCall | None,
                    datastore_ids: Callable[[], Collection[str]]) -> RequestedImage:
    """Accept ``image`` when it is an id of the datastore, or the file the endpoint made for this request (its upload
    or its session's image); refuse anything else, a path on the server above all.

    Args:
        image: the request's ``image``.
        call: the endpoint's view of the request (:func:`endpoint_call`); None outside an endpoint.
        datastore_ids: lists the datastore's image ids (called only when ``image`` is not the endpoint's file).

    Raises:
        RequestRefused: 404 for an id the datastore lacks (a path included: it is no id), naming it; 422 for no
            image or an image that is not text.
    """
    if not isinstance(image, str):
        raise RequestRefused(422, f"'image' must be an image id of the datastore, got {image!r}")
    if call is not None and image:
        if image == call.upload:
            return RequestedImage(f"{UPLOAD_NAME} {call.upload_name!r}" if call.upload_name else UPLOAD_NAME, False)
        if image == call.session_image:
            return RequestedImage(f"the image of session {call.session_id!r}", False)
    if not image:
        if call is not None and call.session_id:
            raise RequestRefused(404, f"no session {call.session_id!r}")
        raise RequestRefused(422, "no image: give image=<id> of the datastore or upload a file")
    if image in datastore_ids():
        return RequestedImage(f"image {image!r}", True)
    raise RequestRefused(404, f"no image {image!r} in the datastore")


def request_flag(request: Mapping[str, Any], name: str, default: bool = False) -> bool:
    """A yes/no request param (``{"heatmap": true}`` or a form's ``"true"``) read with the bundles' yes/no words.

    Raises:
        RequestRefused: 422 for another value (``"maybe"`` was read as false: the client got no heat map, unsaid).
    """
    try:
        return as_flag(request.get(name, default), name)
    except ValueError as e:
        raise RequestRefused(422, f"params: {name} must be one of {'/'.join(FLAG_WORDS)} (or a JSON true/false), "
                                  f"got {request.get(name)!r}") from e


def shown_to_client(text: str, paths: Mapping[str, str]) -> str:
    """``text`` with each server path of ``paths`` replaced by its name for the client (the temporary file of an
    upload by "the uploaded file", a datastore image's file by its id): the server's file layout is not the
    client's business, and the temporary name means nothing to it.

    A quoted path is replaced with its quotes: the names quote what they name (``the uploaded file 'notes.png'``),
    and a reader's ``cannot identify image file '<path>'`` read ``... file 'the uploaded file 'notes.png''``."""
    for path, name in sorted(paths.items(), key=lambda item: -len(item[0])):  # a longer path before its prefix
        if path:
            text = text.replace(f"'{path}'", name).replace(f'"{path}"', name).replace(path, name)
    return text


def content_suffix(path: str | Path) -> str | None:
    """The suffix of the image format ``path``'s first bytes show (``.png``, ``.jpg``, ``.dcm``, ``.tif``,
    ``.bmp``), or None for none of them."""
    with open(path, "rb") as f:
        head = f.read(132)
    return next((suffix for offset, magic, suffix in _MAGIC if head[offset:offset + len(magic)] == magic), None)


@contextmanager
def named_by_content(upload: str, listed: Callable[[str], bool] | None = None) -> Iterator[str]:
    """The upload's path for the image reader: as it is, or a copy named by its content when MONAI Label named it
    ``.nii.gz`` only because the client sent no file name, or, given ``listed`` (which tells the file names the
    datastore lists), when its name is not one of those (a mask sent as ``mask``, an image as ``IM0001``).

    MONAI Label saves an upload under the suffix of the client's file name, ``.nii.gz`` when there is none, and the
    reader goes by the suffix: a valid PNG sent without a name was refused as "not a gzip file". The app serves no
    NIfTI, so a NIfTI-named upload whose bytes begin as a PNG, JPEG, DICOM, TIFF, BMP, GIF or WebP is read as
    that; the copy is removed on leaving. The datastore lists images by their suffix only: an image uploaded as a
    DICOM export names it (``IM0001``, ``1.2.840.113619.2.55.3``, which MONAI Label took for suffix ``.3``) or as
    ``scan.Png`` was written under a name it does not list, and lost from it once its record was rebuilt; a DICOM without
    the b"DICM" preamble, as such exports write them, is told by its first element
    (:func:`~monai_ext.io.images.is_dicom_by_content`).
    """
    renamed = upload.endswith(_NIFTI_SUFFIXES) or (listed is not None and not listed(Path(upload).name))
    suffix = _suffix_by_content(upload) if renamed and Path(upload).is_file() else None
    if suffix is None:
        yield upload
        return
    folder = tempfile.mkdtemp(prefix="upload_")
    try:
        named = Path(folder) / f"upload{suffix}"
        shutil.copyfile(upload, named)
        yield str(named)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _suffix_by_content(path: str) -> str | None:
    """:func:`content_suffix`, or ``.dcm`` for a DICOM file without the preamble under a name without a suffix."""
    return content_suffix(path) or (".dcm" if is_dicom_by_content(path) else None)
