"""DICOM frames as displayed, with pydicom: the pixel pipeline of DICOM PS3.4 N.2 up to the presentation.

For each frame: the stored values (``BitsStored`` bits at ``HighBit``; bits outside them masked, signed values
sign-extended), then for monochrome images the modality LUT (``ModalityLUTSequence`` or ``RescaleSlope`` /
``RescaleIntercept``), the VOI LUT (``VOILUTSequence``, else the first ``WindowCenter`` / ``WindowWidth``), scaled by
the output range of that chain (the one pydicom's windowing uses) and inverted for MONOCHROME1; palette colour
through its LUT; YBR_FULL and YBR_FULL_422 converted to RGB by pydicom's ``convert_color_space`` (YBR_ICT / YBR_RCT
by the JPEG 2000 codec), planar configuration undone by pydicom. The result is display-ready in the sense of
:mod:`monai_ext.io.display`.

pydicom 2.4 is supported too: MONAI Label's environment pins it (``pydicom-seg`` imports 2.x-only modules). There
``pixel_array`` neither masks unused bits nor converts YBR, so both are done here for either version, and lossy
JPEG is decoded by the same codec (pylibjpeg) in both: a file gives the same pixels in either environment.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import numpy as np

from monai_ext.io.dicom_frames import (
    begins_rle_frame,
    encapsulated_value,
    first_fragment,
    fragments_before_cut,
    frame_count,
    native_pixel_data_cut,
    reconcile_frame_count,
    whole_frame_fragments,
)
from monai_ext.io.errors import UnreadableImageError, one_line
from monai_ext.io.once import warn_once

__all__ = ["DICOM_SUFFIXES", "dicom_display", "first_dicom_frame", "has_dicom_preamble", "has_dicom_signature",
           "iter_dicom_frames", "non_tissue_region_kinds", "read_dicom", "read_dicom_header", "square_pixel_shape",
           "ultrasound_region_box", "ultrasound_region_boxes"]

DICOM_SUFFIXES = (".dcm", ".dicom")
#: DICOM PS3.10 7.1: a 128-byte preamble, then the magic b"DICM" at bytes 128-131.
_MAGIC_OFFSET, _MAGIC = 128, b"DICM"
#: Colour encodings converted to RGB here (YBR_ICT / YBR_RCT come back RGB from the JPEG 2000 codec).
_YBR_TO_CONVERT = ("YBR_FULL", "YBR_FULL_422")
#: Transfer syntaxes by codec family (UIDs, as pydicom 2.4 and 3 name some of them differently): JPEG Baseline and
#: Extended, whose YCbCr is full range whatever a YBR label says (:func:`_codestream_photometric`); JPEG 2000 and
#: HTJ2K, whose codec undoes the YBR_ICT / YBR_RCT colour transforms; these and JPEG Lossless, whose decoders give
#: interleaved samples whatever ``PlanarConfiguration`` says (PS3.5 8.2.1: it is irrelevant for them).
_JPEG_LOSSY_SYNTAXES = frozenset(f"1.2.840.10008.1.2.4.{n}" for n in (50, 51))
_J2K_SYNTAXES = frozenset(f"1.2.840.10008.1.2.4.{n}" for n in (90, 91, 201, 202, 203))
_INTERLEAVED_CODEC_SYNTAXES = _JPEG_LOSSY_SYNTAXES | _J2K_SYNTAXES | {f"1.2.840.10008.1.2.4.{n}" for n in (57, 70)}
#: The syntaxes pylibjpeg decodes with libjpeg (JPEG Baseline, Extended, Lossless and JPEG-LS): pydicom 2.4 passes it
#: the header's ``PhotometricInterpretation``, and libjpeg converts a stream labelled RGB from YCbCr (see
#: :func:`_decoded_frames`).
_LIBJPEG_SYNTAXES = _JPEG_LOSSY_SYNTAXES | {f"1.2.840.10008.1.2.4.{n}" for n in (57, 70, 80, 81)}


def _pixel_tools() -> SimpleNamespace:
    """pydicom's pixel functions, from ``pydicom.pixels`` (3.x) or ``pixel_data_handlers.util`` (2.4)."""
    try:
        from pydicom.pixels import (
            apply_color_lut,
            apply_modality_lut,
            apply_windowing,
            convert_color_space,
            iter_pixels,
            pixel_array,
        )
    except ImportError:  # pydicom 2.4 (MONAI Label's environment)
        from pydicom.pixel_data_handlers.util import (
            apply_color_lut,
            apply_modality_lut,
            apply_windowing,
            convert_color_space,
        )

        iter_pixels = pixel_array = None
    return SimpleNamespace(apply_color_lut=apply_color_lut, apply_modality_lut=apply_modality_lut,
                           apply_windowing=apply_windowing, convert_color_space=convert_color_space,
                           iter_pixels=iter_pixels, pixel_array=pixel_array)


def has_dicom_preamble(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a DICOM file by its content: b"DICM" at bytes 128-131 (PS3.10), as files named by their
    instance number or UID (``IM0001`` of a DICOMDIR / CD export, PACS dumps) are recognised without a suffix.

    Reads 132 bytes at most; False for anything that cannot be opened (a folder, a missing file, no permission).
    """
    return _file_head(path)[_MAGIC_OFFSET:] == _MAGIC


def _file_head(path: str | os.PathLike) -> bytes:
    """The first 132 bytes of ``path`` (fewer for a short file; none for what cannot be opened or is no regular
    file: opening a named pipe left in an acquisition folder would wait for a writer for ever)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return b""
        with open(path, "rb") as f:
            return f.read(_MAGIC_OFFSET + len(_MAGIC))
    except OSError:
        return b""


def has_dicom_signature(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds DICOM by its content: b"DICM" at bytes 128-131 (:func:`has_dicom_preamble`), or a bare
    data set (no preamble, no File Meta Information: ACR-NEMA-style exports) whose first element is in group 0008,
    the test dcm2niix's ``isDICOMfile`` makes (little endian ``08 00 xx 00``; big endian ``00 08 00 xx`` here too),
    or File Meta Information written without the preamble (group 0002, always little endian: ``02 00 xx 00``).

    For files named without an image suffix (:func:`monai_ext.io.images.is_dicom_by_content`, which asks the
    bare data set test of names without any suffix only); one recognised by its first element still needs pixel
    data to be read
    (:func:`read_dicom`), so a stray binary file that happens to start so is refused with a reason.
    """
    head = _file_head(path)
    if head[_MAGIC_OFFSET:] == _MAGIC:
        return True
    little, big = head[:2] == b"\x08\x00" and head[3:4] == b"\x00", head[:3] == b"\x00\x08\x00"
    meta = head[:2] == b"\x02\x00" and head[3:4] == b"\x00"
    return len(head) == _MAGIC_OFFSET + len(_MAGIC) and (little or big or meta)


def read_dicom_header(path: str | os.PathLike) -> Any:
    """The dataset without its pixel data (cheap: for filters that need no decoding); read as :func:`read_dicom`."""
    return _dcmread(path, header_only=True)


def read_dicom(path: str | os.PathLike) -> Any:
    """The whole dataset, checked to be decodable as far as its header tells.

    Read as DICOM readers of scanner archives (dcm2niix, GDCM) read: a file without the 128-byte preamble and
    b"DICM" (an ACR-NEMA-style or raw data set export) is parsed as a bare data set, and a file without
    ``TransferSyntaxUID`` takes the encoding found while parsing it. Only files already taken for DICOM (by their
    suffix, or by their content under any other name: :func:`monai_ext.io.images.is_dicom_by_content`) come here,
    and one that parses to no pixel data is refused, so a stray non-DICOM file named ``.dcm`` gives a reason, not
    garbage pixels.

    Raises:
        UnreadableImageError: naming the file and the reason: not DICOM, no (integer) pixel data, an empty Pixel
            Data element, a required Image Pixel attribute missing or not an integer, pixel data shorter than its
            header says, compressed pixel data without a transfer syntax, a transfer syntax no installed codec
            decodes, or a colour encoding not converted to RGB here.
    """
    ds = _dcmread(path)
    if "PixelData" not in ds:
        ds = _with_cut_pixel_data_recovered(ds, path)
    if "PixelData" not in ds:
        raise UnreadableImageError(f"{path}: {_why_no_pixel_data(ds, path)}")
    if not ds.PixelData:  # present but empty (pydicom gives None): counting its frames crashed on len(None)
        raise UnreadableImageError(f"{path}: its Pixel Data element is empty")
    _upper_case_photometric(ds, str(path))
    _fill_pixel_defaults(ds)
    _check_pixel_module(ds, str(path))
    _promote_functional_groups(ds, str(path))
    _repair_presentation(ds, str(path))
    _fill_transfer_syntax(ds, str(path))
    _match_transfer_syntax_to_pixel_data(ds, str(path))
    _match_samples_to_codestream(ds, str(path))
    _fill_planar_configuration(ds, str(path))
    _check_codec(ds, str(path))  # first: the fragments of a video syntax (MPEG, H.264) are not frames to count
    _relabel_three_sample_monochrome(ds, str(path))
    _check_colour_encoding(ds, str(path))  # before the length check, which subsampled YBR_PARTIAL data would fail
    reconcile_frame_count(ds, str(path))
    _check_pixel_length(ds, str(path))
    square_pixel_shape(ds, str(path))  # worked out (and said) once, with the file's name
    return ds


#: SOP classes of DICOM files that hold no image by design, named in the reason a corpus report gives.
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
_STRUCTURED_REPORT_PREFIX = "1.2.840.10008.5.1.4.1.1.88."


def _why_no_pixel_data(ds: Any, path: str | os.PathLike) -> str:
    """Why a DICOM file without pixel data has none: a DICOMDIR, a report and a file cut short in its header were
    all "no pixel data", which sent users looking for a codec."""
    meta = getattr(ds, "file_meta", None)
    sop_class = str(ds.get("SOPClassUID", "") or (meta.get("MediaStorageSOPClassUID", "") if meta else ""))
    if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
        return "DICOM file has float pixel data (a parametric map, not an image)"
    if sop_class == _DICOMDIR_CLASS:
        return "a DICOMDIR (the directory of a CD or export), not an image: the images are the files it lists"
    if sop_class.startswith(_STRUCTURED_REPORT_PREFIX) and sop_class != _KEY_OBJECT_SELECTION_CLASS:
        return "a DICOM structured report (measurements as text), not an image"
    if len(ds) == 0:  # a file meta header and nothing after it
        return f"DICOM file holds nothing after its file meta header ({os.path.getsize(path)} bytes): it is cut short"
    return f"DICOM file has no pixel data{_sop_class_said(sop_class)}"


#: Key Object Selection: a list of references to key images (under the structured reports' UIDs, but no report).
_KEY_OBJECT_SELECTION_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"


def _sop_class_said(sop_class: str) -> str:
    """``" (SOP class Raw Data Storage, 1.2.840.10008.5.1.4.1.1.66)"``: what a file without pixel data is, by its SOP
    class as pydicom names it; "" where it names none. Ultrasound archives keep presentation states, key object
    selections, scanners' raw data and PDF reports beside the images: each was "no pixel data", which sent users
    looking for a broken image or a missing codec."""
    from pydicom.uid import UID

    name = UID(sop_class).name if sop_class else ""
    return f" (SOP class {name}, {sop_class})" if name and name != sop_class else ""


def _with_cut_pixel_data_recovered(ds: Any, path: str | os.PathLike) -> Any:
    """``ds``, or where the file's end cut its encapsulated pixel data off, the file's data set read again with the
    whole frames before the cut (pydicom drops the whole data set then), with a warning naming the file.

    Raises:
        UnreadableImageError: the file ends inside its pixel data before the end of its first frame, or inside
            native pixel data's element header.
    """
    import io

    import pydicom

    with open(path, "rb") as file:
        data = file.read()
    found = fragments_before_cut(data)
    if found is None:
        if "FloatPixelData" not in ds and native_pixel_data_cut(data):
            raise UnreadableImageError(f"{path}: DICOM file is cut off inside its pixel data (an incomplete copy?)")
        return ds
    start, fragments = found
    frames = whole_frame_fragments(fragments[1:])  # the first item is the Basic Offset Table
    if not frames:
        raise UnreadableImageError(f"{path}: DICOM file is cut off inside its pixel data before the end of its first "
                                   "frame (an incomplete copy?)")
    with warnings.catch_warnings():  # the part before the pixel data parses whole; notes about it were given
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(data[:start]), force=True)
    ds.PixelData = encapsulated_value(frames)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    warnings.warn(f"{path}: the file is cut off inside its pixel data (an incomplete copy?); the frames of its "
                  f"{len(frames)} whole fragment(s) are read", UserWarning, stacklevel=3)
    return ds


def _dcmread(path: str | os.PathLike, header_only: bool = False) -> Any:
    """pydicom's reading (without the pixel data where ``header_only``); a file without File Meta Information is
    read again as a bare data set (``force=True``), whole even for a header: only pixel data tells a bare data set
    from bytes that merely parse.

    pydicom's own refusal of such files ends "Use force=True to force reading.", an option our users do not have;
    a file that does not parse either, or parses to no pixel data, is refused in our words.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=header_only)
    except InvalidDicomError:
        pass
    try:
        with warnings.catch_warnings():  # a non-DICOM file parses into warnings about nonsense tags and VRs
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True)
    except Exception as e:  # pydicom raises many types on bytes that are no data set
        raise UnreadableImageError(f"{path}: not a DICOM file: no b'DICM' at byte 128, and it does not parse as a "
                                   f"bare data set ({_short_detail(e)})") from e
    if "PixelData" not in ds:
        raise UnreadableImageError(f"{path}: not a DICOM image: no b'DICM' at byte 128 (no File Meta Information), "
                                   f"and read as a bare data set it has no pixel data")
    return ds


