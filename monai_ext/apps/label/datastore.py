"""What the app asks of MONAI Label's datastore: which files it lists, and which saved labels each train task reads.

Nothing here imports MONAI Label: the functions take any object with the ``Datastore`` interface's methods, so the
main environment tests them.

Two label tags keep an image's class and its mask apart. MONAI Label keeps one label per image and tag, and its
stock clients save masks under ``final``; a class label saved under ``final`` too would replace the image's mask (or
the mask the class), and one of the two training sets would lose the image in silence. Class labels therefore go
under :data:`CLASS_TAG`; class files saved under ``final`` before that (JSON or text, not an image) are still read.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
from pathlib import Path
from typing import Any, Protocol

from monai_ext.apps.label.infer_request import shown_to_client
from monai_ext.io.errors import UnreadableImageError
from monai_ext.io.images import IMAGE_SUFFIXES, read_image

logger = logging.getLogger(__name__)

#: MONAI Label's tag of finished labels: its clients save masks under it.
FINAL_TAG = "final"
#: This app's tag of class labels (``PUT /datastore/label?image=<id>&tag=class``).
CLASS_TAG = "class"
# MONAI Label's default datastore patterns omit DICOM, JPEG spelled .jpeg, BMP and .tiff. It matches them case by
# case (fnmatch on Linux), and scanners and PACS exports write IMG0001.JPG and US4.DCM: both spellings are listed.
_SUFFIXES = ["png", "jpg", "jpeg", "bmp", "tif", "tiff", "dcm"]
IMAGE_PATTERNS = [f"*.{suffix}" for suffix in _SUFFIXES] + [f"*.{suffix.upper()}" for suffix in _SUFFIXES]
#: the suffixes of :data:`IMAGE_PATTERNS`, compared in lower case (an upload's ``scan.Png`` is stored as ``scan.png``)
_LISTED_SUFFIXES = {f".{suffix}" for suffix in _SUFFIXES}
#: the datastore's own record, beside the images
_DATASTORE_FILES = {"datastore_v2.json", "datastore.json"}
#: label maps that viewers save (3D Slicer's MONAI Label module saves .nii.gz): masks, never class files
_LABEL_MAP_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".seg.nrrd", ".mha", ".mhd", ".dcm")
#: the suffixes of labels the app is sent besides pictures (:data:`IMAGE_PATTERNS`): class files (JSON or text, as the
#: README saves them) and label maps, longest first (``.seg.nrrd`` before ``.nrrd``)
_LABEL_SUFFIXES = tuple(sorted({".json", ".txt", *_LABEL_MAP_SUFFIXES} - {".dcm"}, key=len, reverse=True))
#: volumes a viewer uploads as an image: 3D Slicer's MONAI Label module saves the image it shows as one (NIfTI by
#: default) and sends that, never the picture it opened
_VOLUME_SUFFIXES = tuple(suffix for suffix in _LABEL_MAP_SUFFIXES if suffix != ".dcm")
#: The label folders' patterns beyond the images': MONAI Label lists label files with the image patterns, so that
#: class files and NIfTI masks vanished from the datastore's record when it rebuilt it (a deleted datastore_v2.json).
LABEL_PATTERNS = [f"*{suffix}" for suffix in _LABEL_SUFFIXES] + [f"*{suffix.upper()}" for suffix in _LABEL_SUFFIXES]
#: a label tag names a folder under ``labels/``: ``..`` put a label over the image itself, ``../../x`` outside
_TAG = re.compile(r"[A-Za-z0-9_-]+")


class LabelStore(Protocol):
    """The part of MONAI Label's ``Datastore`` interface the train tasks use."""

    def list_images(self) -> list[str]: ...

    def get_image_uri(self, image_id: str) -> str: ...

    def get_label_uri(self, label_id: str, label_tag: str) -> str: ...


def is_labelled(labels: dict[str, Any], label_tag: str | None = None) -> bool:
    """Whether an image with these saved labels (tag -> label) is done: it has a label under ``label_tag`` where a
    client asks about one tag, else under :data:`FINAL_TAG` (a mask) or :data:`CLASS_TAG` (a class).

    MONAI Label's local datastore counts ``final`` labels only: an image given its class under this app's tag stayed
    "unlabelled", so Next Sample kept offering it and the datastore's ``completed`` count stayed 0.
    """
    tags = (label_tag,) if label_tag else (FINAL_TAG, CLASS_TAG)
    return any(labels.get(tag) for tag in tags)


def served_names(names: dict[str, str]) -> dict[str, str]:
    """The datastore's listing (name -> file) less hidden files: macOS's ``._case0.png`` companions, copied onto
    SMB or exFAT shares beside every image, match ``*.png`` but are no images."""
    return {name: file for name, file in names.items() if not name.startswith(".")}


