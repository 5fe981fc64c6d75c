"""Real third-party DICOM files, the ones pydicom ships (scanner exports, dcmtk / GDCM conversions, odd encodings):
every displayed frame against a reference from pydicom's own public pixel API, and the bad ones refused in one line
that names the file and the reason.

The reference decodes independently of :mod:`monai_ext.io.dicom`: ``ds.pixel_array`` with pydicom's defaults
(its own plugin choice, its own YBR -> RGB conversion), ``apply_color_lut`` for palette colour,
``apply_modality_lut`` then the LINEAR window of PS3.3 C.11.2.1.2.1 or, without a window, the (rescaled) stored
range mapped to [0, 1], which is the scaling :func:`monai_ext.io.dicom.iter_dicom_frames` documents.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.pixels import apply_color_lut, apply_modality_lut

from monai_ext.io.dicom import iter_dicom_frames, read_dicom
from monai_ext.io.errors import UnreadableImageError
from monai_ext.io.images import read_image, source_kind


def shipped(name: str) -> Path:
    """A test file pydicom ships in its wheel; skipped where this pydicom does not ship it (never downloaded)."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom {pydicom.__version__} does not ship {name}")
    return Path(path)


#: (file, frames, shape of a displayed frame): gray stays (H, W), colour is (H, W, 3) RGB.
IMAGES = [
    # monochrome: windowed, rescaled, signed, 1-, 8-, 12-, 16- and 32-bit, every byte order and codec
    ("693_J2KI.dcm", 1, (512, 512)), ("CT_small.dcm", 1, (128, 128)),
    ("J2K_pixelrep_mismatch.dcm", 1, (512, 512)), ("JPEG2000.dcm", 1, (1024, 256)),
    ("JPEGLSNearLossless_08.dcm", 1, (45, 10)), ("JPEGLSNearLossless_16.dcm", 1, (50, 10)),
    ("JPGExtended.dcm", 1, (1024, 256)), ("MR_small.dcm", 1, (64, 64)), ("MR_small_RLE.dcm", 1, (64, 64)),
    ("MR_small_bigendian.dcm", 1, (64, 64)), ("MR_small_expb.dcm", 1, (64, 64)),
    ("MR_small_implicit.dcm", 1, (64, 64)), ("MR_small_jp2klossless.dcm", 1, (64, 64)),
    ("MR_small_jpeg_ls_lossless.dcm", 1, (64, 64)), ("MR_small_padded.dcm", 1, (64, 64)),
    ("examples_overlay.dcm", 1, (300, 484)), ("image_dfl.dcm", 1, (512, 512)),
    ("liver_1frame.dcm", 1, (512, 512)), ("liver_expb_1frame.dcm", 1, (512, 512)),
    ("rtdose.dcm", 15, (10, 10)), ("rtdose_expb.dcm", 15, (10, 10)), ("rtdose_rle.dcm", 15, (10, 10)),
    ("rtdose_1frame.dcm", 1, (10, 10)), ("rtdose_rle_1frame.dcm", 1, (10, 10)),
    # colour: RGB, YBR_FULL / YBR_FULL_422 / YBR_RCT, palette; uncompressed, big endian, RLE, JPEG, JPEG-LS, J2K
    ("ExplVR_BigEnd.dcm", 1, (60, 80, 3)), ("GDCMJ2K_TextGBR.dcm", 1, (400, 400, 3)),
    ("SC_jpeg_no_color_transform.dcm", 1, (256, 256, 3)), ("SC_jpeg_no_color_transform_2.dcm", 1, (256, 256, 3)),
    ("SC_rgb_dcmtk_+eb+cr.dcm", 1, (100, 100, 3)), ("SC_rgb_dcmtk_+eb+cy+n1.dcm", 1, (100, 100, 3)),
    ("SC_rgb_dcmtk_+eb+cy+n2.dcm", 1, (100, 100, 3)), ("SC_rgb_dcmtk_+eb+cy+np.dcm", 1, (100, 100, 3)),
    ("SC_rgb_dcmtk_+eb+cy+s2.dcm", 1, (100, 100, 3)), ("SC_rgb_dcmtk_+eb+cy+s4.dcm", 1, (100, 100, 3)),
    ("SC_rgb_gdcm_KY.dcm", 1, (100, 100, 3)), ("SC_rgb_jls_lossy_line.dcm", 1, (100, 100, 3)),
    ("SC_rgb_jls_lossy_sample.dcm", 1, (100, 100, 3)), ("SC_rgb_jpeg.dcm", 1, (256, 256, 3)),
    ("SC_rgb_jpeg_app14_dcmd.dcm", 1, (256, 256, 3)), ("SC_rgb_jpeg_dcmd.dcm", 1, (256, 256, 3)),
    ("SC_rgb_jpeg_dcmtk.dcm", 1, (100, 100, 3)), ("SC_rgb_jpeg_gdcm.dcm", 1, (100, 100, 3)),
    ("SC_rgb_jpeg_lossy_gdcm.dcm", 1, (100, 100, 3)), ("SC_rgb_rle.dcm", 1, (100, 100, 3)),
    ("SC_rgb_rle_2frame.dcm", 2, (100, 100, 3)), ("SC_rgb_rle_16bit.dcm", 1, (100, 100, 3)),
    ("SC_rgb_rle_16bit_2frame.dcm", 2, (100, 100, 3)), ("SC_rgb_rle_32bit.dcm", 1, (100, 100, 3)),
    ("SC_rgb_rle_32bit_2frame.dcm", 2, (100, 100, 3)), ("SC_rgb_small_odd.dcm", 1, (3, 3, 3)),
    ("SC_rgb_small_odd_big_endian.dcm", 1, (3, 3, 3)), ("SC_rgb_small_odd_jpeg.dcm", 1, (3, 3, 3)),
    ("SC_ybr_full_422_uncompressed.dcm", 1, (100, 100, 3)), ("examples_jpeg2k.dcm", 1, (480, 640, 3)),
    ("examples_palette.dcm", 1, (350, 800, 3)), ("examples_rgb_color.dcm", 1, (240, 320, 3)),
    ("examples_ybr_color.dcm", 30, (240, 320, 3)),
]