#: Image Pixel module attributes (PS3.3 C.7.6.3, type 1) without which pixel data cannot be decoded; the others
#: have the defaults of :func:`_fill_pixel_defaults`.
_REQUIRED_PIXEL_ATTRIBUTES = ("Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated")
_INTEGER_PIXEL_ATTRIBUTES = ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored", "HighBit",
                             "PixelRepresentation", "NumberOfFrames")


def _upper_case_photometric(ds: Any, source: str) -> None:
    """Upper-case a ``PhotometricInterpretation`` written in lower case ('rgb', 'monochrome1'), with a warning naming
    the file, as ``VOILUTFunction`` is: the defined terms are upper case, and pydicom and the display read the value
    by its exact term (a 'monochrome1' image was refused, or would have been shown as another encoding)."""
    value = ds.get("PhotometricInterpretation")
    if isinstance(value, str) and value != value.upper():
        warnings.warn(f"{source}: PhotometricInterpretation {value!r} is read as {value.upper()!r}", UserWarning,
                      stacklevel=3)
        ds.PhotometricInterpretation = value.upper()


def _fill_pixel_defaults(ds: Any) -> None:
    """Give a monochrome dataset the Image Pixel attributes that old or hand-made exports leave out, with the values
    DICOM readers of such archives assume (GDCM, dcm2niix): one sample, MONOCHROME2, unsigned, every allocated bit
    stored. Colour data (several samples, or a colour PhotometricInterpretation) gets nothing: its layout cannot be
    guessed."""
    photometric = str(ds.get("PhotometricInterpretation") or "")
    if ds.get("SamplesPerPixel") in (None, "") and photometric in ("", "MONOCHROME1", "MONOCHROME2"):
        ds.SamplesPerPixel = 1
    if ds.get("SamplesPerPixel") != 1:
        return
    if not photometric:
        ds.PhotometricInterpretation = "MONOCHROME2"
    if ds.get("PixelRepresentation") in (None, ""):
        ds.PixelRepresentation = 0
    if ds.get("BitsStored") in (None, "") and ds.get("BitsAllocated") not in (None, ""):
        ds.BitsStored = ds.BitsAllocated


def _check_pixel_module(ds: Any, source: str) -> None:
    """Refuse pixel data whose Image Pixel module lacks a required attribute or holds a non-integer where an
    integer belongs (``NumberOfFrames`` "1A"), naming them: pydicom's errors for these are an ``AttributeError``
    or Python's "invalid literal for int()"."""
    missing = [name for name in _REQUIRED_PIXEL_ATTRIBUTES if ds.get(name) in (None, "")]
    if missing:
        raise UnreadableImageError(f"{source}: pixel data without the required Image Pixel attribute(s) "
                                   f"{', '.join(missing)}")
    for name in _INTEGER_PIXEL_ATTRIBUTES:
        value = ds.get(name)
        if value in (None, ""):
            continue
        try:
            int(value)
        except (TypeError, ValueError):
            raise UnreadableImageError(f"{source}: {name} is {str(value)!r}, not an integer") from None
    _drop_frame_count_below_one(ds, source)


def _drop_frame_count_below_one(ds: Any, source: str) -> None:
    """Read a ``NumberOfFrames`` below 1 as absent, with a warning naming the file: the frames are then counted from
    the pixel data (:func:`monai_ext.io.dicom_frames.reconcile_frame_count`) as for a file without one.

    A count of -1 (exports that write "unknown" so) made native data read as no frames at all: the corpus listed
    the file as holding none, and the single-image loaders refused it as "frame_stride must be at least 1, got -1".
    """
    value = ds.get("NumberOfFrames")
    if value in (None, "") or int(value) >= 1:
        return
    warnings.warn(f"{source}: NumberOfFrames {str(value)!r} is no frame count; read as if absent",
                  UserWarning, stacklevel=3)
    del ds.NumberOfFrames


#: VOI LUT functions of PS3.3 C.11.2.1.3; another value is read as LINEAR, the default.
_VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


def _first_number(value: Any) -> float | None:
    """The first of a (multi-valued) DS attribute as a float, None where it does not read as one."""
    try:
        first = value[0] if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else value
        return float(first)
    except (TypeError, ValueError, IndexError):
        return None


#: Functional-group macros (enhanced multi-frame objects) that hold what classic files keep at the top level.
_FUNCTIONAL_GROUP_ATTRIBUTES = {"FrameVOILUTSequence": ("WindowCenter", "WindowWidth", "VOILUTFunction"),
                                "PixelValueTransformationSequence": ("RescaleSlope", "RescaleIntercept")}


def _promote_functional_groups(ds: Any, source: str) -> None:
    """Copy the window and rescale of an enhanced multi-frame file's functional groups to the top level, where the
    display reads them (and pydicom's does too): they were ignored, and a 12-bit image windowed to 1100/200 showed
    as 14 gray levels over its type's whole range.

    The shared group's values apply to every frame. Per-frame values are used where every frame has the same; where
    frames differ, the first frame's apply to all, with a warning. Top-level values already present win.
    """
    shared = (ds.get("SharedFunctionalGroupsSequence") or [None])[0]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    for macro, names in _FUNCTIONAL_GROUP_ATTRIBUTES.items():
        found = _macro_values(shared, macro, names)
        if not found and per_frame:
            frames = [_macro_values(item, macro, names) for item in per_frame]
            found = next((frame for frame in frames if frame), {})  # the first frame that has them
            if any(frame != found for frame in frames):
                warnings.warn(f"{source}: frames carry their own (or no) {macro} values; {found!r}, the first "
                              "found, apply to every frame", UserWarning, stacklevel=2)
        for name, value in found.items():
            if ds.get(name) is None:
                setattr(ds, name, value)


def _macro_values(group: Any, macro: str, names: tuple[str, ...]) -> dict[str, Any]:
    """The ``names`` set in the first item of ``group``'s ``macro`` sequence (an empty dict where there is none)."""
    item = (group.get(macro) or [None])[0] if group is not None else None
    if item is None:
        return {}
    return {name: item.get(name) for name in names if item.get(name) not in (None, "")}


def _repair_presentation(ds: Any, source: str) -> None:
    """Mend the optional presentation attributes that would make a decodable file unreadable or blank, each with a
    warning naming the file, as DICOM viewers and converters (dcm2niix, GDCM) do:

    - ``RescaleSlope`` 0 or not finite is read as 1 (a slope of 0 maps every pixel to the intercept, and the
      display range to nothing: every pixel became NaN, which inference then classified), a non-finite
      ``RescaleIntercept`` as 0;
    - a window whose width is below 1 (LINEAR; 0 or below for the other functions) or whose centre is not a number is
      left out, so the stored range is shown (pydicom refuses the file over it);
    - an unknown ``VOILUTFunction`` is read as LINEAR.

    Raises:
        UnreadableImageError: ``BitsStored`` outside 1..``BitsAllocated`` (no pixel values to read).
    """
    allocated, stored = int(ds.BitsAllocated), ds.get("BitsStored")
    if stored not in (None, "") and not 1 <= int(stored) <= allocated:
        raise UnreadableImageError(f"{source}: BitsStored {int(stored)} is not in 1..BitsAllocated {allocated}")
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    slope_value, intercept_value = _first_number(slope), _first_number(intercept)
    if slope is not None and (slope_value is None or not np.isfinite(slope_value) or slope_value == 0):
        warnings.warn(f"{source}: RescaleSlope {str(slope)!r} is read as 1 (a slope of 0 would map every pixel to "
                      "one value)", UserWarning, stacklevel=2)
        ds.RescaleSlope = 1
    if intercept is not None and (intercept_value is None or not np.isfinite(intercept_value)):
        warnings.warn(f"{source}: RescaleIntercept {str(intercept)!r} is read as 0", UserWarning, stacklevel=2)
        ds.RescaleIntercept = 0
    for name in ("RescaleSlope", "RescaleIntercept"):  # one value each (VM 1): several made float() fail on the list
        value = ds.get(name)
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            warnings.warn(f"{source}: {name} holds {len(value)} values; the first, {str(value[0])!r}, is used",
                          UserWarning, stacklevel=2)
            setattr(ds, name, value[0])
    stored = ds.get("VOILUTFunction")
    function = str(stored or "LINEAR").strip().upper()
    if function not in _VOI_FUNCTIONS:
        warnings.warn(f"{source}: VOILUTFunction {function!r} is not one of {list(_VOI_FUNCTIONS)}; read as LINEAR",
                      UserWarning, stacklevel=2)
        function = "LINEAR"
    if stored is not None and str(stored) != function:  # empty (type 3 allows it), padded or lower case: pydicom
        ds.VOILUTFunction = function                     # refuses anything but the exact term
    if ds.get("WindowCenter") is None or ds.get("WindowWidth") is None:
        return
    centre, width = _first_number(ds.WindowCenter), _first_number(ds.WindowWidth)
    numbers = centre is not None and width is not None and np.isfinite(centre) and np.isfinite(width)
    if not numbers or (width < 1 if function == "LINEAR" else width <= 0):
        warnings.warn(f"{source}: window (centre {str(ds.WindowCenter)!r}, width {str(ds.WindowWidth)!r}) cannot "
                      "be applied; the stored range is shown instead", UserWarning, stacklevel=2)
        del ds.WindowCenter
        del ds.WindowWidth


