"""The single-image loader: every container, same pixels for the same picture; clear errors naming the file."""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pydicom
import pytest
from monai.transforms import Compose
from PIL import Image

from monai_ext.io.errors import UnreadableImageError, root_cause
from monai_ext.io.images import (
    apply_orientation,
    frames_held,
    image_stem,
    is_single_image,
    picture_orientation,
    read_image,
    source_kind,
    stored_shape,
    undo_orientation,
    unique_output_stems,
)
from monai_ext.io.writers import LPS_AFFINE, write_dicom, write_dicom_frames
from monai_ext.transforms.loading import LoadUltrasoundImage, LoadUltrasoundImaged

GRAY = np.random.default_rng(0).integers(0, 256, (20, 30), np.uint8)
RGB = np.random.default_rng(1).integers(0, 256, (20, 30, 3), np.uint8)


def bt601(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of uint8 RGB, written out, in [0, 1]."""
    return (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255.0


def write_gray(kind: str, path_stem) -> str:
    """GRAY written as ``kind``; returns the path."""
    if kind == "dcm":
        return str(write_dicom(GRAY, f"{path_stem}.dcm"))
    if kind == "nii":
        nib.save(nib.Nifti1Image(GRAY.T.copy(), LPS_AFFINE), f"{path_stem}.nii.gz")
        return f"{path_stem}.nii.gz"
    if kind == "avi":
        writer = cv2.VideoWriter(f"{path_stem}.avi", cv2.VideoWriter_fourcc(*"FFV1"), 5, (30, 20), isColor=True)
        writer.write(cv2.cvtColor(GRAY, cv2.COLOR_GRAY2BGR))
        writer.write(np.zeros((20, 30, 3), np.uint8))
        writer.release()
        return f"{path_stem}.avi"
    Image.fromarray(GRAY).save(f"{path_stem}.{kind}")
    return f"{path_stem}.{kind}"


@pytest.mark.parametrize("kind", ["png", "bmp", "tiff", "dcm", "nii", "avi"])
def test_the_same_gray_picture_reads_the_same_from_every_lossless_container(tmp_path, kind) -> None:
    out = LoadUltrasoundImage()(write_gray(kind, tmp_path / "a"))
    assert out.shape == (1, 20, 30) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], GRAY.astype(np.float32) / np.float32(255))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "I;16", "1"])
def test_png_modes(tmp_path, mode: str) -> None:
    if mode == "I;16":
        img, expected = Image.fromarray(GRAY.astype(np.uint16) * 257), GRAY / 255.0
    elif mode == "1":
        img = Image.fromarray(GRAY > 127)
        expected = (GRAY > 127).astype(float)
    else:
        img = Image.fromarray(RGB).convert(mode)
        expected = bt601(np.asarray(img.convert("RGB")).astype(np.float64))
    img.save(tmp_path / "x.png")
    np.testing.assert_allclose(LoadUltrasoundImage()(tmp_path / "x.png")[0], expected, atol=1 / 255)


@pytest.mark.parametrize("photometric", [0, 1])
def test_a_16_bit_white_is_zero_tiff_is_shown_as_its_viewer_shows_it(tmp_path, photometric: int) -> None:
    """Pillow inverts an 8-bit WhiteIsZero TIFF itself but not a 16-bit one, which came out as its negative; the
    pretraining bundle's PIL reader gets the same picture."""
    from monai_ext.io.images import pil_display_image

    stored = (np.arange(600).reshape(20, 30) * 100).astype(np.uint16)
    Image.fromarray(stored).save(tmp_path / "x.tif", tiffinfo={262: photometric})
    expected = 65535 - stored if photometric == 0 else stored
    np.testing.assert_array_equal(read_image(tmp_path / "x.tif").pixels, expected)
    np.testing.assert_array_equal(np.asarray(pil_display_image(Image.open(tmp_path / "x.tif")), np.uint16), expected)


@pytest.mark.parametrize("values", [
    np.random.default_rng(2).random((20, 30)).astype(np.float32),  # display values: shown as they are
    np.random.default_rng(3).normal(500.0, 200.0, (20, 30)).astype(np.float32),  # ImageJ / MATLAB intensities
    np.random.default_rng(4).uniform(-60.0, 0.0, (20, 30)).astype(np.float32),  # decibels
    np.random.default_rng(5).integers(-1000, 1000, (20, 30)).astype(np.int16),  # signed 16-bit
])
def test_tiff_intensities_outside_the_display_range_are_windowed_like_volumes(tmp_path, values: np.ndarray) -> None:
    """Float TIFFs beyond [0, 1] and signed ones below 0 were clipped to white or black; such values are windowed
    to their 0.5-99.5 percentiles, as volumes of those types are."""
    Image.fromarray(values).save(tmp_path / "x.tif")
    if values.dtype == np.float32 and 0.0 <= values.min() and values.max() <= 1.0:
        expected = values
    else:
        low, high = np.percentile(values.astype(np.float64), [0.5, 99.5])
        expected = np.clip((values - low) / (high - low), 0.0, 1.0)
    np.testing.assert_allclose(LoadUltrasoundImage()(tmp_path / "x.tif")[0], expected, atol=1e-5)


def test_dicom_rgb_and_monochrome1(tmp_path) -> None:
    write_dicom(RGB, tmp_path / "rgb.dcm")
    np.testing.assert_allclose(LoadUltrasoundImage()(tmp_path / "rgb.dcm")[0], bt601(RGB.astype(float)), atol=1 / 255)
    path = write_dicom(GRAY, tmp_path / "m1.dcm")
    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(path)
    np.testing.assert_allclose(LoadUltrasoundImage()(path)[0], (255 - GRAY) / 255.0, atol=1e-6)


def test_multi_frame_dicom_gives_its_first_frame_and_its_region(tmp_path) -> None:
    frames = np.stack([GRAY, 255 - GRAY])
    path = write_dicom_frames(frames, tmp_path / "cine.dcm", region_box=(2, 3, 25, 18))
    image = read_image(path)
    np.testing.assert_array_equal(image.pixels, GRAY)
    assert image.region_box == (2, 3, 25, 18)


@pytest.mark.parametrize("regions", [
    [(1, 2, (0, 0, 60, 30)), (3, 3, (0, 30, 60, 40))],  # colour flow above its spectrum: the loaders had no region
    [(1, 1, (30, 0, 60, 40)), (1, 1, (0, 0, 30, 40))],  # a dual view listed right to left: the loaders took the right
    [(1, 1, (0, 0, 60, 40)), (1, 2, (10, 5, 40, 30))],  # a colour box inside its B-mode region
    [(3, 3, (0, 20, 60, 40))],                          # a spectrum alone: no region for either
])
def test_the_loaders_take_the_region_of_the_view_the_corpus_reads_first(tmp_path, regions) -> None:
    """A file gives the same pixels wherever it is read: the single-image loaders' region is the corpus's first
    view's, not the first tissue region listed (a colour-flow region got none, and the field of view was detected
    on the whole screen, spectrum included)."""
    from pydicom.dataset import Dataset

    from monai_ext.data.frames import iter_frames

    path = write_dicom_frames(np.tile(GRAY, (2, 2))[None], tmp_path / "duplex.dcm")
    ds = pydicom.dcmread(path)
    items = []
    for spatial, data_type, (x0, y0, x1, y1) in regions:
        item = Dataset()
        item.RegionSpatialFormat, item.RegionDataType = spatial, data_type
        item.RegionLocationMinX0, item.RegionLocationMinY0 = x0, y0
        item.RegionLocationMaxX1, item.RegionLocationMaxY1 = x1 - 1, y1 - 1
        items.append(item)
    ds.SequenceOfUltrasoundRegions = pydicom.Sequence(items)
    ds.save_as(path)
    no_view = all(spatial != 1 for spatial, _, _ in regions)  # the corpus skips such a file: no tissue region
    corpus = [None] if no_view else [frame.region_box for frame in iter_frames(path)]
    assert read_image(path).region_box == corpus[0]


@pytest.mark.parametrize("blank", ["RegionLocationMinX0", "RegionLocationMaxY1"])
@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_a_region_item_missing_its_location_is_ignored_not_the_file(tmp_path, blank, how) -> None:
    """De-identification empties or drops region attributes: the whole file was refused as unreadable (AttributeError,
    or int() of None), where the region alone is no box."""
    path = write_dicom_frames(GRAY[None], tmp_path / "scan.dcm", region_box=(2, 3, 25, 18))
    ds = pydicom.dcmread(path)
    region = ds.SequenceOfUltrasoundRegions[0]
    if how == "deleted":
        delattr(region, blank)
    else:
        region[blank].value = None
    ds.save_as(path)
    with pytest.warns(UserWarning, match=f"an ultrasound region lacks a whole-number {blank}; ignored"):
        image = read_image(path)
    np.testing.assert_array_equal(image.pixels, GRAY)
    assert image.region_box is None


@pytest.mark.parametrize("name, values", [("RescaleSlope", ["2", "2"]), ("RescaleIntercept", ["-10", "-10"])])
def test_a_rescale_of_several_values_reads_its_first(tmp_path, name, values) -> None:
    """float() of a MultiValue made the file unreadable."""
    path = write_dicom_frames(GRAY[None], tmp_path / "scan.dcm")
    ds = pydicom.dcmread(path)
    ds.RescaleSlope, ds.RescaleIntercept = "1", "0"
    setattr(ds, name, values)
    ds.save_as(path)
    with pytest.warns(UserWarning, match=f"{name} holds 2 values; the first, '{values[0]}', is used"):
        image = read_image(path)
    assert image.pixels.shape == GRAY.shape


@pytest.mark.parametrize("header", ["RGB", "YBR_FULL_422"])
def test_a_jfif_stream_labelled_rgb_is_read_as_ycbcr(tmp_path, header) -> None:
    """A JFIF frame (YCbCr by definition) in a file whose header says RGB, as many exports write it: read as RGB,
    red came out blue-violet and gray tissue green-tinted. Smooth colours, so lossy JPEG keeps them close."""
    rows, cols = np.mgrid[0:32, 0:48]
    scene = np.stack([np.full_like(rows, 200), 30 + 2 * cols, 220 - 3 * rows], -1).astype(np.uint8)
    scene[:, :8] = 117  # gray B-mode: must stay gray
    path = write_dicom_frames(scene[None], tmp_path / "exported.dcm", "YBR_FULL_422", "jpeg_baseline")
    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation = header
    ds.save_as(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pixels = read_image(path).pixels
    error = np.abs(pixels.astype(int) - scene.astype(int))
    assert error[:, :6].max() <= 4 and error[:, 12:].max() <= 6  # off the edge that 4:2:2 chroma blurs
    assert np.ptp(pixels[:, :6].astype(int), axis=-1).mean() <= 2  # gray stays gray (read as RGB: 11)
    ours = [str(w.message) for w in caught if str(w.message).startswith(str(path))]
    assert ours == ([f"{path}: PhotometricInterpretation is 'RGB' but its JPEG stream's markers say YCbCr; read as "
                     "'YBR_FULL_422'"] if header == "RGB" else [])


def _without_app0(stream: bytes) -> bytes:
    return stream[:2] + stream[4 + int.from_bytes(stream[4:6], "big"):]


def _rgb_scene() -> np.ndarray:
    rows, cols = np.mgrid[0:32, 0:48]
    scene = np.stack([np.full_like(rows, 200), 30 + 2 * cols, 220 - 3 * rows], -1).astype(np.uint8)
    scene[:, :8] = 117  # gray B-mode
    return scene


def _with_rgb_ids(stream: bytes) -> bytes:
    """``stream`` with its three components named 'R', 'G', 'B' in the frame header and the scan header."""
    named = bytearray(stream)
    sof, sos = named.find(b"\xff\xc0"), named.find(b"\xff\xda")
    for k, c in enumerate(b"RGB"):
        named[sof + 10 + 3 * k], named[sos + 5 + 2 * k] = c, c
    return bytes(named)


def _rgb_id_stream(scene: np.ndarray) -> bytes:
    """A JPEG whose planes hold R, G, B untransformed, with component ids 'R', 'G', 'B' (as Adobe-style encoders
    write RGB): PIL writes the planes as given when told the image is YCbCr; the ids are then set."""
    buffer = io.BytesIO()
    Image.fromarray(scene, "YCbCr").save(buffer, "JPEG", quality=95, subsampling=0)
    return _with_rgb_ids(_without_app0(buffer.getvalue()))


def _jfif_stream_with_rgb_ids(scene: np.ndarray) -> bytes:
    """A JFIF (YCbCr) stream whose components are nevertheless named 'R', 'G', 'B': libjpeg goes by JFIF."""
    return _with_rgb_ids(cv2.imencode(".jpg", scene[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())


def _adobe_ycbcr_stream(scene: np.ndarray) -> bytes:
    """A YCbCr JPEG with an Adobe APP14 marker, transform 1, in place of JFIF."""
    stream = _without_app0(cv2.imencode(".jpg", scene[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())
    return stream[:2] + b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x01" + stream[2:]


@pytest.mark.parametrize("header, make, truth", [
    ("YBR_FULL_422", _rgb_id_stream, "RGB"),       # read as YCbCr: gray (117, 117, 117) came out (0, 133, 0)-like
    ("RGB", _adobe_ycbcr_stream, "YCbCr"),          # read as RGB: gray tissue green-tinted, contrast lost
])
def test_a_jpeg_streams_colour_markers_win_over_the_header(tmp_path, header, make, truth) -> None:
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    scene = _rgb_scene()
    path = write_dicom_frames(scene[None], tmp_path / "exported.dcm", "YBR_FULL_422", "jpeg_baseline")
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PhotometricInterpretation = header
    ds.PixelData = encapsulate([make(scene)])
    ds.save_as(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pixels = read_image(path).pixels
    assert np.abs(pixels.astype(int) - scene.astype(int))[:, :6].max() <= 4
    assert np.abs(pixels.astype(int) - scene.astype(int))[:, 12:].max() <= 8
    assert any(f"{path}: PhotometricInterpretation is {header!r} but its JPEG stream's markers say {truth}"
               in str(w.message) for w in caught)


def test_errors_name_the_file(tmp_path) -> None:
    (tmp_path / "notes.dcm").write_text("not dicom")
    (tmp_path / "empty.png").write_bytes(b"")
    path = write_dicom(GRAY, tmp_path / "nopix.dcm")
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 2), np.float32), LPS_AFFINE), str(tmp_path / "blank.nii.gz"))
    for name, reason in (("notes.dcm", "not a DICOM image"), ("empty.png", r"empty file \(0 bytes\)"),
                         ("nopix.dcm", "no pixel data"), ("blank.nii.gz", "volume is constant"),
                         ("missing.png", "cannot open")):
        with pytest.raises(UnreadableImageError, match=f"{name}.*{reason}"):
            LoadUltrasoundImage()(tmp_path / name)


@pytest.mark.parametrize("name, kind", [("a.PNG", "image"), ("b.nii.gz", "nifti"), ("c.nii", "nifti"),
                                        ("d.mhd", "itk"), ("e.DCM", "dicom"), ("f.mp4", "video"), ("g.txt", None)])
def test_source_kind_by_suffix_in_any_case(name, kind) -> None:
    assert source_kind(name) == kind


@pytest.mark.parametrize("name, stem, single", [
    ("case.nii.gz", "case", True), ("Case.NII.GZ", "Case", True), ("scan.dcm", "scan", True), ("scan.dicom", "scan", True),
    ("a.b.png", "a.b", True), ("vol.nrrd", "vol", True), ("loop.mp4", "loop", False), ("notes.txt", "notes", False),
])
def test_image_stem_drops_the_whole_image_suffix(name: str, stem: str, single: bool) -> None:
    assert image_stem(name) == stem and is_single_image(name) is single


@pytest.mark.parametrize("paths, names", [
    (["d/a.png", "d/b.dcm"], ["a", "b"]),                                        # the usual case: unchanged
    (["d/x/scan.dcm", "d/y/scan.dcm", "d/z.png"], ["x__scan_dcm", "y__scan_dcm", "z"]),  # a recursive export folder
    (["d/case1.png", "d/case1.nrrd"], ["case1_png", "case1_nrrd"]),             # one case in two formats
    (["d/v.nii.gz", "e/v.nii.gz"], ["d__v_nii_gz", "e__v_nii_gz"]),
    (["d/a.png", "d/a.png"], ["a_png", "a_png_2"]),                              # the same file listed twice
    # names that differ only in case are one file on macOS and Windows
    (["d/x/Scan.dcm", "d/y/scan.dcm"], ["x__Scan_dcm", "y__scan_dcm"]),
    (["d/IMG1.png", "d/img1.png"], ["IMG1_png", "img1_png_2"]),
    # a suffixed name must not take the own name of another input, listed later or earlier, in any case
    (["d/a.png", "d/a.png", "d/a_png_2.png"], ["a_png", "a_png_3", "a_png_2"]),
    (["d/a_png_2.png", "d/a.png", "d/a.png"], ["a_png_2", "a_png", "a_png_3"]),
    (["d/A.png", "d/a.png", "d/A_PNG_2.png", "d/a_png_3.png"], ["A_png", "a_png_4", "A_PNG_2", "a_png_3"]),
])
def test_unique_output_stems_never_give_two_inputs_one_name(tmp_path, paths: list[str], names: list[str]) -> None:
    from monai_ext.io.images import unique_output_stems

    assert unique_output_stems([tmp_path / p for p in paths]) == names


@pytest.mark.parametrize("name", ["IM0001", "1.2.840.113619.2.55.3"])  # a DICOMDIR export's name; a UID
def test_dicom_without_a_suffix_is_read_as_dicom_by_its_content(tmp_path, name: str) -> None:
    path = write_dicom(GRAY, tmp_path / name)
    assert source_kind(path) == "dicom" and is_single_image(path) and image_stem(path) == name
    np.testing.assert_array_equal(read_image(path).pixels, GRAY)


def test_a_file_without_a_suffix_that_is_no_dicom_stays_unsupported(tmp_path) -> None:
    (tmp_path / "README").write_bytes(b"x" * 200)
    (tmp_path / "short").write_bytes(b"DICM")  # shorter than the 128-byte preamble
    assert source_kind(tmp_path / "README") is None and source_kind(tmp_path / "short") is None
    assert not is_single_image(tmp_path / "README")


def test_names_with_a_known_suffix_are_never_opened_to_look_for_dicom(tmp_path, monkeypatch) -> None:
    def must_not_open(path):
        raise AssertionError(f"opened {path}")

    with monkeypatch.context() as patch:
        patch.setattr("monai_ext.io.images.has_dicom_signature", must_not_open)
        for name, kind in (("a.png", "image"), ("b.dcm", "dicom"), ("c.nii.gz", "nifti"), ("d.MP4", "video")):
            assert source_kind(tmp_path / name) == kind
    # any other name is looked into: Siemens' .IMA, a UID, no suffix; notes stay notes
    write_dicom(GRAY, tmp_path / "US0001.IMA")
    (tmp_path / "notes.txt").write_text("not an image")
    assert [source_kind(tmp_path / n) for n in ("US0001.IMA", "notes.txt")] == ["dicom", None]
    assert is_single_image(tmp_path / "US0001.IMA") and not is_single_image(tmp_path / "notes.txt")
    np.testing.assert_array_equal(read_image(tmp_path / "US0001.IMA").pixels, GRAY)


def test_under_a_suffix_only_the_dicom_magic_counts(tmp_path) -> None:
    """Bare data sets (no preamble, no magic) are recognised by a first element of group 0008 only under names
    without a suffix, as ACR-NEMA-style exports name files: an MHD's voxel file starting 08 00 05 00 is no DICOM."""
    voxels = np.array([8, 5] + [0] * 200, "<u2").tobytes()
    (tmp_path / "sweep.raw").write_bytes(voxels)
    (tmp_path / "IM0002").write_bytes(voxels)
    assert source_kind(tmp_path / "sweep.raw") is None and source_kind(tmp_path / "IM0002") == "dicom"


def test_a_named_pipe_is_not_opened_to_look_for_dicom(tmp_path) -> None:
    """A FIFO left in an acquisition folder: opening it waits for a writer for ever, so a folder walk hung."""
    import os
    import threading

    os.mkfifo(tmp_path / "acquisition.log")
    found: list[object] = []
    looker = threading.Thread(target=lambda: found.append(source_kind(tmp_path / "acquisition.log")), daemon=True)
    looker.start()
    looker.join(timeout=60)  # microseconds when it does not open the pipe; a hang leaves ``found`` empty
    assert found == [None]


@pytest.mark.parametrize("name, reason", [("empty.png", r"empty file \(0 bytes\)"), ("corrupt.png", "cannot decode")])
def test_root_cause_of_a_pipeline_error_keeps_the_message_naming_the_file(tmp_path, name: str, reason: str) -> None:
    """MONAI's Compose wraps the loader's error in a RuntimeError; the decoder's own error (OpenCV's assertion on
    no bytes, PIL's "cannot identify") lies below the project's error and names no file."""
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(RuntimeError) as caught:
        Compose([LoadUltrasoundImaged("image")])({"image": str(tmp_path / name)})
    cause = root_cause(caught.value)
    assert cause.startswith("UnreadableImageError: ") and name in cause
    assert re.search(reason, cause) and "OpenCV" not in cause, cause


def test_over_long_names_are_cut_to_fit_the_filesystem_and_stay_distinct(tmp_path) -> None:
    long_a, long_b = "超" * 80, "超" * 79 + "a"  # 240 bytes each in UTF-8, the same first 200
    names = unique_output_stems([tmp_path / "a_first.png", tmp_path / f"{long_a}.png", tmp_path / f"{long_b}.dcm",
                                 tmp_path / "z_last.png"])
    assert names[0] == "a_first" and names[3] == "z_last" and len(set(names)) == 4
    for name in names[1:3]:
        assert name.startswith("超" * 60) and len(name.encode()) <= 200
        (tmp_path / f"{name}_overlay.png").write_bytes(b"fits")  # the longest suffix the writers add


def _jfif_stream() -> bytes:
    stream = cv2.imencode(".jpg", np.full((8, 8, 3), 90, np.uint8))[1].tobytes()
    assert stream[2:4] == b"\xff\xe0" and stream[6:11] == b"JFIF\x00"  # OpenCV writes the APP0 segment first
    return stream


@pytest.mark.parametrize("edit, rgb", [
    (lambda s: s, False),                                          # JFIF: YCbCr
    (lambda s: s[:2] + b"\xff\xff\xff" + s[2:], False),            # fill bytes before the marker (T.81 B.1.1.2)
    (lambda s: s[:2] + b"\xff\xd0" + s[2:], False),                # a marker without a length first
    (_without_app0, None),                                         # no APP0, ids 1, 2, 3: nothing said
    (lambda s: s[:5], None),                                       # cut inside the first segment
    (lambda s: b"\x89PNG" + s[4:], None),                          # not a JPEG stream
    (lambda s: _without_app0(s)[:2] + b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00" + _without_app0(s)[2:],
     True),                                                        # Adobe APP14, transform 0: RGB
    (lambda s: _without_app0(s)[:2] + b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x01" + _without_app0(s)[2:],
     False),                                                       # Adobe APP14, transform 1: YCbCr
])
def test_the_colour_markers_are_found_as_the_jpeg_standard_lays_out_the_header(edit, rgb) -> None:
    from monai_ext.io.dicom import _jpeg_stream_is_rgb

    assert _jpeg_stream_is_rgb(edit(_jfif_stream())) is rgb


def test_component_ids_r_g_b_say_rgb_unless_jfif_says_otherwise() -> None:
    from monai_ext.io.dicom import _jpeg_stream_is_rgb

    assert _jpeg_stream_is_rgb(_rgb_id_stream(_rgb_scene())) is True
    assert _jpeg_stream_is_rgb(_jfif_stream_with_rgb_ids(_rgb_scene())) is False  # libjpeg's order: JFIF first


@pytest.mark.parametrize("header", ["RGB", "YBR_FULL_422"])
def test_a_jfif_stream_with_rgb_ids_is_read_as_ycbcr(tmp_path, header) -> None:
    from pydicom.encaps import encapsulate

    scene = _rgb_scene()
    path = write_dicom_frames(scene[None], tmp_path / "exported.dcm", "YBR_FULL_422", "jpeg_baseline")
    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation = header
    ds.PixelData = encapsulate([_jfif_stream_with_rgb_ids(scene)])
    ds.save_as(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pixels = read_image(path).pixels
    assert np.abs(pixels.astype(int) - scene.astype(int))[:, :6].max() <= 4


#: Every EXIF Orientation (EXIF 2.3, tag 0x0112) -> what a viewer does to the stored (H, W) pixels to show them.
ALL_ORIENTATIONS = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
                    5: lambda a: np.swapaxes(a, 0, 1), 6: lambda a: np.rot90(a, -1),
                    7: lambda a: np.swapaxes(np.rot90(a, 2), 0, 1),
                    8: lambda a: np.rot90(a, 1)}


@pytest.mark.parametrize("suffix", ["png", "jpg"])
@pytest.mark.parametrize("orientation", [2, 3, 6, 8])
def test_a_picture_with_an_exif_orientation_is_read_upright_on_every_path(tmp_path, suffix, orientation) -> None:
    """A phone's photograph of a scanner's screen stores its pixels sideways and says so in EXIF; every viewer
    shows it upright, and masks are drawn on that. It was read sideways (and PNGs through OpenCV ignored it)."""
    from monai.data import PILReader

    from monai_ext.io.images import pil_display_image

    path = tmp_path / f"photo.{suffix}"
    exif = Image.new("L", (1, 1)).getexif()
    exif[0x0112] = orientation
    Image.fromarray(GRAY).save(path, exif=exif.tobytes(), **({"quality": 100} if suffix == "jpg" else {}))
    with Image.open(path) as img:
        stored = np.asarray(img.convert("L"))  # the decoded pixels as stored, before any orientation
    expected = ALL_ORIENTATIONS[orientation](stored) / 255.0
    read = read_image(path).pixels
    np.testing.assert_allclose(np.asarray(read, np.float64) / 255.0, expected, atol=1e-6)
    loaded = LoadUltrasoundImaged("image")({"image": str(path)})["image"]
    np.testing.assert_allclose(np.asarray(loaded)[0], expected, atol=1e-6)
    monai_read = PILReader(converter=pil_display_image).get_data(PILReader(converter=pil_display_image).read(path))[0]
    np.testing.assert_allclose(np.asarray(monai_read, np.float64).T / 255.0, expected, atol=1e-6)  # MONAI's (W, H)


@pytest.mark.parametrize("orientation", [3, 6])
def test_a_jpeg_named_png_is_read_upright_as_its_mask_is(tmp_path, orientation) -> None:
    """The OpenCV path took the .png name's word: a JPEG with an EXIF orientation, saved as .png by a PACS export,
    was read unrotated while its mask (read through PIL) was rotated."""
    from monai_ext.transforms.masks import LoadMask

    path = tmp_path / "scan.png"
    exif = Image.new("L", (1, 1)).getexif()
    exif[0x0112] = orientation
    Image.fromarray(GRAY).save(path, format="JPEG", quality=100, exif=exif.tobytes())
    with Image.open(path) as img:
        stored = np.asarray(img.convert("L"))
    expected = ALL_ORIENTATIONS[orientation](stored)
    np.testing.assert_allclose(np.asarray(read_image(path).pixels, np.float64), expected, atol=1)
    assert LoadMask("binary")(str(path)).shape[-2:] == expected.shape


def test_a_png_beyond_pils_pixel_limit_is_refused_not_decoded_into_gigabytes(tmp_path, monkeypatch) -> None:
    """OpenCV decoded PNGs before any size check: a small upload of 15000 x 15000 pixels took gigabytes."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 32 * 32)  # PIL refuses beyond twice the limit
    cv2.imwrite(str(tmp_path / "big.png"), np.zeros((100, 100), np.uint8))
    decoded = []
    real_imdecode = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decoded.append(1) or real_imdecode(*a))
    with pytest.raises(Exception, match="(decompression bomb|exceeds limit)"):
        read_image(tmp_path / "big.png")
    assert decoded == []


@pytest.mark.parametrize("compression", ["raw", "tiff_lzw"])
@pytest.mark.parametrize("mode", ["L", "I;16", "RGB"])
@pytest.mark.parametrize("orientation", sorted(ALL_ORIENTATIONS))
def test_a_tiff_with_an_exif_orientation_is_read_upright(tmp_path, compression, mode, orientation) -> None:
    """Pillow 11+ memory-mapped an uncompressed one-strip TIFF of orientation 5-8 at its upright size: the pixels
    came out scrambled, with no error, on every path that opens the file by name (images, masks, MONAI's reader).
    Expected pixels come from the array written, not from a decoder."""
    from monai.data import PILReader
    from PIL import TiffImagePlugin

    from monai_ext.io.images import pil_display_image
    from monai_ext.transforms.masks import read_mask_file

    stored = {"L": GRAY, "I;16": GRAY.astype(np.uint16) * 257, "RGB": np.stack([GRAY, GRAY[::-1], 255 - GRAY], -1)}
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[0x0112] = orientation
    path = tmp_path / "scan.tif"
    Image.fromarray(stored[mode]).save(path, tiffinfo=tags, **({} if compression == "raw" else
                                                                {"compression": compression}))
    expected = np.ascontiguousarray(ALL_ORIENTATIONS[orientation](stored[mode]))
    np.testing.assert_array_equal(read_image(path).pixels, expected)
    monai_read = PILReader(converter=pil_display_image).get_data(PILReader(converter=pil_display_image).read(path))[0]
    np.testing.assert_array_equal(np.swapaxes(monai_read, 0, 1), expected)  # MONAI's (W, H[, C])
    if mode != "RGB":
        np.testing.assert_array_equal(read_mask_file(path)[0], expected)


@pytest.mark.parametrize("suffix, options", [("gif", {}), ("webp", {"lossless": True})])
def test_an_animated_picture_is_a_loop_of_frames(tmp_path, suffix, options) -> None:
    """Loops shared as animated GIF or WebP: every frame to the corpus, the first to the single-image loader."""
    from monai_ext.io.images import iter_picture_frames

    frames = [Image.fromarray(np.roll(GRAY, 3 * i, axis=1)) for i in range(4)]
    path = tmp_path / f"loop.{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0, **options)
    read = list(iter_picture_frames(path, frame_stride=1))
    assert [index for index, _ in read] == [0, 1, 2, 3]
    for (_, pixels), frame in zip(read, frames):
        np.testing.assert_array_equal(pixels[..., 0] if pixels.ndim == 3 else pixels, np.asarray(frame))
    np.testing.assert_array_equal(read_image(path).pixels[..., 0], GRAY)
    assert [index for index, _ in iter_picture_frames(path, frame_stride=3)] == [0, 3]


def test_a_png_with_an_xmp_orientation_is_read_upright_like_its_mask(tmp_path) -> None:
    """ImageMagick and photo tools keep a phone's orientation in XMP, not in an eXIf chunk: PIL applies it, and the
    OpenCV fast path for 8-bit PNGs (which ignores it) must hand such a file to PIL, or image and mask part."""
    from PIL.PngImagePlugin import PngInfo

    from monai_ext.transforms.masks import LoadMask

    xmp = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           '<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>')
    info = PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp)
    Image.fromarray(GRAY).save(tmp_path / "image.png", pnginfo=info)
    Image.fromarray((GRAY > 128).astype(np.uint8) * 255).save(tmp_path / "mask.png", pnginfo=info)
    read = read_image(tmp_path / "image.png").pixels
    np.testing.assert_array_equal(read, np.rot90(GRAY, -1))
    mask = np.asarray(LoadMask("binary")(str(tmp_path / "mask.png")))[0]
    np.testing.assert_array_equal(mask.astype(bool), np.rot90(GRAY > 128, -1))


@pytest.mark.parametrize("suffix", ["png", "jpg"])
@pytest.mark.parametrize("orientation", sorted(ALL_ORIENTATIONS))
def test_the_turn_an_exif_orientation_makes_is_told_and_can_be_undone(tmp_path, suffix, orientation) -> None:
    """Masks are exchanged with viewers on a file's stored grid (ITK, and so 3D Slicer, ignores EXIF) while the
    network sees the picture upright: the orientation read_image applied, the turn itself, and its inverse."""
    path = tmp_path / f"scan.{suffix}"
    exif = Image.new("L", (1, 1)).getexif()
    exif[0x0112] = orientation
    Image.fromarray(GRAY).save(path, exif=exif.tobytes(), **({"quality": 100} if suffix == "jpg" else {}))
    with Image.open(path) as img:
        stored = np.asarray(img.convert("L"))  # as stored: PIL applies no orientation when it opens a file
    shown = read_image(path).pixels
    assert picture_orientation(path) == orientation
    np.testing.assert_array_equal(apply_orientation(stored, orientation), shown)
    np.testing.assert_array_equal(undo_orientation(shown, orientation), stored)
    assert stored_shape(shown.shape, orientation) == stored.shape == (20, 30)


@pytest.mark.parametrize("kind", ["png", "bmp", "dcm", "nii", "avi", "missing"])
def test_files_shown_as_stored_have_orientation_1(tmp_path, kind) -> None:
    path = tmp_path / "gone.png" if kind == "missing" else write_gray(kind, tmp_path / "a")
    assert picture_orientation(path) == 1


def test_a_dicom_file_named_jpg_is_shown_as_stored(tmp_path) -> None:
    """read_image reads it as DICOM, which has no EXIF; nothing may turn its masks."""
    path = write_dicom(GRAY, tmp_path / "scan.dcm").rename(tmp_path / "scan.jpg")
    assert picture_orientation(path) == 1


@pytest.mark.parametrize("orientation", [0, 9, -1, 6.0, "6", True, None])
def test_an_orientation_outside_exifs_1_to_8_is_refused(orientation) -> None:
    for turn in (apply_orientation, undo_orientation):
        with pytest.raises(ValueError, match=re.escape(f"EXIF Orientation 1-8, got {orientation!r}")):
            turn(GRAY, orientation)
    with pytest.raises(ValueError, match=re.escape(f"got {orientation!r}")):
        stored_shape(GRAY.shape, orientation)


def _frames_file(kind: str, folder) -> str:
    """A file of ``kind`` whose frame count the test names; frames differ so none is dropped as a copy."""
    frames = np.stack([np.roll(GRAY, 3 * i, axis=1) for i in range(7)])
    if kind == "dicom_loop":
        return str(write_dicom_frames(frames[:3], folder / "loop.dcm"))
    if kind == "dicom_header_says_5_data_holds_3":  # copied off a scanner cut short
        path = write_dicom_frames(frames[:5], folder / "cut.dcm")
        ds = pydicom.dcmread(path)
        ds.PixelData = ds.PixelData[: 3 * GRAY.size]
        ds.save_as(path)
        return str(path)
    if kind == "tiff_3_pages_and_a_thumbnail":  # the thumbnail is a reduced-resolution copy, not a frame
        from PIL import TiffImagePlugin

        pages = [(Image.fromarray(f), 0) for f in frames[:3]] + [(Image.fromarray(GRAY[::2, ::2]), 1)]
        with TiffImagePlugin.AppendingTiffWriter(folder / "pages.tif", new=True) as tiff:
            for page, new_subfile_type in pages:  # PIL's save_all gives every page the same tags
                page.save(tiff, format="TIFF", tiffinfo={254: new_subfile_type})
                tiff.newFrame()
        return str(folder / "pages.tif")
    if kind == "gif_4":
        pages = [Image.fromarray(f) for f in frames[:4]]
        pages[0].save(folder / "loop.gif", save_all=True, append_images=pages[1:], duration=100, loop=0)
        return str(folder / "loop.gif")
    if kind == "nifti_5_slices":
        nib.save(nib.Nifti1Image(np.moveaxis(frames[:5], 0, -1).transpose(1, 0, 2).copy(), LPS_AFFINE),
                 folder / "volume.nii.gz")
        return str(folder / "volume.nii.gz")
    if kind == "nifti_cine_6":  # (x, y, 1, t)
        nib.save(nib.Nifti1Image(np.moveaxis(frames[:6], 0, -1).transpose(1, 0, 2)[:, :, None].copy(), LPS_AFFINE),
                 folder / "cine.nii.gz")
        return str(folder / "cine.nii.gz")
    if kind == "mha_5_slices":  # ITK's numpy view is (z, y, x): 5 slices of the picture
        import itk

        itk.imwrite(itk.image_from_array(np.ascontiguousarray(frames[:5])), str(folder / "volume.mha"))
        return str(folder / "volume.mha")
    if kind == "avi_7":
        path = str(folder / "loop.avi")
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"FFV1"), 5, (30, 20), isColor=True)
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
        writer.release()
        return path
    return write_gray(kind, folder / "single")


@pytest.mark.parametrize("kind, expected", [
    ("png", 1), ("dcm", 1), ("nii", 1), ("dicom_loop", 3), ("dicom_header_says_5_data_holds_3", 3),
    ("tiff_3_pages_and_a_thumbnail", 3), ("gif_4", 4), ("nifti_5_slices", 5), ("nifti_cine_6", 6), ("avi_7", 7),
    ("mha_5_slices", 5),
])
def test_the_frame_count_is_what_the_file_holds_and_the_pixels_its_first_frame(tmp_path, kind, expected) -> None:
    """Inference reads a file's first frame and says how many it held (:func:`note_if_several_frames`)."""
    path = _frames_file(kind, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the cut DICOM's warning: tests/io/test_dicom_frames.py
        image = read_image(path, count_frames=True)
        uncounted = read_image(path)
        loaded = LoadUltrasoundImaged("image", frames_key="image_frames")({"image": path})
        unasked = LoadUltrasoundImaged("image")({"image": path})
    assert image.frame_count == expected and loaded["image_frames"] == expected
    # the datalists' warning reads DICOM headers only: the cut file's header still says 5
    assert frames_held(path) == (5 if kind == "dicom_header_says_5_data_holds_3" else expected)
    np.testing.assert_array_equal(image.pixels[..., 0] if image.pixels.ndim == 3 else image.pixels, GRAY)
    assert "image_frames" not in unasked  # off unless asked for: training items stay as they were
    # unasked, containers that need a second reading to count (videos, multi-frame pictures) are not counted
    second_reading = kind.startswith(("tiff", "gif", "avi"))
    assert uncounted.frame_count == (None if second_reading else expected)
    np.testing.assert_array_equal(uncounted.pixels, image.pixels)


def test_a_multi_page_tiff_damaged_after_its_first_page_still_reads_and_counts_what_it_can(tmp_path) -> None:
    """The count only informs: a copy cut off inside its second page must not turn a readable first page into an
    unreadable file (training would drop it, inference list it as an error)."""
    pages = [Image.fromarray(np.roll(GRAY, 3 * i, axis=1)) for i in range(3)]
    pages[0].save(tmp_path / "full.tif", save_all=True, append_images=pages[1:])
    with Image.open(tmp_path / "full.tif") as img:
        img.seek(1)
        second = img._frame_pos[1]  # where the second page's directory starts
    (tmp_path / "cut.tif").write_bytes((tmp_path / "full.tif").read_bytes()[: second + 1])
    np.testing.assert_array_equal(read_image(tmp_path / "cut.tif").pixels, GRAY)
    with pytest.warns(UserWarning, match=r"cut\.tif: its frames counted up to a damaged page \(1\)"):
        image = read_image(tmp_path / "cut.tif", count_frames=True)
    assert image.frame_count == 1
    np.testing.assert_array_equal(image.pixels, GRAY)


def test_a_bilevel_picture_reaches_the_pretraining_reader_as_gray(tmp_path) -> None:
    """A 1-bit PNG came out of MONAI's PILReader as bools, which the intensity scaling refused (the file was skipped
    as unreadable in pretraining, read fine by the classification bundle)."""
    from monai.data import PILReader

    from monai_ext.io.images import pil_display_image
    from monai_ext.transforms import ScaleIntensityByDtype

    bits = np.zeros((6, 10), bool)
    bits[2:4, 3:8] = True
    Image.fromarray(bits).convert("1").save(tmp_path / "bits.png")
    reader = PILReader(converter=pil_display_image)
    pixels = np.swapaxes(reader.get_data(reader.read(tmp_path / "bits.png"))[0], 0, 1)
    np.testing.assert_array_equal(pixels, bits.astype(np.uint8) * 255)
    np.testing.assert_array_equal(ScaleIntensityByDtype()(pixels), bits.astype(np.float32))



@pytest.mark.parametrize("name, content", [("bad.dcm", b"not a dicom at all"), ("empty.tif", b""),
                                           ("still.jpg", b""), ("cut.nii.gz", b"\x1f\x8b"), ("bad.mha", b"NDims = x")])  # a single-frame format is not opened at all
def test_frames_held_counts_a_file_it_cannot_read_as_one(tmp_path, name, content) -> None:
    """The count only informs; the loader names the reason when it reads the file."""
    (tmp_path / name).write_bytes(content)
    assert frames_held(tmp_path / name) == 1


@pytest.mark.parametrize("name", ["scan.png", "scan.jpg", "scan"])
def test_a_dicom_export_under_a_pictures_name_is_read_as_dicom(tmp_path, name: str) -> None:
    """PIL's "cannot identify image file" once named the file but not the reason."""
    path = write_dicom(GRAY, tmp_path / "x.dcm")
    path.rename(tmp_path / name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pixels = read_image(tmp_path / name).pixels
    np.testing.assert_array_equal(pixels, GRAY)
    assert any("under a picture's name; read as DICOM" in str(w.message) for w in caught) == name.endswith(("png", "jpg"))


@pytest.mark.parametrize("name, fmt", [("scan.dcm", "PNG"), ("scan.DICOM", "PNG"), ("scan.dcm", "JPEG"),
                                       ("scan.dcm", "TIFF"), ("scan.dcm", "BMP")])
def test_a_picture_under_a_dicom_name_is_read_as_the_picture_it_is(tmp_path, name: str, fmt: str) -> None:
    """The other way round from a DICOM export named .png: a PNG saved as ``scan.dcm`` failed with "not a DICOM
    image: ... it has no pixel data", which said nothing of what it is. It is read as a picture, with a warning."""
    from monai_ext.io.images import picture_orientation, resampled_grid

    Image.fromarray(GRAY).save(tmp_path / name, format=fmt, **({"quality": 100} if fmt == "JPEG" else {}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pixels = read_image(tmp_path / name).pixels
    assert np.abs(pixels.astype(int) - GRAY).max() <= (4 if fmt == "JPEG" else 0)
    assert [str(w.message) for w in caught] == [
        f"{tmp_path / name}: a {fmt} picture under a DICOM name (no b'DICM' at byte 128); read as a picture"]
    # and as such by the parts that turn masks to its stored grid (no DICOM header to read there)
    assert resampled_grid(tmp_path / name) is None and picture_orientation(tmp_path / name) == 1


def test_a_file_under_another_formats_name_is_warned_of_once_in_the_job(tmp_path) -> None:
    """Read at every epoch (in DataLoader workers forked anew), a picture named .dcm was warned of every time: once
    per file in the job, as the other notes on a file; a corpus collecting its files' notes still gets it."""
    from monai_ext.io.errors import collected_reader_warnings

    Image.fromarray(GRAY).save(tmp_path / "scan.dcm", format="PNG")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            read_image(tmp_path / "scan.dcm")
    assert len(caught) == 1
    with collected_reader_warnings() as notes:
        read_image(tmp_path / "scan.dcm")
    assert len(notes) == 1 and "under a DICOM name" in notes[0]


def test_a_non_dicom_file_under_a_dicom_name_that_is_no_picture_is_still_refused(tmp_path) -> None:
    (tmp_path / "notes.dcm").write_bytes(b"BMI 23, not a bitmap")  # starts as a BMP would
    with pytest.raises(UnreadableImageError, match="not a DICOM"):
        read_image(tmp_path / "notes.dcm")


def test_file_meta_without_the_preamble_is_dicom_by_content(tmp_path) -> None:
    """A data set written with File Meta Information but no 128-byte preamble, named IM0001: it was not listed."""
    from monai_ext.io.dicom import has_dicom_signature

    path = write_dicom(GRAY, tmp_path / "x.dcm")
    (tmp_path / "IM0001").write_bytes(path.read_bytes()[128 + 4:])  # group 0002 first
    assert has_dicom_signature(tmp_path / "IM0001")
    np.testing.assert_array_equal(read_image(tmp_path / "IM0001").pixels, GRAY)


def test_a_truncated_png_prints_nothing_of_opencvs_own(tmp_path, capfd) -> None:
    """OpenCV's "[ WARN:0@1.9] ... PNG input buffer is incomplete" broke through the corpus's progress bars; the
    reason reaches the caller in the error (and the corpus report) instead."""
    stream = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8))[1].tobytes()
    (tmp_path / "cut.png").write_bytes(stream[:300])
    with pytest.raises(UnreadableImageError, match="cut.png: cannot decode"):
        read_image(tmp_path / "cut.png")
    assert "WARN" not in capfd.readouterr().err


def test_a_voi_lut_for_signed_pixels_whose_first_input_is_written_unsigned_is_read_signed(tmp_path) -> None:
    """LUTDescriptor may be encoded US whatever the pixels' sign: -512 arrived as 65024 and every pixel clipped to
    the first entry (black)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from monai_ext.io.dicom import iter_dicom_frames, read_dicom
    from monai_ext.io.writers import write_dicom_values

    ramp = np.tile(np.arange(-512, 512, 8, dtype=np.int16), (16, 1))
    path = write_dicom_values(ramp, tmp_path / "signed_voi.dcm", bits_stored=16)
    ds = pydicom.dcmread(path)
    item = Dataset()
    item.add_new(0x00283002, "US", [1024, (-512) & 0xFFFF, 16])  # LUTDescriptor: 1024 entries from -512, 16 bits
    item.add_new(0x00283006, "US", list(range(0, 65536, 64)))  # LUTData: a ramp over the 16-bit output
    ds.VOILUTSequence = Sequence([item])
    ds.save_as(path)
    pixels = next(iter_dicom_frames(read_dicom(path), str(path)))[1]
    np.testing.assert_allclose(pixels[0], (ramp[0].astype(np.float64) + 512) * 64 / 65535, atol=1e-6)


@pytest.mark.parametrize("where", ["shared", "per_frame", "per_frame_differing"])
def test_an_enhanced_files_functional_group_window_is_applied(tmp_path, where) -> None:
    """Enhanced multi-frame files keep the window in functional groups: it was ignored, and a 12-bit image windowed
    to 1100/200 showed as 14 gray levels."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from monai_ext.io.dicom import iter_dicom_frames, read_dicom
    from monai_ext.io.writers import write_dicom_values

    values = np.random.default_rng(0).integers(1050, 1150, (2, 32, 32)).astype(np.uint16)  # inside the window
    path = write_dicom_values(values, tmp_path / "enhanced.dcm", bits_stored=12)
    ds = pydicom.dcmread(path)

    def group(center: int) -> Dataset:
        voi = Dataset()
        voi.WindowCenter, voi.WindowWidth = center, 200
        item = Dataset()
        item.FrameVOILUTSequence = Sequence([voi])
        return item

    if where == "shared":
        ds.SharedFunctionalGroupsSequence = Sequence([group(1100)])
    else:
        ds.PerFrameFunctionalGroupsSequence = Sequence([group(1100), group(1100 if where == "per_frame" else 1150)])
    ds.save_as(path)
    expected = np.clip((values[0].astype(np.float64) - 1099.5) / 199 + 0.5, 0, 1)  # PS3.3 LINEAR window 1100/200
    if where == "per_frame_differing":
        with pytest.warns(UserWarning, match=r"frames carry their own \(or no\) FrameVOILUTSequence values; \{.*\}, the first found"):
            read = read_dicom(path)
    else:
        read = read_dicom(path)
    pixels = next(iter_dicom_frames(read, str(path)))[1]
    np.testing.assert_allclose(pixels, expected, atol=1e-6)


def _deep_display(tmp_path: Path, values: np.ndarray, **attributes) -> list[np.ndarray]:
    """The displayed frames of ``values`` (frames, H, W) written as a 12/16-bit DICOM without a window."""
    from monai_ext.io.dicom import iter_dicom_frames, read_dicom
    from monai_ext.io.writers import write_dicom_values

    path = write_dicom_values(values, tmp_path / "deep.dcm", bits_stored=16 if values.dtype == np.int16 else 12)
    ds = pydicom.dcmread(path)
    for name, (vr, value) in attributes.items():
        ds.add_new(pydicom.datadict.tag_for_keyword(name), vr, value)
    ds.save_as(path)
    return [pixels for _, pixels in iter_dicom_frames(read_dicom(path), str(path))]


def test_a_deep_image_without_a_window_is_shown_over_its_values(tmp_path) -> None:
    """Over its type's whole range a 12-bit image using 1000..1199 was one flat gray."""
    values = np.random.default_rng(0).integers(1000, 1200, (1, 16, 16)).astype(np.uint16)
    (pixels,) = _deep_display(tmp_path, values)
    np.testing.assert_allclose(pixels, (values[0] - values.min()) / (values.max() - values.min()), atol=1e-6)


def test_the_frames_of_a_deep_loop_without_range_tags_stay_comparable(tmp_path) -> None:
    """Each frame stretched over its own values showed a dim frame as bright as a bright one."""
    values = np.stack([np.full((8, 8), 2600, np.uint16), np.full((8, 8), 700, np.uint16)])
    values[:, 0, 0] = 0
    dim, bright = _deep_display(tmp_path, values)[::-1]
    assert bright.max() > 3 * dim.max()


def test_range_tags_written_unsigned_for_signed_pixels_are_read_signed(tmp_path) -> None:
    """Smallest/LargestImagePixelValue encoded US for signed pixels came out 65024..65278: every pixel black."""
    values = np.linspace(-512, -258, 64).astype(np.int16).reshape(1, 8, 8)
    (pixels,) = _deep_display(tmp_path, values, PixelRepresentation=("US", 1),
                              SmallestImagePixelValue=("US", (-512) & 0xFFFF),
                              LargestImagePixelValue=("US", (-258) & 0xFFFF))
    np.testing.assert_allclose(pixels, (values[0].astype(np.float64) + 512) / 254, atol=1e-6)


def test_a_region_that_would_be_no_box_is_passed_over_without_a_warning(tmp_path) -> None:
    """A spectral region (format 3) lacking its location warned at every read, though it is never a box."""
    from pydicom.dataset import Dataset

    path = write_dicom_frames(GRAY[None], tmp_path / "scan.dcm", region_box=(2, 3, 25, 18))
    ds = pydicom.dcmread(path)
    spectral = Dataset()
    spectral.RegionSpatialFormat, spectral.RegionDataType = 3, 3
    ds.SequenceOfUltrasoundRegions.append(spectral)
    ds.save_as(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(path).region_box == (2, 3, 25, 18)
