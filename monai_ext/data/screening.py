"""Leaving out, while a labelled set is listed, the files that cannot be images.

A folder or CSV set listed an empty file or a picture no reader recognises (a download cut off, a text file named
``.png``) like any image: it was counted in its class, stratified into a fold, and only skipped by the bundle later,
so the class counts, the folds and the test part's size were not what they said. The checks are cheap (a file's size,
a picture's header through PIL, which reads no pixels), so listing a set of thousands stays a matter of seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from monai_ext.io.dicom import has_dicom_preamble
from monai_ext.io.images import IMAGE_SUFFIXES

logger = logging.getLogger(__name__)

Item = dict[str, Any]


def why_not_an_image(path: str | Path) -> str | None:
    """Why the file at ``path`` cannot be an image (empty, unopenable, a picture whose header no reader knows), or
    None where it may be one (DICOM, NIfTI and ITK files are left to their readers: their headers cost more; a
    DICOM file under a picture's name, ``DICM`` at byte 128, is one, as the loaders read it)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        return f"cannot be opened ({e.strerror})"
    if size == 0:
        return "empty file (0 bytes)"
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return None
    if has_dicom_preamble(path):
        # a PACS export named .png or .jpg: PIL knows no DICOM header, but every loader reads it as DICOM
        # (kind_by_content); left out, a class lost the images the user had put in it, "not a picture" said of them
        return None
    try:
        with Image.open(path):  # the header only: no pixel is decoded
            return None
    except UnidentifiedImageError as e:
        return f"not a picture PIL recognises ({type(e).__name__})"
    except OSError as e:
        if e.errno is not None:  # the system's refusal (no permission, an I/O error), not the picture's: said so
            return f"cannot be opened ({e.strerror})"
        return f"not a picture PIL recognises ({type(e).__name__})"
    except ValueError as e:  # PIL's other refusals of a header
        return f"not a picture PIL recognises ({type(e).__name__})"


def leave_out_non_images(items: Sequence[Item], source: str) -> list[Item]:
    """``items`` less those whose ``image`` cannot be an image (:func:`why_not_an_image`), named in one warning.

    Args:
        items: ``{"image": path, ...}`` as a dataset lists them.
        source: the dataset (folder or CSV), named in the warning.

    Raises:
        ValueError: no item is left.
    """
    reasons = {i: why_not_an_image(item["image"]) for i, item in enumerate(items)}
    bad = {i: reason for i, reason in reasons.items() if reason}
    if not bad:
        return list(items)
    shown = "; ".join(f"{items[i]['image']!r}: {reason}" for i, reason in list(bad.items())[:5])
    if len(bad) == len(items):
        raise ValueError(f"{source}: none of its {len(items)} image file(s) can be an image, e.g. {shown}")
    logger.warning("%s: %d file(s) cannot be images and are left out of the classes and folds: %s%s", source,
                   len(bad), shown, " ..." if len(bad) > 5 else "")
    return [item for i, item in enumerate(items) if i not in bad]