def _fill_transfer_syntax(ds: Any, source: str) -> None:
    """Give a dataset without ``TransferSyntaxUID`` (no File Meta Information, or one without it) the syntax of the
    encoding pydicom found while parsing: implicit or explicit VR, little or big endian (PS3.5 A.1-A.3).

    Native (uncompressed) pixel data only: encapsulated pixel data does not tell its codec.
    """
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    if ds.file_meta.get("TransferSyntaxUID"):
        return
    if ds["PixelData"].is_undefined_length:
        raise UnreadableImageError(f"{source}: compressed (encapsulated) pixel data without a TransferSyntaxUID "
                                   f"to tell its codec")
    # pydicom 3 keeps the parsed encoding in original_encoding; 2.4 in is_implicit_VR / is_little_endian
    encoding = ds.original_encoding if hasattr(ds, "original_encoding") else (ds.is_implicit_VR, ds.is_little_endian)
    syntaxes = {(True, True): ImplicitVRLittleEndian, (False, True): ExplicitVRLittleEndian,
                (False, False): ExplicitVRBigEndian}
    if tuple(encoding) not in syntaxes:
        raise UnreadableImageError(f"{source}: no TransferSyntaxUID and no encoding found while parsing")
    ds.file_meta.TransferSyntaxUID = syntaxes[tuple(encoding)]


#: Transfer syntaxes by the codec family whose codestream their fragments hold (the key of a codestream's syntax).
_CODEC_FAMILIES = {
    **{f"1.2.840.10008.1.2.4.{n}": "JPEG" for n in (50, 51)},
    **{f"1.2.840.10008.1.2.4.{n}": "JPEG Lossless" for n in (57, 70)},
    **{f"1.2.840.10008.1.2.4.{n}": "JPEG-LS" for n in (80, 81)},
    **{f"1.2.840.10008.1.2.4.{n}": "JPEG 2000" for n in (90, 91, 201, 202, 203)},
    "1.2.840.10008.1.2.5": "RLE",
}
#: The transfer syntax read for a codestream by its JPEG frame marker (SOF0, SOF1, SOF3, JPEG-LS SOF55).
_SYNTAX_OF_JPEG_FRAME = {0xC0: "1.2.840.10008.1.2.4.50", 0xC1: "1.2.840.10008.1.2.4.51",
                         0xC3: "1.2.840.10008.1.2.4.57", 0xF7: "1.2.840.10008.1.2.4.80"}
#: A JPEG 2000 codestream (SOC then SIZ) and a JP2 file's signature box.
_J2K_STARTS = (b"\xff\x4f\xff\x51", b"\x00\x00\x00\x0cjP  \r\n\x87\n")


def _codestream_syntax(fragment: bytes) -> str | None:
    """The transfer syntax that decodes a frame's first fragment, by its codestream's own markers: JPEG by its frame
    marker, JPEG 2000 (lossless: the codec reads lossy streams the same way), RLE by its header; None where the
    bytes are of none of these (a video stream, a corrupt frame)."""
    if fragment[:2] == b"\xff\xd8":
        code = next((code for code, _ in _jpeg_header_segments(fragment) if code in _SYNTAX_OF_JPEG_FRAME), None)
        return _SYNTAX_OF_JPEG_FRAME.get(code) if code is not None else None
    if fragment.startswith(_J2K_STARTS):
        return "1.2.840.10008.1.2.4.90"
    return "1.2.840.10008.1.2.5" if begins_rle_frame(fragment) else None


def _match_transfer_syntax_to_pixel_data(ds: Any, source: str) -> None:
    """Read pixel data by what it holds where its ``TransferSyntaxUID`` says otherwise, with a warning naming the
    file, as GDCM does: anonymisers and exporters that re-encode the pixels and keep the old file meta leave such
    files in archives.

    - Encapsulated (compressed) pixel data under an uncompressed syntax was read as raw pixels: the codestream's
      bytes shown as noise, with nothing said but a frame count; a codec family the codestream contradicts (JPEG
      under a JPEG 2000 or RLE label) failed with the wrong codec's complaint. Such data is decoded by the syntax
      its first frame's codestream tells (:func:`_codestream_syntax`).
    - Pixel data of a defined length (not encapsulated) under a compressed syntax failed on "unexpected tag
      (2828,2828) ... Basic Offset Table": it is read as the uncompressed data it is (explicit VR little endian,
      the encoding of every compressed syntax) where it holds the header's frames.

    Raises:
        UnreadableImageError: encapsulated data whose codestream tells no codec read here, or data of a defined
            length under a compressed syntax that is too short to be the header's frames uncompressed.
    """
    from pydicom.uid import UID, ExplicitVRLittleEndian

    syntax = ds.file_meta.TransferSyntaxUID
    encapsulated = _is_encapsulated(ds)
    if not encapsulated and syntax.is_compressed:
        if len(ds.PixelData) < _native_length(ds):
            raise UnreadableImageError(f"{source}: its transfer syntax says compressed ({_syntax_name(syntax)}) but "
                                       f"its pixel data is not encapsulated, and its {len(ds.PixelData)} bytes are "
                                       "too few for its frames uncompressed: the file is damaged")
        warnings.warn(f"{source}: its transfer syntax says compressed ({_syntax_name(syntax)}) but its pixel data is "
                      "not encapsulated; read as uncompressed", UserWarning, stacklevel=3)
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        return
    if not encapsulated or (syntax.is_compressed and str(syntax) not in _CODEC_FAMILIES):
        return  # a video or JPEG 2000 Part 2 syntax: its own decoder (or the lack of one) speaks
    fragment = first_fragment(ds.PixelData)
    found = _codestream_syntax(fragment) if fragment else None
    if found is None:
        if not syntax.is_compressed:
            raise UnreadableImageError(f"{source}: its pixel data is encapsulated (compressed) but its transfer "
                                       f"syntax says uncompressed ({_syntax_name(syntax)}), and its first frame is "
                                       "no JPEG, JPEG-LS, JPEG 2000 or RLE codestream: the codec is unknown")
        return  # a damaged frame: the labelled codec names it
    if _CODEC_FAMILIES[found] == _CODEC_FAMILIES.get(str(syntax)):
        return
    warnings.warn(f"{source}: its pixel data is {_CODEC_FAMILIES[found]} but its transfer syntax says otherwise "
                  f"({_syntax_name(syntax)}); read as {_syntax_name(UID(found))}", UserWarning, stacklevel=3)
    ds.file_meta.TransferSyntaxUID = UID(found)


#: The item tag (FFFE,E000) that starts encapsulated pixel data (its Basic Offset Table), little endian.
_ITEM_TAG = b"\xfe\xff\x00\xe0"


def _is_encapsulated(ds: Any) -> bool:
    """Whether ``ds``'s pixel data is encapsulated: of undefined length, or of a defined length but made of items
    (the Basic Offset Table's item tag first, and items that parse), as some writers give it and pydicom and GDCM
    decode it; such data was refused as damaged, or read as raw bytes where it was as long as its frames
    uncompressed (an RLE of noisy frames)."""
    if ds["PixelData"].is_undefined_length:
        return True
    if ds.PixelData[:4] != _ITEM_TAG or first_fragment(ds.PixelData) is None:
        return False
    ds["PixelData"].is_undefined_length = True  # as read from a conforming file, for the steps after this one
    return True


def _codestream_components(fragment: bytes) -> int | None:
    """The number of components a JPEG (any SOF, JPEG-LS SOF55) or JPEG 2000 codestream codes, from its frame
    header (ITU-T T.81 B.2.2: Nf after precision, lines and samples per line) or the SIZ segment right after SOC
    (T.800 A.5.1: Csiz after Lsiz, Rsiz and eight 4-byte sizes); None for other bytes."""
    if fragment.startswith(b"\xff\x4f\xff\x51") and len(fragment) >= 42:
        return int.from_bytes(fragment[40:42], "big")
    frames = (segment for code, segment in _jpeg_header_segments(fragment) if code in _SOF_CODES | {0xF7})
    segment = next(frames, b"")
    return segment[5] if len(segment) >= 6 else None


def _match_samples_to_codestream(ds: Any, source: str) -> None:
    """Read JPEG-family or JPEG 2000 pixel data by the number of components its first frame's codestream codes where
    ``SamplesPerPixel`` says 1 or 3 otherwise, with a warning naming the file, as GDCM does: scanners and exports
    that label gray frames as colour (3 samples, YBR_FULL_422 or RGB) or colour frames as MONOCHROME2 leave such
    files, and pydicom refused them with "could not broadcast input array from shape (1536,) into shape (4608,)".

    Gray read as colour becomes MONOCHROME2; colour read as gray becomes YBR_FULL_422 under lossy JPEG (its markers
    may still make it RGB, :func:`_codestream_photometric`), RGB under the other codecs (lossless JPEG and JPEG-LS
    code the samples as given; JPEG 2000's codec undoes its colour transform).
    """
    syntax = ds.file_meta.TransferSyntaxUID
    samples = int(ds.SamplesPerPixel)
    if str(syntax) not in _CODEC_FAMILIES or _CODEC_FAMILIES[str(syntax)] == "RLE" or samples not in (1, 3):
        return
    fragment = first_fragment(ds.PixelData)
    components = _codestream_components(fragment) if fragment else None
    if components not in (1, 3) or components == samples:
        return
    said = f"SamplesPerPixel {samples}, {str(ds.get('PhotometricInterpretation', ''))!r}"
    if components == 1:
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        if "PlanarConfiguration" in ds:
            del ds.PlanarConfiguration
    else:
        ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
        ds.PhotometricInterpretation = "YBR_FULL_422" if syntax in _JPEG_LOSSY_SYNTAXES else "RGB"
    warnings.warn(f"{source}: its header says {said} but its {_CODEC_FAMILIES[str(syntax)]} codestream codes "
                  f"{components} component(s); read as {ds.PhotometricInterpretation!r}", UserWarning, stacklevel=3)