def unlisted_files(studies: Path) -> list[str]:
    """The files directly in ``studies`` that the datastore will not list (it takes files by suffix only, from
    :data:`IMAGE_PATTERNS`): a DICOM export's ``IM0001`` or ``1.2.840...`` names, ``.Png`` spellings, others."""
    if not studies.is_dir():
        return []
    return sorted(p.name for p in studies.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.name not in _DATASTORE_FILES
                  and not any(fnmatch.fnmatchcase(p.name, pattern) for pattern in IMAGE_PATTERNS))


def label_file_id(name: str) -> tuple[str, str] | None:
    """(image id, suffix) of a label file named by one of the label suffixes beyond the images' (``case.1.json``:
    ``("case.1", ".json")``), or None for another name, which MONAI Label's own rule names."""
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in IMAGE_PATTERNS):
        return None
    suffix = next((s for s in _LABEL_SUFFIXES if name.lower().endswith(s) and len(name) > len(s)), None)
    return (name[:-len(suffix)], name[-len(suffix):]) if suffix else None


def check_label_tag(tag: object) -> str:
    """``tag`` when it can name a folder under ``labels/``: letters, digits, ``_`` and ``-`` only.

    Raises:
        ValueError: any other tag (``..``, ``../x``, empty), quoting it.
    """
    if not isinstance(tag, str) or not _TAG.fullmatch(tag):
        raise ValueError(f"label tag {tag!r} is not allowed: use letters, digits, '_' and '-' only (e.g. "
                         f"{FINAL_TAG!r}, {CLASS_TAG!r})")
    return tag


def check_image_id(image_id: object) -> str:
    """``image_id`` when it can name a file directly in the studies folder: not empty, no ``/`` or ``\\``, and not
    starting with ``.`` (``.`` and ``..`` themselves, and hidden files, which the datastore does not list:
    :func:`served_names`). ``..`` inside a name (``pt1..left``, a file the datastore lists) is a name like any other.

    Raises:
        ValueError: any other id, quoting it.
    """
    if not isinstance(image_id, str) or not image_id or image_id.startswith(".") or any(
            part in image_id for part in ("/", "\\", "\0")):
        raise ValueError(f"image id {image_id!r} is not allowed: an id names a file directly in the studies "
                         "folder (no '/' or '\\', not starting with '.')")
    return image_id


def upload_image_id(file_name: str) -> str:
    """The image id of an upload the client named ``file_name`` and gave no id: the name less its image suffix, in
    any case (``scan.Png``: ``scan``), or the whole name where it has none the datastore lists (a DICOM export's
    ``IM0001`` or ``1.2.840.113619.2.55.3``, stored with ``.dcm`` added).

    MONAI Label's endpoint cut every suffix (``"".join(Path(name).suffixes)``): ``patient1.left.png`` and
    ``patient1.right.png`` were both ``patient1``, the second written over the first, and every DICOM named by its
    UID was image ``1``, each upload replacing the one before (and taking its labels).
    """
    suffix = Path(file_name).suffix
    if suffix.lower() in _LISTED_SUFFIXES and len(file_name) > len(suffix):
        return file_name[:-len(suffix)]
    return file_name


def is_listed_image(name: str) -> bool:
    """Whether the datastore lists a file of this name among its images (:data:`IMAGE_PATTERNS`)."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in IMAGE_PATTERNS)


def is_listed_label(name: str) -> bool:
    """Whether the datastore lists a label file of this name: a picture (:data:`IMAGE_PATTERNS`) or a class file or
    label map (:data:`LABEL_PATTERNS`)."""
    return is_listed_image(name) or label_file_id(name) is not None


def check_uploaded_image(path: str, shown: str) -> None:
    """Refuse an image upload at ``path`` that the datastore would not list or that does not decode, naming it by
    ``shown`` (``the uploaded file 'notes.txt'``).

    An upload was written whatever it held: a text file or a copy cut off at 0 bytes was answered HTTP 200, took a
    place in the annotators' worklist that no viewer opens, and was told apart only at training, as a skipped label.

    Raises:
        ValueError: naming ``shown`` and the reason.
    """
    if not is_listed_image(Path(path).name):
        # a Slicer upload was stored (HTTP 200) before this check: its users need to know what to send instead
        volume = ("; a volume, as 3D Slicer's MONAI Label module uploads the image it shows, is not served: send the "
                  "picture or DICOM file itself (PUT /datastore/image with that file) or copy it into the studies "
                  "folder") if path.lower().endswith(_VOLUME_SUFFIXES) else ""
        raise ValueError(f"{shown} is no image the datastore lists (PNG, JPG, BMP, TIFF or DICOM, by its name or "
                         f"content): not added{volume}")
    try:
        read_image(path)
    except UnreadableImageError as e:
        # the reader names the server's temporary file, which means nothing to the client
        raise ValueError(f"not a readable PNG/JPG/BMP/TIFF/DICOM image: {shown_to_client(str(e), {path: shown})}; "
                         "not added") from e


def stays_in(folder: str | os.PathLike, name: str) -> bool:
    """Whether the file ``name`` of ``folder`` is in that folder once links are resolved (a link in the studies
    folder to a file elsewhere would have the upload written over its target)."""
    return Path(folder, name).resolve().parent == Path(folder).resolve()


def _image_id(name: str) -> str:
    """The id MONAI Label's local datastore gives a listed file: its name less the matching suffix."""
    suffix = next(pattern[1:] for pattern in reversed(IMAGE_PATTERNS) if fnmatch.fnmatchcase(name, pattern))
    return name.replace(suffix, "")  # as LocalDatastore._to_id does