def first_value(value: object) -> float:
    """The first of a multi-valued attribute (several windows: the first one is the default)."""
    return float(value[0] if isinstance(value, pydicom.multival.MultiValue) else value)


def linear_window(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1, the LINEAR VOI function, with output range [0, 1]."""
    low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    return np.where(x <= low, 0.0, np.where(x > high, 1.0, (x - (center - 0.5)) / (width - 1) + 0.5))


def reference_display(frame: np.ndarray, ds: pydicom.Dataset, frames: np.ndarray) -> np.ndarray:
    """One frame of ``ds.pixel_array`` (all of which are ``frames``) as displayed, from pydicom's public functions
    and PS3.3."""
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        return apply_color_lut(frame, ds)
    if frame.ndim == 3:
        return frame  # pixel_array already converted YBR to RGB (as_rgb=True, its default)
    windowed, rescaled = "WindowCenter" in ds, ds.get("RescaleSlope") is not None
    if frame.dtype == np.uint8 and int(ds.BitsStored) == 8 and not (windowed or rescaled):
        return frame  # plain 8-bit gray: the stored values themselves
    values = apply_modality_lut(frame, ds).astype(np.float64)
    if windowed:
        return linear_window(values, first_value(ds.WindowCenter), first_value(ds.WindowWidth))
    bits, signed = int(ds.BitsStored), int(ds.PixelRepresentation) == 1
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
    # no window, deeper than 8 bits: the values held, not the type's; a frame's own, or for several frames one range
    # for all: the whole file's
    several = int(ds.get("NumberOfFrames", 1) or 1) > 1
    span = apply_modality_lut(frames, ds).astype(np.float64) if several else values
    if bits > 8 and span.max() > span.min():
        held = [ds.get("SmallestImagePixelValue"), ds.get("LargestImagePixelValue")]
        if all(isinstance(v, int) for v in held):
            held = [v - 65536 if signed and v > 32767 else v for v in held]
            tagged = sorted((held[0] * slope + intercept, held[1] * slope + intercept))
            if held[1] > held[0] and tagged[0] <= span.min() and span.max() <= tagged[1]:
                return (values - tagged[0]) / (tagged[1] - tagged[0])  # the file's range: every frame alike
        return (values - span.min()) / (span.max() - span.min())
    low, high = sorted((low * slope + intercept, high * slope + intercept))
    return (values - low) / (high - low)


@pytest.mark.parametrize("name, frames, shape", IMAGES, ids=[case[0] for case in IMAGES])
def test_displayed_frames_match_pydicoms_own_decoding(name, frames, shape) -> None:
    path = shipped(name)
    ours = [pixels for _, pixels in iter_dicom_frames(read_dicom(path), str(path))]
    reference_ds = pydicom.dcmread(path)
    decoded = reference_ds.pixel_array
    decoded = decoded[None] if int(reference_ds.get("NumberOfFrames", 1) or 1) == 1 else decoded
    assert len(ours) == len(decoded) == frames
    for pixels, frame in zip(ours, decoded):
        reference = reference_display(frame, reference_ds, decoded)
        assert pixels.shape == reference.shape == shape
        if np.issubdtype(pixels.dtype, np.integer):  # stored values or LUT entries: exact, in the same type
            assert pixels.dtype == reference.dtype.newbyteorder("=")
            np.testing.assert_array_equal(pixels, reference)
        else:  # gray in [0, 1]
            assert pixels.dtype == np.float32 and 0.0 <= pixels.min() and pixels.max() <= 1.0
            np.testing.assert_allclose(pixels, reference, atol=1e-6)


#: Shipped files that are not readable images, and the reason each must give.
REFUSED = [
    ("MR_truncated.dcm", r"pixel data truncated: 8130 of the 8192 bytes"),
    ("JPEG-lossy.dcm", r"cannot decode its pixel data \(JPEG Extended .*1\.2\.840\.10008\.1\.2\.4\.51\): pylibjpeg: "),
    ("JPEG2000-embedded-sequence-delimiter.dcm",
     r"cannot decode its pixel data \(JPEG 2000 Image Compression, 1\.2\.840\.10008\.1\.2\.4\.91\): pylibjpeg: "),
    ("nested_priv_SQ.dcm", r"pixel data without the required Image Pixel attribute\(s\) Rows, Columns, .*BitsAllocated"),
    ("meta_missing_tsyntax.dcm", r"pixel data without the required Image Pixel attribute\(s\) Rows, Columns, "),
    ("badVR.dcm", r"NumberOfFrames is '1A', not an integer"),
    ("no_meta.dcm", r"not a DICOM image: no b'DICM' at byte 128"),
    ("rtstruct.dcm", r"not a DICOM image: no b'DICM' at byte 128"),
    ("ExplVR_LitEndNoMeta.dcm", r"not a DICOM image: no b'DICM' at byte 128"),
    ("ExplVR_BigEndNoMeta.dcm", r"not a DICOM image: no b'DICM' at byte 128"),
    ("rtplan.dcm", r"DICOM file has no pixel data"),
    ("test-SR.dcm", r"a DICOM structured report \(measurements as text\), not an image"),
    ("DICOMDIR", r"a DICOMDIR \(the directory of a CD or export\), not an image: the images are the files it lists"),
    ("waveform_ecg.dcm", r"DICOM file has no pixel data"), ("UN_sequence.dcm", r"DICOM file has no pixel data"),
]


def refusal(path: Path) -> str:
    """The message :func:`read_dicom` or the decoding of every frame refuses ``path`` with."""
    with pytest.raises(UnreadableImageError) as caught, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid values these files hold
        for _ in iter_dicom_frames(read_dicom(path), str(path)):
            pass
    return str(caught.value)


@pytest.mark.parametrize("name, reason", REFUSED, ids=[case[0] for case in REFUSED])
def test_bad_files_are_refused_in_one_line_naming_the_file_and_the_reason(name, reason) -> None:
    message = refusal(shipped(name))
    assert message.startswith(str(shipped(name)) + ": ")
    assert "\n" not in message and len(message) < len(str(shipped(name))) + 300
    assert "force=True" not in message and "all available plugins" not in message
    assert re.search(reason, message), message


# --------------------------------------------------------------- files a mature reader reads (dcm2niix, GDCM)
def frames_of(path: Path) -> list[np.ndarray]:
    return [pixels for _, pixels in iter_dicom_frames(read_dicom(path), str(path))]


@pytest.mark.parametrize("name, implicit_vr, little_endian", [
    ("CT_small.dcm", True, True), ("MR_small.dcm", False, True), ("MR_small_bigendian.dcm", False, False)])
def test_a_data_set_without_preamble_and_file_meta_reads_like_the_original(tmp_path, name, implicit_vr,
                                                                           little_endian) -> None:
    """ACR-NEMA-style exports: the data set alone, no 128-byte preamble, no b"DICM", no File Meta Information."""
    ds = pydicom.dcmread(shipped(name))
    ds.preamble, ds.file_meta = None, FileMetaDataset()
    bare = tmp_path / "bare.dcm"
    ds.save_as(bare, implicit_vr=implicit_vr, little_endian=little_endian, enforce_file_format=False)
    assert bare.read_bytes()[128:132] != b"DICM"
    for ours, original in zip(frames_of(bare), frames_of(shipped(name)), strict=True):
        np.testing.assert_array_equal(ours, original)


@pytest.mark.parametrize("name, implicit_vr, little_endian", [
    ("CT_small.dcm", True, True), ("MR_small.dcm", False, True), ("MR_small_bigendian.dcm", False, False)])
def test_a_bare_data_set_named_without_a_suffix_is_found_by_its_first_element(tmp_path, name, implicit_vr,
                                                                              little_endian) -> None:
    """An ACR-NEMA-style CD export names its files ``IM0001``: no suffix, no b"DICM"; as dcm2niix, told by the
    first element's group (0008)."""
    ds = pydicom.dcmread(shipped(name))
    ds.preamble, ds.file_meta = None, FileMetaDataset()
    path = tmp_path / "IM0001"
    ds.save_as(path, implicit_vr=implicit_vr, little_endian=little_endian, enforce_file_format=False)
    assert source_kind(path) == "dicom"
    np.testing.assert_array_equal(read_image(path).pixels, frames_of(shipped(name))[0])


def test_a_binary_file_named_without_a_suffix_is_not_taken_for_dicom(tmp_path) -> None:
    (tmp_path / "blob").write_bytes(b"\x89PNG" + bytes(300))
    shutil.copy(Path(pydicom.__file__).parent / "data" / "test_files" / "zipMR.gz", tmp_path / "zipMR")
    assert source_kind(tmp_path / "blob") is None and source_kind(tmp_path / "zipMR") is None


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm"])
def test_file_meta_without_transfer_syntax_takes_the_encoding_found_while_parsing(tmp_path, name) -> None:
    ds = pydicom.dcmread(shipped(name))
    implicit_vr, little_endian = ds.original_encoding
    del ds.file_meta.TransferSyntaxUID
    path = tmp_path / "no_syntax.dcm"
    ds.save_as(path, implicit_vr=implicit_vr, little_endian=little_endian)
    assert "TransferSyntaxUID" not in pydicom.dcmread(path).file_meta
    for ours, original in zip(frames_of(path), frames_of(shipped(name)), strict=True):
        np.testing.assert_array_equal(ours, original)


def test_compressed_pixel_data_without_transfer_syntax_is_refused_not_guessed(tmp_path) -> None:
    ds = pydicom.dcmread(shipped("JPEG2000.dcm"))
    del ds.file_meta.TransferSyntaxUID
    path = tmp_path / "j2k_no_syntax.dcm"
    ds.save_as(path, implicit_vr=False, little_endian=True)
    assert refusal(path).endswith("compressed (encapsulated) pixel data without a TransferSyntaxUID to tell its codec")


@pytest.mark.parametrize("content", [b"this is not a DICOM file\n", np.random.default_rng(0).bytes(5000),
                                     (Path(pydicom.__file__).parent / "data" / "test_files" / "zipMR.gz")],
                         ids=["text", "random", "gzip"])
def test_non_dicom_bytes_named_dcm_are_refused_not_read_as_garbage(tmp_path, content) -> None:
    path = tmp_path / "not_dicom.dcm"
    path.write_bytes(content if isinstance(content, bytes) else content.read_bytes())
    assert "not a DICOM" in refusal(path)


def test_a_transfer_syntax_pydicom_cannot_decode_is_named(tmp_path) -> None:
    """Ultrasound cine loops stored as H.264 video: pydicom has no decoder for them."""
    ds = pydicom.dcmread(shipped("JPEG2000.dcm"))
    ds.file_meta.TransferSyntaxUID = pydicom.uid.MPEG4HP41
    path = tmp_path / "h264.dcm"
    ds.save_as(path)
    assert refusal(path).endswith(f"pydicom {pydicom.__version__} has no decoder for its pixel data (MPEG-4 AVC/H.264 "
                                  f"High Profile / Level 4.1, 1.2.840.10008.1.2.4.102)")


def test_a_missing_codec_is_named_with_what_to_install() -> None:
    """JPEG-LS where pylibjpeg (the installed codec) is not: run in a process that cannot import it."""
    script = ("import sys; sys.modules['pylibjpeg'] = None\n"
              "from monai_ext.io.dicom import read_dicom\n"
              "from monai_ext.io.errors import UnreadableImageError\n"
              "try:\n    read_dicom(sys.argv[1])\nexcept UnreadableImageError as e:\n    print(e)\n")
    path = shipped("MR_small_jpeg_ls_lossless.dcm")
    out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True,
                         timeout=120, cwd=Path(__file__).resolve().parents[2]).stdout.strip()
    assert out.startswith(f"{path}: no installed codec decodes its pixel data (JPEG-LS Lossless Image Compression, "
                          f"1.2.840.10008.1.2.4.80); install one of: ")
    assert "pylibjpeg-libjpeg" in out and "pyjpegls" in out and "\n" not in out