def _native_length(ds: Any) -> int:
    """Bytes that the header's frames take uncompressed (pydicom 3 or 2.4)."""
    try:
        from pydicom.pixels.utils import get_expected_length
    except ImportError:  # pydicom 2.4
        from pydicom.pixel_data_handlers.util import get_expected_length
    return int(get_expected_length(ds))


def _fill_planar_configuration(ds: Any, source: str) -> None:
    """Give colour pixel data without ``PlanarConfiguration`` (type 1C, left out by some exports) the interleaved
    layout, 0, as GDCM and DCMTK assume; pydicom refuses such a file. A compressed frame's codec stream sets its own
    layout, so there it changes nothing; native data gets a warning, as the guess decides how its bytes are read.

    JPEG and JPEG 2000 data that says 1 is read as 0, with a warning: their codecs give interleaved samples, and
    pydicom 3 reshaped them by the attribute into scrambled colour (pydicom 2.4 ignores it). RLE (planar by its
    definition) and JPEG-LS (pydicom's decoders follow the stream's interleave mode) are read right as they are.
    """
    if int(ds.SamplesPerPixel) < 2:
        return
    planar = ds.get("PlanarConfiguration")
    if planar in (None, ""):
        if not ds.file_meta.TransferSyntaxUID.is_compressed:
            warnings.warn(f"{source}: colour pixel data without PlanarConfiguration; read as interleaved (0)",
                          UserWarning, stacklevel=2)
        ds.PlanarConfiguration = 0
    elif ds.file_meta.TransferSyntaxUID in _INTERLEAVED_CODEC_SYNTAXES and int(planar) != 0:
        warnings.warn(f"{source}: PlanarConfiguration {int(planar)} does not apply to "
                      f"{_syntax_name(ds.file_meta.TransferSyntaxUID)} pixel data, whose codec interleaves the "
                      "samples; read as 0", UserWarning, stacklevel=2)
        ds.PlanarConfiguration = 0


def _relabel_three_sample_monochrome(ds: Any, source: str) -> None:
    """Read three samples labelled MONOCHROME2 as RGB, with a warning naming the file: exports that copy a gray
    frame into three channels keep the gray label, and their samples are RGB (gray in, gray out), as they were
    shown. MONOCHROME1 (inverted) on three samples is left to be refused: which samples it inverts is not known."""
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if int(ds.get("SamplesPerPixel", 1)) == 3 and photometric == "MONOCHROME2":
        warnings.warn(f"{source}: 3 samples per pixel labelled MONOCHROME2; read as RGB", UserWarning, stacklevel=3)
        ds.PhotometricInterpretation = "RGB"


def _check_colour_encoding(ds: Any, source: str) -> None:
    """Refuse colour data whose ``PhotometricInterpretation`` is not converted to RGB here, naming it: RGB, YBR_FULL
    and YBR_FULL_422 are; YBR_ICT / YBR_RCT under JPEG 2000 (its codec gives RGB); and any YBR label on a JPEG
    Baseline / Extended stream. Anything else (YBR_PARTIAL_422 / 420 or YBR_ICT outside those codecs, HSV, a
    monochrome label on three samples) was shown as if its samples were RGB: a B-mode image pink at a third of its
    contrast, which the corpus then took for colour flow; native subsampled YBR_PARTIAL data was refused as
    truncated."""
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if int(ds.get("SamplesPerPixel", 1)) < 2 or photometric in ("RGB", *_YBR_TO_CONVERT):
        return
    syntax = ds.file_meta.TransferSyntaxUID
    if (photometric in ("YBR_ICT", "YBR_RCT") and syntax in _J2K_SYNTAXES) or \
            (photometric.startswith("YBR_") and syntax in _JPEG_LOSSY_SYNTAXES):
        return
    raise UnreadableImageError(f"{source}: colour pixel data with PhotometricInterpretation {photometric!r} "
                               f"({_syntax_name(syntax)}), a colour encoding not supported here (only RGB, YBR_FULL "
                               "and YBR_FULL_422, YBR_ICT / YBR_RCT under JPEG 2000)")


def _check_pixel_length(ds: Any, source: str) -> None:
    """Refuse native pixel data shorter than its header says (a file cut off while copied)."""
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        return  # each frame's codec stream tells its own length
    expected, actual = _native_length(ds), len(ds.PixelData)
    if actual < expected:
        raise UnreadableImageError(f"{source}: pixel data truncated: {actual} of the {expected} bytes that "
                                   f"{frame_count(ds)} frame(s) of {int(ds.Rows)}x{int(ds.Columns)} take")


def _check_codec(ds: Any, source: str) -> None:
    """Refuse compressed pixel data that no installed codec decodes, naming the transfer syntax and what to install
    (pydicom 3: its decoders list their plugins' requirements; 2.4 raises its own error while decoding)."""
    syntax = ds.file_meta.TransferSyntaxUID
    if not syntax.is_compressed:
        return
    try:
        from pydicom.pixels import get_decoder
    except ImportError:  # pydicom 2.4
        return
    import pydicom

    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:  # MPEG-2, H.264, HEVC video, JPEG 2000 Part 2, ...
        raise UnreadableImageError(f"{source}: pydicom {pydicom.__version__} has no decoder for its pixel data "
                                   f"({_syntax_name(syntax)})") from None
    if not decoder.is_available:  # "pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-libjpeg>=2.1" per plugin
        needs = "; ".join(entry.split(" - requires ", 1)[-1] for entry in decoder.missing_dependencies)
        raise UnreadableImageError(f"{source}: no installed codec decodes its pixel data ({_syntax_name(syntax)}); "
                                   f"install one of: {needs}")


def _syntax_name(syntax: Any) -> str:
    """``"JPEG-LS Lossless Image Compression, 1.2.840.10008.1.2.4.80"``; the UID alone where pydicom has no name."""
    name = getattr(syntax, "name", "")
    return f"{name}, {syntax}" if name and name != str(syntax) else f"transfer syntax {syntax}"


def _short_detail(error: BaseException, limit: int = 200) -> str:
    """One line of a library's error: pydicom's "Unable to decode as exceptions were raised by all available
    plugins:" header dropped (the plugin lines after it say what failed), whitespace joined, cut at ``limit``."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        lines = lines[1:]
    detail = one_line("; ".join(lines)) or type(error).__name__
    return detail if len(detail) <= limit else detail[: limit - 3] + "..."


#: Sides (pixels, after clipping to the frame) below which a region holds no image a view could show.
MIN_REGION_SIDE = 8
#: Pixels by which a region may reach past the frame and still be clipped to it and used: writers that put the
#: exclusive end in the inclusive RegionLocationMaxX1 / MaxY1 (x1 = Columns) overshoot by one.
REGION_OVERSHOOT = 1


def _region_boxes(ds: Any, data_types: tuple[int, ...]) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1), exclusive ends and clipped to the frame, of the 2-D regions of these data types.

    A region that misses the frame, reaches past it by more than :data:`REGION_OVERSHOOT` pixels, or is smaller than
    :data:`MIN_REGION_SIDE` on a side is left out with a warning (the file's other regions, or field-of-view
    detection on the whole frame, take its place): de-identification tools and exports that crop or resize the
    pixels but keep ``SequenceOfUltrasoundRegions`` leave such regions behind (pydicom's examples_ybr_color.dcm: a
    region of 512x384 pixels on a 320x240 frame). Clipped, such a region cut the tissue at a place that has nothing
    to do with it; an empty crop would reach OpenCV.
    """
    rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    boxes = []
    for region in getattr(ds, "SequenceOfUltrasoundRegions", []) or []:
        # no format or type: no 2-D image region; only those that would be boxes need their location
        if _region_number(region, REGION_FIELDS[0]) != 1 or _region_number(region, REGION_FIELDS[1]) not in data_types:
            continue
        fields = [_region_number(region, name) for name in REGION_FIELDS[2:]]
        if None in fields:  # de-identification empties or drops them: the region is no box, not the file unreadable
            warnings.warn(f"{getattr(ds, 'filename', None) or 'DICOM'}: an ultrasound region lacks a whole-number "
                          f"{REGION_FIELDS[2 + fields.index(None)]}; ignored", UserWarning, stacklevel=2)
            continue
        x0, y0, x1, y1 = fields
        box = (x0, y0, x1 + 1, y1 + 1)
        clipped = (max(box[0], 0), max(box[1], 0), min(box[2], columns or box[2]), min(box[3], rows or box[3]))
        overshoot = max(-box[0], -box[1], box[2] - (columns or box[2]), box[3] - (rows or box[3]))
        if overshoot > REGION_OVERSHOOT and clipped[2] > clipped[0] and clipped[3] > clipped[1]:
            warnings.warn(f"{getattr(ds, 'filename', None) or 'DICOM'}: ultrasound region {box} reaches "
                          f"{overshoot} pixels past the {columns}x{rows} frame (the pixels were resized or cropped "
                          "after the regions were written?); ignored", UserWarning, stacklevel=3)
            continue
        if min(clipped[2] - clipped[0], clipped[3] - clipped[1]) < MIN_REGION_SIDE:
            warnings.warn(f"{getattr(ds, 'filename', None) or 'DICOM'}: ultrasound region {box} lies outside the "
                          f"{columns}x{rows} frame or is under {MIN_REGION_SIDE} pixels on a side; ignored",
                          UserWarning, stacklevel=3)
            continue
        boxes.append(clipped)
    return boxes


