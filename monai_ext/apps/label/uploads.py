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
    depth = 0
    while frame is not None and depth < _MAX_DEPTH:
        variable = next((name for code, name in endpoints.items() if frame.f_code is code), None)
        if variable is not None:
            return [path] if path and frame.f_locals.get(variable) == path else []
        frame, depth = frame.f_back, depth + 1
    return []