def shadowed_files(studies: Path) -> list[list[str]]:
    """Groups of listed files that share an id (``US0001.dcm`` and its ``US0001.png`` preview): the datastore keeps
    one image per id, so the others are not served."""
    if not studies.is_dir():
        return []
    by_id: dict[str, list[str]] = {}
    for p in sorted(studies.iterdir()):
        if p.is_file() and any(fnmatch.fnmatchcase(p.name, pattern) for pattern in IMAGE_PATTERNS):
            by_id.setdefault(_image_id(p.name), []).append(p.name)
    return [names for names in by_id.values() if len(names) > 1]


def images_in_subfolders(studies: Path) -> dict[str, int]:
    """Images (by suffix, any case) in sub-folders of ``studies``, counted per sub-folder: the datastore lists only
    the files directly in ``studies``, and PACS exports often come as one folder per patient. MONAI Label's own
    ``labels/`` folder and hidden folders are left out."""
    if not studies.is_dir():
        return {}
    counts = {}
    for folder in sorted(p for p in studies.iterdir() if p.is_dir() and not p.name.startswith(".")
                         and p.name != "labels"):
        n = sum(1 for _, _, files in os.walk(folder) for f in files
                if not f.startswith(".") and Path(f).suffix.lower() in {f".{s}" for s in _SUFFIXES})
        if n:
            counts[folder.name] = n
    return counts


def warn_unlisted_files(studies: Path) -> None:
    """Say which files of the studies folder annotators will not see, instead of an unexplained short worklist."""
    unlisted = unlisted_files(studies)
    if unlisted:
        logger.warning("%d file(s) in %s are not served: the datastore lists only %s, e.g. %s; give DICOM files a "
                       ".dcm suffix and other images one of those suffixes", len(unlisted), studies,
                       " ".join(IMAGE_PATTERNS[:len(_SUFFIXES)]), ", ".join(unlisted[:5]))
    nested = images_in_subfolders(studies)
    if nested:
        logger.warning("%d image(s) in sub-folders of %s are not served (the datastore lists only the files directly "
                       "in it): %s; move them up, with names that stay unique", sum(nested.values()), studies,
                       ", ".join(f"{name}/ {n}" for name, n in list(nested.items())[:5]))
    for names in shadowed_files(studies):
        logger.warning("%s in %s share the id %r: the datastore serves one of them only; rename the others",
                       ", ".join(names), studies, _image_id(names[0]))


def is_picture_mask(path: str) -> bool:
    """Whether a saved label is a picture (a PNG, JPG, BMP or TIFF mask), by its suffix."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_mask_file(path: str) -> bool:
    """Whether a saved label is a mask, a picture or a viewer's label map (NIfTI, NRRD, MetaImage, DICOM), by its
    suffix: never a class file."""
    return is_picture_mask(path) or Path(path).name.lower().endswith(_LABEL_MAP_SUFFIXES)


def class_label_items(datastore: LabelStore) -> list[dict[str, Any]]:
    """``{"image", "label", "id"}`` of every image with a class label: its :data:`CLASS_TAG` label, else a class file
    (not a mask) saved under :data:`FINAL_TAG`; ``id`` is the datastore's image id, which keeps the image's part of
    the split (:mod:`monai_ext.apps.label.split`)."""
    items = []
    for image_id in datastore.list_images():
        label = datastore.get_label_uri(image_id, CLASS_TAG)
        if not label:
            final = datastore.get_label_uri(image_id, FINAL_TAG)
            label = final if final and not is_mask_file(final) else ""
        if label:
            items.append({"image": datastore.get_image_uri(image_id), "label": label, "id": image_id})
    return items