def ultrasound_region_box(ds: Any) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1), exclusive ends, of the first view of :func:`ultrasound_region_boxes` (the leftmost 2-D
    tissue or colour-flow region on the frame): the region of the view the corpus reads first, so that the
    single-image loaders crop a file as the corpus does.

    It was the first tissue region listed: a colour-flow image whose 2-D region is of data type 2 (colour flow)
    above its spectrum got no region, and the loaders detected the field of view on the whole screen, spectrum
    included, where the corpus cropped the region; a dual view listed right to left gave the loaders its right view
    and the corpus its left one first.
    """
    boxes = ultrasound_region_boxes(ds)
    return boxes[0] if boxes else None


def ultrasound_region_boxes(ds: Any) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1), exclusive ends, of every 2-D view in ``SequenceOfUltrasoundRegions``: spatial format 1 with
    tissue (1) or colour flow (2) data, left to right then top to bottom. A region inside another one (a colour box
    over its B-mode region) is part of that view, not a view of its own. Spectral, M-mode, traces and bars are not
    images of tissue and are left out, and so are regions off the frame (see :func:`_region_boxes`).

    The boxes are on the frames as :func:`iter_dicom_frames` gives them: where the pixels are not square
    (:func:`square_pixel_shape`), scaled as the frames are resampled."""
    boxes = list(dict.fromkeys(_region_boxes(ds, (1, 2))))

    def inside(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
        return a != b and b[0] <= a[0] and b[1] <= a[1] and a[2] <= b[2] and a[3] <= b[3]

    views = sorted((a for a in boxes if not any(inside(a, b) for b in boxes)), key=lambda box: (box[0], box[1]))
    return [_box_on_square_pixels(box, ds) for box in views]


#: Names of the region kinds that are no image of tissue, by RegionSpatialFormat (0018,6012), for messages.
REGION_FORMAT_NAMES = {0: "no spatial format", 1: "2-D", 2: "M-mode", 3: "spectral", 4: "waveform", 5: "graphics"}


def non_tissue_region_kinds(ds: Any) -> list[str]:
    """The kinds of region (``["spectral", "waveform"]``) of a ``SequenceOfUltrasoundRegions`` that lists regions
    but no 2-D tissue or colour-flow region (spatial format 1 with data type 1 or 2), on the frame or not: the file
    holds no image of tissue (a PW or M-mode capture). Empty where it has no such sequence, lists a tissue or flow
    region (off the frame or not: detection on the whole frame then takes its place), or a region whose format or
    data type is missing (de-identified: it may have been one)."""
    kinds = []
    for region in getattr(ds, "SequenceOfUltrasoundRegions", []) or []:
        spatial, data_type = (_region_number(region, name) for name in REGION_FIELDS[:2])
        if spatial is None or data_type is None or (spatial == 1 and data_type in (1, 2)):
            return []
        name = REGION_FORMAT_NAMES.get(spatial, f"spatial format {spatial}")
        kinds.append(f"{name} of data type {data_type}" if spatial == 1 else name)
    return list(dict.fromkeys(kinds))


# ------------------------------------------------------------------------------------------------- square pixels
#: The largest pixel aspect (either way) taken for a real one: a 10\1 value is a writer's error, and honouring it
#: would make every frame ten times as large.
MAX_PIXEL_ASPECT = 10.0
#: Relative difference under which two attributes agree on the pixel aspect (spacings are written to a few digits).
_ASPECT_TOLERANCE = 0.01
#: Relative difference from 1:1 under which pixels are taken for square: spacings written to a few digits or
#: calibrated per axis differ from square by a percent or so on scanners whose pixels are square, and resampling an
#: 800-row frame to 808 rows for that only blurred it.
SQUARE_TOLERANCE = 0.02
#: PhysicalUnitsX/YDirection (0018,6024 / 6026) of a region calibrated in centimetres.
_CENTIMETRES = 3


def square_pixel_shape(ds: Any, source: str | None = None) -> tuple[int, int] | None:
    """(rows, columns) at which :func:`iter_dicom_frames` gives the frames of ``ds``, so that its pixels are square;
    None where they are square already or nothing says otherwise (the frames are then given as stored).

    The pixels' aspect (row spacing / column spacing) is read from ``PixelSpacing`` (0028,0030), else
    ``PixelAspectRatio`` (0028,0034: "row \\ column", the attribute DICOM requires where no spacing is given), else the
    ``PhysicalDeltaY`` / ``PhysicalDeltaX`` of the 2-D tissue and colour-flow ultrasound regions calibrated in cm
    (where they all give one aspect); for an ultrasound image (``Modality`` US) the regions' come first, its
    calibration (``PixelSpacing`` is no attribute of the US Image module: converters write a placeholder 1\\1).
    The axis with the coarser spacing is resampled to the finer one, the other axis
    kept: no stored sample is lost (halving the finer axis would drop fine speckle, calipers and the text that
    de-annotation looks for), a region box only grows (it never falls under the side a view needs), and DICOM viewers
    magnify in the same way; the model's own resize to its input size comes after. An aspect within
    :data:`SQUARE_TOLERANCE` or half a pixel of 1:1 is left alone.

    Worked out once per data set (by :func:`read_dicom`, which names the file): a warning says how the frames are
    resampled, and one names each value that cannot be used (zero, negative, one number where two belong, not a
    number, beyond :data:`MAX_PIXEL_ASPECT`) or that another attribute contradicts. Other coordinates on the stored
    grid (masks drawn on it, boxes from elsewhere) scale by ``(rows / Rows, columns / Columns)``.
    """
    if "_square_pixel_shape" not in vars(ds):
        ds._square_pixel_shape = _square_pixel_shape(ds, source or str(getattr(ds, "filename", None) or "DICOM"))
    return ds._square_pixel_shape


def _square_pixel_shape(ds: Any, source: str) -> tuple[int, int] | None:
    """:func:`square_pixel_shape`, worked out, with its warnings."""
    found = _pixel_aspect(ds, source)
    if found is None:
        return None
    said, aspect = found
    if abs(aspect - 1) <= SQUARE_TOLERANCE:
        return None
    rows, columns = int(ds.Rows), int(ds.Columns)
    # rows further apart than columns: more rows, as many columns; else more columns (halves rounded up, as the
    # region boxes' edges are)
    shape = (_rounded(rows * aspect), columns) if aspect > 1 else (rows, _rounded(columns / aspect))
    if shape == (rows, columns):
        return None
    warn_once(f"{source}: its pixels are not square ({said}: {aspect:.4g} times as tall as wide); its frames are "
              f"resampled from {rows}x{columns} to {shape[0]}x{shape[1]} (rows x columns), its ultrasound "
              "regions with them", UserWarning, stacklevel=4)
    return shape


def _pixel_aspect(ds: Any, source: str) -> tuple[str, float] | None:
    """(what said it, row spacing / column spacing) by the first attribute of :func:`square_pixel_shape`'s order that
    gives a usable one, with a warning where a later one contradicts it; None where none gives one."""
    candidates = [_two_positive_numbers(ds, name, source) for name in ("PixelSpacing", "PixelAspectRatio")]
    region = _region_aspect(ds, source)
    # an ultrasound image's calibration is its regions' (PixelSpacing is no attribute of the US Image module, and
    # converters write a placeholder 1\1 there, which outranked the regions' real deltas)
    candidates.insert(0 if str(ds.get("Modality", "")).strip().upper() == "US" else 2, region)
    given = [found for found in candidates if found is not None]
    if not given:
        return None
    (said, aspect), *others = given
    for other_said, other in others:
        both_square = max(abs(aspect - 1), abs(other - 1)) <= SQUARE_TOLERANCE  # the frames are as stored either way
        if abs(other / aspect - 1) > _ASPECT_TOLERANCE and not both_square:
            warn_once(f"{source}: {said} and {other_said} disagree on the pixels' aspect; {said} is used",
                      UserWarning, stacklevel=5)
    if not 1 / MAX_PIXEL_ASPECT <= aspect <= MAX_PIXEL_ASPECT:
        warn_once(f"{source}: {said} makes pixels {aspect:.4g} times as tall as wide, beyond "
                  f"{MAX_PIXEL_ASPECT:g} either way: taken for a writer's error, the frames are kept as stored",
                  UserWarning, stacklevel=5)
        return None
    return said, aspect


def _two_positive_numbers(ds: Any, name: str, source: str) -> tuple[str, float] | None:
    """(``"PixelAspectRatio 2\\1"``, first / second) of an attribute that holds "row \\ column" as two positive
    numbers; None where it is absent or empty, and with a warning naming the file and the value where it holds
    anything else (the pixels are then taken for square by this attribute)."""
    try:
        value = ds.get(name)
    except Exception:  # noqa: BLE001 - a value pydicom cannot convert to its VR (it gives strings for most)
        warn_once(f"{source}: {name} cannot be read as numbers; ignored", UserWarning, stacklevel=6)
        return None
    if value in (None, ""):
        return None
    values = list(value) if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
    numbers = [_positive_number(v) for v in values]
    said = f"{name} " + "\\".join(str(v) for v in values)
    if len(numbers) != 2 or None in numbers:
        warn_once(f"{source}: {said} is not two positive numbers (row \\ column); ignored", UserWarning,
                  stacklevel=6)
        return None
    return said, numbers[0] / numbers[1]


def _positive_number(value: Any) -> float | None:
    """``value`` as a positive finite float, else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) and number > 0 else None


def _region_aspect(ds: Any, source: str) -> tuple[str, float] | None:
    """(what said it, PhysicalDeltaY / PhysicalDeltaX) of the 2-D tissue and colour-flow ultrasound regions
    calibrated in cm in both directions, where they agree; None where there are none, or (with a warning) where
    their aspects differ (one resampling of the frame cannot square them all) or a delta is not a positive number."""
    aspects = []
    for region in getattr(ds, "SequenceOfUltrasoundRegions", []) or []:
        if _region_number(region, REGION_FIELDS[0]) != 1 or _region_number(region, REGION_FIELDS[1]) not in (1, 2):
            continue
        units = [_region_number(region, f"PhysicalUnits{axis}Direction") for axis in ("Y", "X")]
        if units != [_CENTIMETRES, _CENTIMETRES]:
            continue  # not calibrated in length on both axes: says nothing of the pixels' shape
        deltas = [region.get(f"PhysicalDelta{axis}") for axis in ("Y", "X")]
        dy, dx = (_positive_number(delta) for delta in deltas)
        if dy is None or dx is None:
            warn_once(f"{source}: an ultrasound region's PhysicalDeltaY\\X {deltas[0]}\\{deltas[1]} is not two "
                      "positive numbers; ignored", UserWarning, stacklevel=6)
            continue
        aspects.append((f"ultrasound region PhysicalDeltaY\\X {dy:g}\\{dx:g}", dy / dx))
    if not aspects:
        return None
    if any(abs(aspect / aspects[0][1] - 1) > _ASPECT_TOLERANCE for _, aspect in aspects):
        warn_once(f"{source}: its ultrasound regions differ in their pixels' aspect "
                  f"({', '.join(said for said, _ in aspects)}); none is used", UserWarning, stacklevel=6)
        return None
    return aspects[0]


def _on_square_pixels(frame: np.ndarray, shape: tuple[int, int] | None) -> np.ndarray:
    """A display-ready (H, W) or (H, W, C) frame resampled to ``shape`` (rows, columns) by linear interpolation, in
    its own dtype (integers rounded); as it is where ``shape`` is None.

    Linear: it stays within the values of its neighbours, so display-ready ranges hold (cubic overshoots past 0
    and 1). Written here, one axis at a time with pixel centres at half-pixel offsets (OpenCV's and PIL's
    convention), for every dtype the display gives (OpenCV has no uint32) and alike in MONAI Label's environment.
    """
    if shape is None:
        return frame
    for axis, length in enumerate(shape):
        if frame.shape[axis] != length:
            frame = _resampled_axis(frame, axis, length)
    return frame


def _resampled_axis(frame: np.ndarray, axis: int, length: int) -> np.ndarray:
    """``frame`` linearly resampled to ``length`` samples along ``axis``."""
    stored = frame.shape[axis]
    centres = np.clip((np.arange(length) + 0.5) * (stored / length) - 0.5, 0, stored - 1)
    low = np.floor(centres).astype(np.intp)
    high = np.minimum(low + 1, stored - 1)
    compute = np.float64 if frame.dtype.itemsize > 2 and np.issubdtype(frame.dtype, np.integer) else np.float32
    weight = (centres - low).astype(compute).reshape([-1 if a == axis else 1 for a in range(frame.ndim)])
    first, second = (np.take(frame, index, axis=axis).astype(compute) for index in (low, high))
    out = first + (second - first) * weight
    if np.issubdtype(frame.dtype, np.integer):
        return np.rint(out).astype(frame.dtype)
    return out.astype(frame.dtype)


def _box_on_square_pixels(box: tuple[int, int, int, int], ds: Any) -> tuple[int, int, int, int]:
    """A box (x0, y0, x1, y1), exclusive ends on the stored grid, on the frames of :func:`square_pixel_shape`:
    its edges scaled as the frame's (an exclusive end is an edge, so it scales exactly)."""
    shape = square_pixel_shape(ds)
    if shape is None:
        return box
    across, down = shape[1] / int(ds.Columns), shape[0] / int(ds.Rows)
    x0, y0, x1, y1 = box
    return _rounded(x0 * across), _rounded(y0 * down), _rounded(x1 * across), _rounded(y1 * down)


def _rounded(value: float) -> int:
    """``value`` to the nearest whole number, halves up (Python's ``round`` takes halves to the even number: 37.5
    and 38.5 would both give 38)."""
    return int(np.floor(value + 0.5))


def iter_dicom_frames(ds: Any, source: str, frame_stride: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """(index, display-ready frame) for every ``frame_stride``-th frame of a dataset read by :func:`read_dicom`.

    Frames are (H, W) uint8 (8-bit monochrome with no LUT), (H, W) float32 in [0, 1] (any other monochrome) or
    (H, W, 3) RGB (uint8 / uint16 / uint32 from their type's range, float32 for colour stored in fewer bits).
    Frames of pixels that are not square are resampled to square ones (:func:`square_pixel_shape`), as DICOM viewers
    show them: stored, a 2\\1 image was drawn and learnt from squashed to half its height.

    Raises:
        UnreadableImageError: naming the file, the transfer syntax and the codec's reason in one line, where a
            frame does not decode (a corrupt codec stream).
    """
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be at least 1, got {frame_stride!r}")
    tools = _pixel_tools()
    indices = range(0, frame_count(ds), frame_stride)
    # only the codec's decoding is wrapped: an error of the display step is this package's, with its traceback;
    # pydicom 2.4 decodes every frame when asked for the iterator, 3.x one frame at a time
    with _codec_errors_named(ds, source):
        decoded_frames = _decoded_frames(ds, indices, source, tools)
    held = None
    for index in indices:
        with _codec_errors_named(ds, source):
            decoded = next(decoded_frames, None)
        if decoded is None:
            return
        if index == 0:  # the first frame read is always frame 0
            held = _file_values_held(ds, source, decoded)
        yield index, _on_square_pixels(dicom_display(decoded, ds, source, tools, held), square_pixel_shape(ds, source))


@contextmanager
def _codec_errors_named(ds: Any, source: str) -> Iterator[None]:
    """Re-raise a codec's error as :class:`UnreadableImageError` naming the file and the transfer syntax."""
    try:
        yield
    except (UnreadableImageError, MemoryError):
        raise
    except Exception as e:  # codecs raise many types, some over several lines (one per plugin tried)
        raise UnreadableImageError(f"{source}: cannot decode its pixel data "
                                   f"({_syntax_name(ds.file_meta.TransferSyntaxUID)}): {_short_detail(e)}") from e


def first_dicom_frame(ds: Any, source: str) -> np.ndarray:
    """The first frame as displayed (what single-image loaders use for cine loops and multi-frame files): (H, W) or
    (H, W, 3), of the dtypes :func:`iter_dicom_frames` gives."""
    return next(iter_dicom_frames(ds, source, frame_stride=frame_count(ds)))[1]


# ------------------------------------------------------------------------------------------------------- decoding
def _decoded_frames(ds: Any, indices: range, source: str, tools: SimpleNamespace) -> Iterable[np.ndarray]:
    """Frames ``indices`` as decoded (stored values), colour converted to RGB by the same pydicom function in
    either version: pydicom 3 is asked for the codec's raw output (``as_rgb=False``) as 2.4 gives it."""
    first = _first_jpeg_frame(ds)
    stream_is_rgb = None if first is None else _jpeg_stream_is_rgb(first)  # its markers, read once
    photometric = _codestream_photometric(ds, source, stream_is_rgb)
    if photometric != str(ds.get("PhotometricInterpretation", "")).strip():
        # the codecs of both pydicom versions then return a YCbCr stream's planes, converted below as any YBR file's
        ds.PhotometricInterpretation = photometric
    if _needs_high_bit_shift(ds):
        frames: Iterable[np.ndarray] = iter(_native_values_at_high_bit(ds, source)[indices.start::indices.step])
    elif tools.pixel_array is not None and not ds.file_meta.TransferSyntaxUID.is_compressed:
        # one decode per frame, still one frame in memory at a time: pydicom 3's iterator reads frame k at k times the
        # length of frame 0 *as decoded*, and uncompressed YBR_FULL_422 (2 bytes a pixel) comes out as YBR_FULL (3):
        # frames 1.. were read from the wrong bytes (other frames' pixels mixed) and the read stopped two thirds in
        frames = (tools.pixel_array(ds, index=index, as_rgb=False) for index in indices)
    elif tools.iter_pixels is not None:  # pydicom 3 decodes only the frames asked for
        frames = tools.iter_pixels(ds, indices=indices, as_rgb=False, decoding_plugin=_lossy_codec_plugin(ds))
    elif ds.file_meta.TransferSyntaxUID.is_compressed and frame_count(ds) > 1:  # pydicom 2.4: one frame at a time
        frames = _each_compressed_frame(ds, indices)
    else:  # pydicom 2.4, native data (a view of the pixel data) or one frame: all frames at once
        pixels = _pixel_array_as_pydicom_3(ds)
        frames = iter((pixels[None] if frame_count(ds) == 1 else pixels)[indices.start::indices.step])
    if photometric in _YBR_TO_CONVERT:
        return (tools.convert_color_space(frame, photometric, "RGB") for frame in frames)
    return frames


def _each_compressed_frame(ds: Any, indices: range) -> Iterator[np.ndarray]:
    """pydicom 2.4: frames ``indices`` of a compressed multi-frame file, each decoded alone
    (:func:`_decoded_alone`), its codestream found as 2.4's own handlers find it (``generate_pixel_data_frame``).

    pydicom 2.4 decodes every frame of a data set at once: MONAI Label's first frame of a 300-frame 640x480 JPEG
    colour loop took 11 s and 280 MB more than pydicom 3's (which decodes the frames asked for), and a long loop could
    exhaust the server's memory for one frame.
    """
    import pydicom
    from pydicom.encaps import generate_pixel_data_frame

    wanted, found = set(indices), 0
    if not wanted:
        return
    for index, codestream in enumerate(generate_pixel_data_frame(ds.PixelData, frame_count(ds))):
        found += 1
        if index in wanted:
            yield _decoded_alone(ds, codestream)
        if index >= indices[-1]:
            return
    # fewer codestreams than frames (fragments whose frame boundaries 2.4 cannot find): 2.4's handlers refused the
    # whole array as too short, and so is the frame past the last one found
    raise ValueError(f"pydicom {pydicom.__version__} finds {found} frame(s) in the pixel data, not the "
                     f"{frame_count(ds)} of its header")


def _decoded_alone(ds: Any, codestream: bytes) -> np.ndarray:
    """One frame's codestream decoded as :func:`_pixel_array_as_pydicom_3` decodes a file of that one frame, with
    the data set as it was before (between two frames its header says what the file holds)."""
    from pydicom.encaps import encapsulate

    whole, count = ds.PixelData, ds.get("NumberOfFrames")
    # pydicom 2.4 keeps the last array decoded and gives it again while the id()s of the pixel attributes are those
    # it was decoded from: the frame before's pixel data, freed, can leave its id() to this one (every frame of an
    # RLE loop came out as its first)
    vars(ds).pop("_pixel_array", None)
    try:
        ds.PixelData, ds.NumberOfFrames = encapsulate([codestream]), 1
        return _pixel_array_as_pydicom_3(ds)
    finally:
        ds.PixelData = whole
        if count is None:
            del ds.NumberOfFrames
        else:
            ds.NumberOfFrames = count


def _pixel_array_as_pydicom_3(ds: Any) -> np.ndarray:
    """pydicom 2.4's ``pixel_array`` (all frames), decoded as pydicom 3's ``iter_pixels(as_rgb=False)`` decodes it,
    with the header as it was before.

    Two of 2.4's decoding steps differ from 3.x's, silently:

    * pydicom 3 asks libjpeg for a 3-sample stream's planes as coded (no colour transform) and leaves their colour to
      the caller (:func:`_decoded_frames` converts a YBR label's). pydicom 2.4 passes libjpeg the header's label, and
      libjpeg converts a frame labelled RGB from YCbCr, whatever its markers say: an RGB stream without a JFIF,
      Adobe or R, G, B marker (an Adobe APP14 segment too short to hold its transform does not count) came out
      magenta, and a JPEG-LS near-lossless RGB stream's red (255, 0, 0) as (76, 255, 28). Labelled YBR_FULL while
      it decodes, libjpeg returns the planes as coded, as in 3.x (a stream whose markers say YCbCr is labelled YBR
      already, by :func:`_codestream_photometric`, and converted by the caller).
    * where a JPEG 2000 stream is unsigned and the header says signed, pydicom 2.4's pylibjpeg handler sign-extends
      the values as 3.x does, but then sets the header's ``PixelRepresentation`` to 0 for good: the display read the
      signed values (CT numbers from -2000) as unsigned ones, and the windowed image came out other than 3.x's
      (mean 0.870 instead of 0.248 for pydicom's ``J2K_pixelrep_mismatch.dcm``).
    """
    photometric, signed = ds.get("PhotometricInterpretation"), ds.get("PixelRepresentation")
    plugin = _lossy_codec_plugin(ds)
    rgb_through_libjpeg = photometric == "RGB" and int(ds.get("SamplesPerPixel", 1)) == 3 and (
        ds.file_meta.TransferSyntaxUID in _LIBJPEG_SYNTAXES)
    if plugin and rgb_through_libjpeg:
        ds.PhotometricInterpretation = "YBR_FULL"
    try:
        if plugin:
            ds.convert_pixel_data(handler_name=plugin)
        return ds.pixel_array
    finally:  # the header as read: the values are the stored ones in either version
        if photometric is not None:
            ds.PhotometricInterpretation = photometric
        if signed is not None:
            ds.PixelRepresentation = signed


def _codestream_photometric(ds: Any, source: str, stream_is_rgb: bool | None) -> str:
    """The colour space a 3-sample lossy JPEG stream declares (``stream_is_rgb``, :func:`_jpeg_stream_is_rgb` of its
    first frame), where it contradicts the header's ``PhotometricInterpretation``; else the header's.

    Many exports wrap a JFIF frame, which is YCbCr by definition, and keep "RGB" in the header; others label an RGB
    stream (component ids 'R', 'G', 'B', or an Adobe APP14 marker with transform 0) YBR_FULL_422, or a YCbCr one
    (Adobe transform 1) RGB. Read by the header, colour comes out false: gray tissue green-tinted (luma 117 read as
    (117, 128, 128)) or magenta. The stream wins, as in libjpeg and pydicom 3's own conversion (which the codec's raw
    output asked for here does not go through; under 2.4 libjpeg converts any "RGB" JPEG itself, rounding
    differently from pydicom's conversion). Both are given the corrected value instead, so both convert alike. The
    file keeps a warning that names it.

    Another YBR label (YBR_PARTIAL_422 / 420, YBR_ICT / RCT) on a JPEG stream that is not RGB is read as
    YBR_FULL_422 the same way: a JPEG stream's YCbCr is full range whatever the label says (ITU-T T.871), and
    nothing converted it: a gray B-mode image came out pink at a third of its contrast.
    """
    from pydicom.uid import JPEGBaseline8Bit

    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    syntax = ds.file_meta.TransferSyntaxUID
    other_ybr = photometric.startswith("YBR_") and photometric not in _YBR_TO_CONVERT and \
        syntax in _JPEG_LOSSY_SYNTAXES and int(ds.get("SamplesPerPixel", 1)) == 3
    if not other_ybr and (photometric not in ("RGB", *_YBR_TO_CONVERT) or stream_is_rgb is None or
                          stream_is_rgb == (photometric == "RGB")):
        return photometric
    corrected = "RGB" if stream_is_rgb else "YBR_FULL_422" if syntax == JPEGBaseline8Bit else "YBR_FULL"
    why = "a JPEG stream's YCbCr is full range whatever the label says" if other_ybr and not stream_is_rgb else \
        f"its JPEG stream's markers say {'RGB' if stream_is_rgb else 'YCbCr'}"
    warnings.warn(f"{source}: PhotometricInterpretation is {photometric!r} but {why}; read as {corrected!r}",
                  UserWarning, stacklevel=2)
    return corrected


def _first_jpeg_frame(ds: Any) -> bytes | None:
    """The first frame's codestream of 3-sample JPEG Baseline / Extended pixel data, else None."""
    from pydicom.uid import JPEGBaseline8Bit, JPEGExtended12Bit

    if int(ds.get("SamplesPerPixel", 1)) != 3 or ds.file_meta.TransferSyntaxUID not in (JPEGBaseline8Bit,
                                                                                          JPEGExtended12Bit):
        return None
    try:
        from pydicom.encaps import generate_frames

        frames = generate_frames(ds.PixelData, number_of_frames=frame_count(ds))
    except ImportError:  # pydicom 2.4
        from pydicom.encaps import generate_pixel_data_frame

        frames = generate_pixel_data_frame(ds.PixelData, frame_count(ds))
    try:
        return next(frames)
    except (StopIteration, ValueError):  # no frame to read: the decoder names the problem
        return None


def _jpeg_stream_is_rgb(stream: bytes) -> bool | None:
    """What a JPEG codestream's markers say of its colour space, weighed as libjpeg weighs them: a JFIF APP0 segment
    means YCbCr (False); else an Adobe APP14 marker's transform, 0 RGB (True) or YCbCr (False); else component ids
    'R', 'G', 'B' mean RGB (True); None when they say nothing.

    Written here because pydicom's marker reader is private (3.x) or absent (2.4). A frame header (SOFn) lists each
    component as (id, sampling, table).
    """
    jfif, adobe, ids = False, None, b""
    for code, segment in _jpeg_header_segments(stream):
        if code == 0xE0 and segment[:5] == b"JFIF\x00":
            jfif = True
        elif code == 0xEE and segment[:5] == b"Adobe" and len(segment) >= 12:
            adobe = segment[11]
        elif code in _SOF_CODES and len(segment) >= 6:
            ids = bytes(segment[6 + 3 * k] for k in range(segment[5]) if 6 + 3 * k < len(segment))
    # libjpeg's order (jdapimin.c default_decompress_parms): JFIF, then the Adobe transform, then the ids
    if jfif:
        return False
    if adobe is not None:
        return adobe == 0
    return True if ids == b"RGB" else None


def _jpeg_header_segments(stream: bytes) -> Iterator[tuple[int, bytes]]:
    """(marker code, segment) of each segment of a JPEG (or JPEG-LS) codestream before its first scan; nothing for
    bytes that do not start with SOI. The segments (ITU-T T.81 B.1.1.2) are a marker (0xFF, code) and a big-endian
    length each."""
    if stream[:2] != b"\xff\xd8":
        return
    at = 2
    while at + 1 < len(stream) and stream[at] == 0xFF:
        code = stream[at + 1]
        if code == 0xFF:  # a fill byte before the marker (B.1.1.2)
            at += 1
            continue
        if code == 0x01 or 0xD0 <= code <= 0xD7:  # markers without a length
            at += 2
            continue
        if code == 0xDA or at + 4 > len(stream):  # start of scan: no more header segments
            return
        length = int.from_bytes(stream[at + 2 : at + 4], "big")
        yield code, stream[at + 4 : at + 2 + length]
        at += 2 + length


#: Start-of-frame markers (ITU-T T.81 table B.1): SOF0-3, 5-7, 9-11, 13-15.
_SOF_CODES = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))