@pytest.mark.parametrize("name, attribute", [
    ("CT_small.dcm", "SamplesPerPixel"), ("CT_small.dcm", "PhotometricInterpretation"),
    ("CT_small.dcm", "BitsStored"),  # 16 of 16 bits: the default is the value left out
    ("examples_overlay.dcm", "PixelRepresentation"),  # unsigned: likewise
])
def test_a_monochrome_file_without_a_defaultable_pixel_attribute_reads_like_the_original(tmp_path, name,
                                                                                        attribute) -> None:
    """Old and hand-made exports leave out Image Pixel attributes that GDCM and dcm2niix default: one sample,
    MONOCHROME2, unsigned, every allocated bit stored."""
    ds = pydicom.dcmread(shipped(name))
    delattr(ds, attribute)
    path = tmp_path / "cut.dcm"
    ds.save_as(path)
    for ours, original in zip(frames_of(path), frames_of(shipped(name)), strict=True):
        np.testing.assert_array_equal(ours, original)


@pytest.mark.parametrize("attribute", ["PhotometricInterpretation", "BitsAllocated", "Rows"])
def test_colour_layout_and_sizes_are_not_guessed(tmp_path, attribute) -> None:
    ds = pydicom.dcmread(shipped("SC_rgb_small_odd.dcm"))
    delattr(ds, attribute)
    path = tmp_path / "cut.dcm"
    ds.save_as(path)
    with pytest.raises(UnreadableImageError, match=f"without the required Image Pixel attribute\\(s\\) {attribute}"):
        read_dicom(path)
