"""The temporary files MONAI Label's endpoints save uploads to, removed by the app when it refuses the request.

MONAI Label 0.8.5's endpoints (infer, WSI infer, the datastore's image and label uploads) copy each upload to
``tempfile.NamedTemporaryFile(suffix=...).name`` and remove it in a FastAPI background task. Background tasks run only
after a successful answer: every upload the app refused (an unreadable image, an unknown model or image id, a bad
label tag, a model that gave NaN) stayed in the temporary folder for good, and a long-running server, or a client
sending large files that are refused, filled the disk. The app therefore removes the endpoint's files itself on the
way out of a failed request, and only those: a file handed to the datastore by a script is the caller's.

Nothing here imports MONAI Label: the main environment tests it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from types import CodeType, FrameType

#: how many frames above the datastore's method the endpoint may be (it calls the datastore directly)
_MAX_DEPTH = 4


def discard(paths: Collection[str]) -> None:
    """Remove ``paths``; one already gone (an inner refusal removed it) or never written is no error."""
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)


@contextmanager
def discarded_on_failure(paths: Collection[str]) -> Iterator[None]:
    """Remove ``paths`` when the block raises (the exception then goes on); keep them when it ends well, for MONAI
    Label's background task to remove after its answer."""
    try:
        yield
    except BaseException:
        discard(paths)
        raise


def endpoint_upload(frame: FrameType | None, endpoints: Mapping[CodeType, str], path: str) -> list[str]:
    """``[path]`` when ``path`` is the temporary file that one of ``endpoints`` saved its upload to, else ``[]``.

    Args:
        frame: the frame of the datastore method's caller.
        endpoints: MONAI Label's endpoint functions' code objects (compared by identity), each with the name of its
            variable that holds the saved upload (``image_file``, ``label_file``).
        path: the file the datastore method was given.
    """
    return [path] if _endpoint_frame(frame, endpoints, path) is not None else []


def endpoint_file_name(frame: FrameType | None, endpoints: Mapping[CodeType, str],
                       path: str) -> tuple[str, bool] | None:
    """(the client's name of the file that one of ``endpoints`` saved at ``path``, "" where it sent none; whether
    the request gave the image id, ``image=``), or None where ``path`` is no endpoint's upload (a script's file).

    MONAI Label's ``add_image`` endpoint makes an id that the request does not give by cutting every suffix off the
    name (``"".join(suffixes)``): the app needs the name itself to give the image its own id
    (:func:`~monai_ext.apps.label.datastore.upload_image_id`).

    Args:
        frame: the frame of the datastore method's caller.
        endpoints: as :func:`endpoint_upload`'s.
        path: the file the datastore method was given.
    """
    found = _endpoint_frame(frame, endpoints, path)
    if found is None:
        return None
    name = getattr(found.f_locals.get("file"), "filename", None)
    return (os.path.basename(str(name)) if name else "", bool(found.f_locals.get("image")))


def _endpoint_frame(frame: FrameType | None, endpoints: Mapping[CodeType, str], path: str) -> FrameType | None:
    """The first of ``frame`` and its callers that runs one of ``endpoints`` with ``path`` as its saved upload, or
    None (no endpoint within :data:`_MAX_DEPTH` frames, or one whose upload is another file)."""
    depth = 0
    while frame is not None and depth < _MAX_DEPTH:
        variable = next((name for code, name in endpoints.items() if frame.f_code is code), None)
        if variable is not None:
            return frame if path and frame.f_locals.get(variable) == path else None
        frame, depth = frame.f_back, depth + 1
    return None