def _lossy_codec_plugin(ds: Any) -> str:
    """"pylibjpeg" for the JPEG, JPEG-LS and JPEG 2000 families where it is installed, else "" (pydicom's choice).

    Lossy codecs' decoders differ in the last level (chroma upsampling, IDCT rounding): one decoder in every
    environment keeps MONAI Label's pixels (pydicom 2.4) equal to the main environment's. RLE and uncompressed
    data decode alike whatever the decoder.
    """
    from pydicom.uid import RLELossless

    syntax = ds.file_meta.TransferSyntaxUID
    if not syntax.is_compressed or syntax == RLELossless:
        return ""
    try:
        from pydicom.pixels import get_decoder
    except ImportError:  # pydicom 2.4
        from pydicom.pixel_data_handlers import pylibjpeg_handler

        usable = pylibjpeg_handler.is_available() and pylibjpeg_handler.supports_transfer_syntax(syntax)
    else:
        try:
            usable = "pylibjpeg" in get_decoder(syntax).available_plugins
        except NotImplementedError:  # a syntax pydicom has no decoder for: let it raise its own error later
            usable = False
    return "pylibjpeg" if usable else ""


def _needs_high_bit_shift(ds: Any) -> bool:
    """True for uncompressed monochrome data whose stored bits do not end at bit ``BitsStored - 1``.

    pydicom assumes ``HighBit = BitsStored - 1`` (and 3.x masks the bits above), so such files are read here.
    """
    bits_stored = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)))
    high_bit = int(ds.get("HighBit", bits_stored - 1))
    return (high_bit != bits_stored - 1 and int(ds.get("SamplesPerPixel", 1)) == 1
            and not ds.file_meta.TransferSyntaxUID.is_compressed and int(ds.get("BitsAllocated", 8)) in (8, 16, 32))


def _native_values_at_high_bit(ds: Any, source: str) -> np.ndarray:
    """(frames, rows, cols) stored values of uncompressed data, shifted down so the high bit is ``BitsStored - 1``."""
    allocated, stored = int(ds.BitsAllocated), int(ds.BitsStored)
    shift = int(ds.HighBit) + 1 - stored
    if shift < 0 or int(ds.HighBit) >= allocated:
        raise UnreadableImageError(f"{source}: HighBit {int(ds.HighBit)} does not fit BitsStored {stored} "
                                   f"in BitsAllocated {allocated}")
    shape = (frame_count(ds), int(ds.Rows), int(ds.Columns))
    order = "<" if ds.file_meta.TransferSyntaxUID.is_little_endian else ">"
    raw = np.frombuffer(ds.PixelData, dtype=f"{order}u{allocated // 8}", count=int(np.prod(shape)))
    return (raw.reshape(shape) >> shift).astype(f"u{allocated // 8}")


def _stored_values(values: np.ndarray, bits_stored: int, signed: bool) -> np.ndarray:
    """Keep the low ``bits_stored`` bits (pydicom 2.4 leaves overlay or garbage bits above) and sign-extend."""
    width = values.dtype.itemsize * 8
    if not np.issubdtype(values.dtype, np.integer) or bits_stored >= width:
        return values
    # native order first: pydicom gives big-endian files ">u2" arrays, and the views below would drop the order
    values = values.astype(values.dtype.newbyteorder("="), copy=False)
    unsigned = values.view(f"u{values.dtype.itemsize}") & np.array((1 << bits_stored) - 1, f"u{values.dtype.itemsize}")
    if not signed:
        return unsigned
    half = 1 << (bits_stored - 1)
    return ((unsigned.astype(np.int64) ^ half) - half).astype(f"i{values.dtype.itemsize}")


# -------------------------------------------------------------------------------------------------------- display
def dicom_display(decoded: np.ndarray, ds: Any, source: str, tools: SimpleNamespace | None = None,
                  held: tuple[float, float] | None = None) -> np.ndarray:
    """One decoded frame, (H, W) stored values or (H, W, 3) RGB, -> display-ready (H, W) or (H, W, 3) pixels (dtypes
    as :func:`iter_dicom_frames` gives them). ``held``: the range of values a multi-frame file holds
    (:func:`_file_values_held`), over which each of its frames is shown where no window applies."""
    tools = tools or _pixel_tools()
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    bits_stored = int(ds.get("BitsStored", decoded.dtype.itemsize * 8))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    if photometric == "PALETTE COLOR":
        return _eight_bit_palette_as_uint8(tools.apply_color_lut(_stored_values(decoded, bits_stored, False), ds), ds)
    if decoded.ndim == 3:
        _check_colour_encoding(ds, source)  # as read_dicom does, for a dataset that did not come through it
        return _colour_display(decoded, bits_stored)
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise UnreadableImageError(f"{source}: one sample per pixel with photometric interpretation {photometric!r}")
    return _monochrome_display(_stored_values(decoded, bits_stored, signed), ds, photometric, tools, held)


def _eight_bit_palette_as_uint8(rgb: np.ndarray, ds: Any) -> np.ndarray:
    """A palette's RGB (uint8 or uint16), as uint8 where its descriptors say 8-bit entries that pydicom returned in
    16-bit words (PS3.3 C.7.6.3.1.5 allows such data): read by the uint16 range, 255 was near black."""
    descriptors = [ds.get(f"{c}PaletteColorLookupTableDescriptor") for c in ("Red", "Green", "Blue")]
    eight_bit = all(d is not None and len(d) > 2 and int(d[2]) == 8 for d in descriptors)
    if eight_bit and rgb.dtype == np.uint16 and int(rgb.max(initial=0)) <= 255:
        return rgb.astype(np.uint8)
    return rgb  # uint8 or uint16 RGB by its type's range


def _colour_display(rgb: np.ndarray, bits_stored: int) -> np.ndarray:
    """RGB of ``bits_stored`` bits: as is when they fill the type, else scaled to [0, 1]."""
    if bits_stored >= rgb.dtype.itemsize * 8:
        return rgb
    rgb = _stored_values(rgb, bits_stored, False)
    return rgb.astype(np.float32) / np.float32(2**bits_stored - 1)


def _has_voi_lut(ds: Any) -> bool:
    item = (ds.get("VOILUTSequence") or [None])[0]
    return item is not None and "LUTDescriptor" in item and "LUTData" in item


def _has_window(ds: Any) -> bool:
    return ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None


def _has_modality_transform(ds: Any) -> bool:
    """A modality LUT, or a rescale other than the identity (many files carry slope 1, intercept 0)."""
    if ds.get("ModalityLUTSequence"):
        return True
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    return slope is not None and intercept is not None and (float(slope), float(intercept)) != (1.0, 0.0)


def _modality_output_range(ds: Any, bits_stored: int, signed: bool) -> tuple[float, float]:
    """(value of black, value of white) after the modality LUT, as pydicom's ``apply_windowing`` defines its output:
    the modality LUT's range, else the stored range mapped through the rescale."""
    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    low, high = (-(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1) if signed else (0, 2**bits_stored - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        low, high = low * float(slope) + float(intercept), high * float(slope) + float(intercept)
    return float(low), float(high)


#: The attributes of an ultrasound region item that make it a box of a data type.
REGION_FIELDS = ("RegionSpatialFormat", "RegionDataType", "RegionLocationMinX0", "RegionLocationMinY0",
                 "RegionLocationMaxX1", "RegionLocationMaxY1")


def _region_number(region: Any, name: str) -> int | None:
    """A region attribute as a whole number, or None where it is missing, empty or not a number."""
    value = region.get(name)
    try:
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def _lut_first_input(descriptor: Any, ds: Any) -> int:
    """A LUT descriptor's first mapped input value: signed where the pixels are (PS3.3 C.11.2.1.1 lets it be encoded
    US whatever the sign; -512 then arrives as 65024 and every pixel clipped to the first entry)."""
    first = int(descriptor[1])
    return first - 65536 if int(ds.get("PixelRepresentation", 0)) == 1 and first > 32767 else first


def _apply_voi_lut_item(values: np.ndarray, item: Any, ds: Any) -> np.ndarray:
    """Look ``values`` up in a VOI LUT item (PS3.3 C.11.2.1.1): inputs below the first mapped value take the first
    entry, inputs past the end the last.

    Written here because pydicom's ``apply_voi`` (2.4 and 3.0) indexes with an array of the LUT's own type, which
    wraps around for 8-bit LUTs of more than 256 entries. Entries are 16-bit words, as pydicom reads them too.
    """
    count, first = int(item.LUTDescriptor[0]) or 65536, _lut_first_input(item.LUTDescriptor, ds)
    data = item.LUTData
    if isinstance(data, (bytes, bytearray)):  # VR OW: raw words in the file's byte order
        order = "<" if ds.file_meta.TransferSyntaxUID.is_little_endian else ">"
        entries = np.frombuffer(data, dtype=f"{order}u2", count=count)
    else:
        entries = np.asarray(data if isinstance(data, (list, tuple)) else [data], dtype=np.int64)[:count]
    index = np.clip(np.rint(values).astype(np.int64) - first, 0, len(entries) - 1)
    return entries[index]


def _lut_entry_range(ds: Any, tools: SimpleNamespace) -> tuple[float, float]:
    """(smallest, largest) entry of the modality LUT: every input it maps, through pydicom's own lookup."""
    count, first = (int(v) for v in ds.ModalityLUTSequence[0].LUTDescriptor[:2])
    entries = tools.apply_modality_lut(np.arange(first, first + (count or 65536)), ds)
    return float(entries.min()), float(entries.max())


def _values_held(ds: Any, output: np.ndarray, black: float, white: float,
                 held: tuple[float, float] | None = None) -> tuple[float, float]:
    """(black, white) of an image deeper than 8 bits with no window: the values it holds, not every value its type
    could hold. A 12- or 16-bit image uses a few hundred of 65,536 values, and shown over the whole range it was one
    flat gray (pydicom's CT_small: 9 gray levels); volumes and signed TIFFs were already shown over their values.

    A file of several frames is shown over ``held``, the range of the whole file (:func:`_file_values_held`), one
    for every frame, so that its frames stay comparable (a dim frame not stretched as bright as a bright one);
    without it (every frame one value, or no range given) it keeps ``(black, white)``. A single frame: the file's
    Smallest/LargestImagePixelValue where they hold its values (:func:`_tagged_range`), else its own range; a
    constant frame keeps ``(black, white)``.
    """
    if held is not None:
        return held
    finite = output[np.isfinite(output)]
    if not finite.size or finite.max() <= finite.min():
        return black, white
    held = _tagged_range(ds)
    if held is not None and held[0] <= finite.min() and finite.max() <= held[1]:
        return held
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        return black, white
    return float(finite.min()), float(finite.max())


def _tagged_range(ds: Any) -> tuple[float, float] | None:
    """Smallest/LargestImagePixelValue through the rescale, or None where the file gives no usable pair."""
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    ends = []
    for name in ("SmallestImagePixelValue", "LargestImagePixelValue"):
        value = ds.get(name)
        if not isinstance(value, int):
            return None
        ends.append(value - 65536 if signed and value > 32767 else value)  # SS written as US
    if ends[1] <= ends[0]:
        return None
    return _rescaled_range(ds, ends[0], ends[1])


def _rescaled_range(ds: Any, low: float, high: float) -> tuple[float, float]:
    """Stored values ``low`` and ``high`` through the rescale, in order (a negative slope reverses them).

    Rescaled only where both RescaleSlope and RescaleIntercept are present, as the pixels are
    (:func:`_has_modality_transform`, pydicom's ``apply_modality_lut``): with one of them alone, the range and the
    pixels disagreed, and an intercept-only loop was shown all white.
    """
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is None or intercept is None:
        return low, high
    low, high = sorted((low * float(slope) + float(intercept), high * float(slope) + float(intercept)))
    return low, high


def _shown_over_values_held(ds: Any) -> bool:
    """Whether monochrome frames are shown over the values they hold (:func:`_values_held`): deeper than 8 bits,
    with no VOI LUT, window or modality LUT (the display's last branch)."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    return (photometric in ("MONOCHROME1", "MONOCHROME2") and int(ds.get("BitsStored", 8)) > 8
            and not (_has_voi_lut(ds) or _has_window(ds) or ds.get("ModalityLUTSequence")))


def _file_values_held(ds: Any, source: str, first: np.ndarray) -> tuple[float, float] | None:
    """(smallest, largest) value, through the rescale, of a multi-frame file shown over the values it holds
    (:func:`_shown_over_values_held`): one range for every frame. None for a single frame (shown over its own), for
    other files, and where every value is one.

    Such a file was shown over every value its bit depth allows: a 16-bit loop holding values up to 1,000 came out
    black, and the corpus dropped its frames as holding no signal. Native data: the values of the whole pixel data.
    Compressed data: those of every frame that decodes (:func:`_frames_for_range`), ``first`` being frame 0 decoded
    already: such a file is decoded twice, a cost only deep compressed loops without a window pay (ultrasound
    loops are 8-bit); the range of the first frame alone saturated a later, brighter frame to white. The file's
    Smallest/LargestImagePixelValue win where they hold those values.
    """
    if frame_count(ds) < 2 or not _shown_over_values_held(ds):
        return None
    signed, bits_stored = int(ds.get("PixelRepresentation", 0)) == 1, int(ds.BitsStored)
    compressed = ds.file_meta.TransferSyntaxUID.is_compressed
    if compressed:
        frames = _frames_for_range(ds, source, first)
    elif _needs_high_bit_shift(ds):
        frames = _native_values_at_high_bit(ds, source)
    else:
        order = "<" if ds.file_meta.TransferSyntaxUID.is_little_endian else ">"
        dtype = f"{order}{'i' if signed else 'u'}{int(ds.BitsAllocated) // 8}"
        count = frame_count(ds) * int(ds.Rows) * int(ds.Columns)
        frames = np.frombuffer(ds.PixelData, dtype=dtype, count=count).reshape(frame_count(ds), -1)
    # a frame at a time: the stored values of a long loop at once would be a second copy of its pixel data
    stored = (_stored_values(frame, bits_stored, signed) for frame in frames)
    ends = [(int(values.min()), int(values.max())) for values in stored]
    low, high = min(end[0] for end in ends), max(end[1] for end in ends)
    if high <= low:
        return None
    held, tagged = _rescaled_range(ds, low, high), _tagged_range(ds)
    if tagged is not None and tagged[0] <= held[0] and held[1] <= tagged[1]:
        return tagged
    return held


def _frames_for_range(ds: Any, source: str, first: np.ndarray) -> Iterator[np.ndarray]:
    """Every frame of a compressed file as decoded, ``first`` (frame 0) included, up to the first one that does not
    decode: the reading that follows names that one in its error, after the frames before it (a corrupt frame
    must not cost the good ones)."""
    yield first
    try:
        yield from _decoded_frames(ds, range(1, frame_count(ds)), source, _pixel_tools())
    except Exception:  # noqa: BLE001 - codecs raise many types; the display pass reports it, naming the file
        return


def _monochrome_display(values: np.ndarray, ds: Any, photometric: str, tools: SimpleNamespace,
                        held: tuple[float, float] | None = None) -> np.ndarray:
    """Stored values -> modality LUT -> VOI LUT or window -> [0, 1] over the chain's output range -> MONOCHROME1."""
    bits_stored = int(ds.get("BitsStored", values.dtype.itemsize * 8))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    voi_lut, window = _has_voi_lut(ds), _has_window(ds)
    if values.dtype == np.uint8 and bits_stored == 8 and not (voi_lut or window or _has_modality_transform(ds)):
        return 255 - values if photometric == "MONOCHROME1" else values  # plain 8-bit: exact, no float round trip
    output = tools.apply_modality_lut(values, ds) if _has_modality_transform(ds) else values
    black, white = _modality_output_range(ds, bits_stored, signed)
    if voi_lut:  # a VOI LUT sequence wins over a window, as in pydicom's apply_voi_lut(prefer_lut=True)
        output = _apply_voi_lut_item(output, ds.VOILUTSequence[0], ds)
        black, white = 0.0, float(2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
    elif window:
        output = tools.apply_windowing(output, ds, 0)  # output spans (black, white) as computed above
    elif ds.get("ModalityLUTSequence"):  # no VOI: the LUT's own entries span the display
        black, white = _lut_entry_range(ds, tools)
    else:
        black, white = min(black, white), max(black, white)  # a negative slope reverses the ends
        if bits_stored > 8:
            black, white = _values_held(ds, np.asarray(output, np.float64), black, white, held)
    if not (np.isfinite(black) and np.isfinite(white)) or white == black:
        raise UnreadableImageError(f"{getattr(ds, 'filename', None) or 'DICOM'}: its display range is empty "
                                   f"(black {black!r}, white {white!r}): no pixel values to show")
    unit = np.clip((np.asarray(output, np.float64) - black) / (white - black), 0.0, 1.0).astype(np.float32)
    return 1.0 - unit if photometric == "MONOCHROME1" else unit
