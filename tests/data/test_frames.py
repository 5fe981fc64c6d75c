"""Frame sources: every DICOM transfer syntax and photometric interpretation decodes to the written pixels."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from monai_ext.data.corpus import crop_to_view
from monai_ext.data.frames import FrameOptions, SkippedSource, iter_frames
from monai_ext.io.errors import UnreadableImageError
from monai_ext.io.writers import LPS_AFFINE, write_dicom_frames
from tests.data.corpus_builder import DICOM_CASES, us_image, write_case


@pytest.mark.parametrize("photometric,syntax", DICOM_CASES)
def test_multiframe_dicom_displays_the_written_frames(tmp_path, photometric, syntax):
    frames = np.stack([us_image(64) for _ in range(4)])
    path = write_case(frames, tmp_path / "cine.dcm", photometric, syntax)
    decoded = list(iter_frames(path))
    assert [f.index for f in decoded] == [0, 1, 2, 3]
    tolerance = 12 if syntax == "jpeg_baseline" else 1  # lossy JPEG; YBR <-> RGB rounding for the rest
    for got, want in zip(decoded, frames):
        colour = photometric not in ("MONOCHROME1", "MONOCHROME2")
        assert got.pixels.dtype == np.uint8 and got.pixels.shape == ((64, 64, 3) if colour else (64, 64))
        gray = got.gray()
        assert np.abs(gray.astype(int) - want.astype(int)).mean() <= tolerance / 4
        assert np.abs(gray.astype(int) - want.astype(int)).max() <= (80 if syntax == "jpeg_baseline" else 1)


def test_frame_stride_and_modality_filter(tmp_path):
    frames = np.stack([us_image(48) for _ in range(5)])
    path = write_dicom_frames(frames, tmp_path / "cine.dcm")
    assert [f.index for f in iter_frames(path, FrameOptions(frame_stride=2))] == [0, 2, 4]
    with pytest.raises(SkippedSource, match="modality 'US' is not 'CT'"):
        list(iter_frames(path, FrameOptions(modality="CT")))


def test_region_box_is_read_and_used_for_the_crop(tmp_path):
    screen = np.zeros((1, 120, 160), np.uint8)
    screen[0, 10:106, 40:136] = us_image(96)
    screen[0, 2:8, 2:150] = 255  # a bright banner outside the region that would join a detected view
    path = write_dicom_frames(screen, tmp_path / "region.dcm", region_box=(40, 10, 136, 106))
    frame = next(iter_frames(path))
    assert frame.region_box == (40, 10, 136, 106)
    np.testing.assert_array_equal(crop_to_view(frame.pixels, frame.region_box),
                                  crop_to_view(screen[0, 10:106, 40:136], None))


OUTSIDE = "lies outside the 160x120 frame or is under 8 pixels on a side; ignored"
PAST = "pixels past the 160x120 frame (the pixels were resized or cropped after the regions were written?); ignored"


@pytest.mark.parametrize("box, kept, note", [
    # reaching 40 pixels past the right edge: a region of a larger original (a resized export that kept its
    # regions, as pydicom's examples_ybr_color.dcm); clipped, it cut the tissue where the frame happens to end
    ((100, 10, 200, 90), None, f"reaches 40 {PAST}"),
    ((0, 0, 161, 121), (0, 0, 160, 120), None),  # one past (the exclusive end in MaxX1 / MaxY1): clipped and used
    ((0, 0, 162, 120), None, f"reaches 2 {PAST}"),
    ((200, 10, 300, 90), None, OUTSIDE),         # right of the frame (the pixels were cropped, the regions kept)
    ((10, 130, 120, 200), None, OUTSIDE),        # below it
    ((100, 100, 20, 20), None, OUTSIDE),         # inverted
    ((10, 10, 14, 100), None, OUTSIDE),          # four pixels wide
    ((0, 0, 1, 1), None, OUTSIDE),               # a zeroed region
])
def test_a_region_off_the_frame_is_ignored_with_a_warning(tmp_path, box, kept, note):
    """Such a region used to become an empty crop, on which OpenCV crashed the whole ingestion process."""
    path = write_dicom_frames(np.zeros((1, 120, 160), np.uint8) + us_image(160)[:120], tmp_path / "region.dcm",
                              region_box=box)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = next(iter_frames(path))
    assert frame.region_box == kept
    notes = [str(w.message) for w in caught if "ultrasound region" in str(w.message)]
    assert notes == ([f"{path}: ultrasound region {box} {note}"] if note else [])


def _with_regions(path, regions: list[tuple[int | None, int | None, tuple[int, int, int, int]]]):
    """Rewrite the ``SequenceOfUltrasoundRegions`` of the DICOM at ``path``: one item per (RegionSpatialFormat,
    RegionDataType, (x0, y0, x1, y1) exclusive ends); None leaves that attribute out (de-identified)."""
    import pydicom
    from pydicom.dataset import Dataset

    ds = pydicom.dcmread(path)
    items = []
    for spatial, data_type, (x0, y0, x1, y1) in regions:
        region = Dataset()
        if spatial is not None:
            region.RegionSpatialFormat = spatial
        if data_type is not None:
            region.RegionDataType = data_type
        region.RegionLocationMinX0, region.RegionLocationMinY0 = x0, y0
        region.RegionLocationMaxX1, region.RegionLocationMaxY1 = x1 - 1, y1 - 1
        items.append(region)
    ds.SequenceOfUltrasoundRegions = pydicom.Sequence(items)
    ds.save_as(path)
    return path


STRIP = (0, 60, 160, 120)  # the lower half of the 160x120 screen: where a spectrum or an M-mode trace sits


@pytest.mark.parametrize("regions, kinds", [
    ([(3, 3, STRIP)], "spectral"),                          # a PW Doppler capture
    ([(3, 4, STRIP)], "spectral"),                          # CW
    ([(2, 1, STRIP)], "M-mode"),
    ([(3, 3, STRIP), (4, 10, (0, 0, 160, 20))], "spectral, waveform"),  # a spectrum and its ECG
    ([(1, 13, (0, 0, 10, 60)), (3, 3, STRIP)], "2-D of data type 13, spectral"),  # a gray bar beside it
])
def test_a_dicom_whose_regions_hold_no_tissue_is_skipped_with_the_reason(tmp_path, regions, kinds):
    """Its regions were taken for no regions at all: the spectrum or the trace was detected as the field of view and
    cached as a training frame ("1 of 1 frames kept")."""
    path = _with_regions(write_dicom_frames(us_image(160)[None, :120], tmp_path / "pw.dcm"), regions)
    with pytest.raises(SkippedSource, match=rf"pw.dcm: no tissue region: its ultrasound regions are {kinds} only"):
        list(iter_frames(path))


@pytest.mark.parametrize("regions, boxes", [
    (None, [None]),                                             # no sequence: the views are detected
    ([(1, 1, (0, 0, 160, 60)), (3, 3, STRIP)], [(0, 0, 160, 60)]),  # B-mode above its spectrum (duplex)
    ([(1, 2, (0, 0, 160, 60)), (3, 3, STRIP)], [(0, 0, 160, 60)]),  # colour flow above its spectrum
    ([(1, 1, (200, 0, 300, 60)), (3, 3, STRIP)], [None]),      # its tissue region is off the frame: detected
    ([(None, 3, STRIP)], [None]),                               # a format emptied: it may have been tissue
    ([(3, None, STRIP)], [None]),
])
def test_a_dicom_with_a_tissue_region_or_none_listed_is_read(tmp_path, regions, boxes):
    path = write_dicom_frames(us_image(160)[None, :120], tmp_path / "scan.dcm")
    if regions is not None:
        _with_regions(path, regions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the region off the frame is named in a warning (tested above)
        assert [frame.region_box for frame in iter_frames(path)] == boxes


@pytest.mark.parametrize("kwargs,message", [
    ({"frame_stride": 0}, "frame_stride must be at least 1, got 0"),
    ({"slice_axis": 3}, "slice_axis must be 0, 1 or 2, got 3"),
])
def test_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FrameOptions(**kwargs)


def test_unsupported_suffix_is_named(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("x")
    with pytest.raises(UnreadableImageError, match="notes.txt: unsupported file type"):
        list(iter_frames(path))


def test_test_encoder_for_jpeg_lossless_round_trips_through_libjpeg():
    """The hand-written test encoder is checked against pylibjpeg-libjpeg, an independent decoder."""
    from libjpeg import decode

    from tests.data.jpeg_lossless import encode_jpeg_lossless

    for shape in [(37, 53), (64, 64), (1, 9)]:
        image = (np.random.default_rng(shape[0]).random(shape) * 255).astype(np.uint8)
        np.testing.assert_array_equal(decode(encode_jpeg_lossless(image)), image)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P", "I;16", "1"])
def test_png_frames_equal_the_pil_reader_for_every_mode(tmp_path, mode):
    # 8-bit PNGs take OpenCV's faster decoder; every mode must give what PIL's reading of the file gives
    from PIL import Image

    from monai_ext.io.display import to_gray_uint8
    from monai_ext.io.images import pil_display_pixels

    rgb = np.stack([us_image(40), np.roll(us_image(40), 7, axis=1), us_image(40)[::-1]], axis=-1)
    image = Image.fromarray(rgb)
    if mode == "I;16":
        image = Image.fromarray(rgb[..., 0].astype(np.uint16) * 257 + 3)
    elif mode == "P":
        image = image.quantize(64)
    else:
        image = image.convert(mode)
    path = tmp_path / f"frame_{mode.replace(';', '')}.png"
    image.save(path)
    (frame,) = iter_frames(path)
    with Image.open(path) as reopened:
        display = pil_display_pixels(reopened)
    np.testing.assert_array_equal(frame.gray(), to_gray_uint8(display, str(path)))
    if mode == "RGB":  # colour is kept for de-annotation
        np.testing.assert_array_equal(frame.pixels, display)
    assert frame.pixels.std() > 0


@pytest.mark.parametrize("seed", range(4))
def test_crop_from_the_reduced_detection_matches_the_true_field_of_view(seed):
    # crop_to_view detects on a copy halved twice (640 x 480 -> 160 x 120); the crop must still hug the true view
    from monai_ext.data.synthetic import SimulatorConfig, simulate_frame

    frame = simulate_frame(np.random.default_rng([11, seed]), SimulatorConfig(size=480, screen_capture=True))
    screen = np.zeros((480, 640), np.uint8)
    screen[:, 80:560] = frame.image
    truth = np.zeros((480, 640), bool)
    truth[:, 80:560] = frame.fov_mask
    rows, cols = np.flatnonzero(truth.any(1)), np.flatnonzero(truth.any(0))
    view = crop_to_view(screen, None)
    height, width = rows[-1] + 1 - rows[0], cols[-1] + 1 - cols[0]
    assert abs(view.shape[0] - height) <= 6 and abs(view.shape[1] - width) <= 6  # 1.5 reduced pixels
    kept = view > 0
    assert kept.mean() >= 0.9 * truth[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].mean()


def test_frame_stride_takes_every_nth_time_point_of_a_4d_nifti(tmp_path):
    import nibabel as nib

    cine = np.stack([us_image(32, seed=t) for t in range(5)], axis=-1).transpose(1, 0, 2)[:, :, None, :]  # x, y, 1, t
    nib.save(nib.Nifti1Image(cine, LPS_AFFINE), str(tmp_path / "cine.nii.gz"))
    frames = list(iter_frames(tmp_path / "cine.nii.gz", FrameOptions(frame_stride=2)))
    assert [f.index for f in frames] == [0, 2, 4]
    for frame in frames:
        np.testing.assert_array_equal(frame.pixels, cine[:, :, 0, frame.index].T)


def write_tiff_pages(path, pages: list[np.ndarray], reduced: tuple[int, ...] = ()) -> None:
    """A multi-page TIFF; pages whose index is in ``reduced`` are marked reduced-resolution (NewSubfileType bit 0:
    thumbnails, pyramid levels). Pillow's public save_all gives every page the same tags, hence its page writer."""
    from PIL import Image, TiffImagePlugin

    with TiffImagePlugin.AppendingTiffWriter(str(path), new=True) as tiff:
        for index, page in enumerate(pages):
            image = Image.fromarray(page)
            image.encoderinfo, image.encoderconfig = {"tiffinfo": {254: int(index in reduced)}}, ()
            TiffImagePlugin._save(image, tiff, str(path))
            tiff.newFrame()


def test_every_full_resolution_page_of_a_multi_page_tiff_is_a_frame(tmp_path):
    """A cine loop or a stack exported page by page: only the first page was read, the rest lost without a word."""
    pages = [us_image(48, seed=s) for s in range(4)]
    thumbnail = us_image(48, seed=9)[::4, ::4]
    write_tiff_pages(tmp_path / "loop.tif", [pages[0], thumbnail, *pages[1:]], reduced=(1,))
    frames = list(iter_frames(tmp_path / "loop.tif"))
    assert [f.index for f in frames] == [0, 2, 3, 4]  # page numbers; the thumbnail (page 1) is no frame
    for frame, page in zip(frames, pages):
        np.testing.assert_array_equal(frame.pixels, page)
    assert [f.index for f in iter_frames(tmp_path / "loop.tif", FrameOptions(frame_stride=2))] == [0, 2, 4]


def test_a_colour_volume_keeps_its_colour_until_deannotation(tmp_path):
    """An RGB NIfTI's frames came out gray, so a colour-flow patch that de-annotation removes from the same picture
    as PNG stayed in the corpus as a gray blob."""
    import nibabel as nib

    rgb = np.repeat(us_image(48, seed=3)[..., None], 3, axis=-1)
    rgb[10:20, 10:20] = (220, 30, 30)  # colour flow
    voxels = rgb.transpose(1, 0, 2)[:, :, None, None, :].copy()  # x, y, z, t, c
    nib.save(nib.Nifti1Image(voxels, LPS_AFFINE), str(tmp_path / "doppler.nii.gz"))
    frame = next(iter_frames(tmp_path / "doppler.nii.gz", FrameOptions()))
    np.testing.assert_array_equal(frame.pixels, rgb)


def write_colour_avi(path, frames: np.ndarray):
    """(N, H, W, 3) uint8 RGB frames as a lossless (FFV1) AVI: decoded frames equal the written ones exactly."""
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 5, (width, height), isColor=True)
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.mark.parametrize("stride, kept", [(1, [0, 1, 2, 3, 4]), (2, [0, 2, 4]), (3, [0, 3])])
def test_a_colour_cine_loop_keeps_every_strided_frame_in_colour(tmp_path, stride, kept):
    """The video reader was the one source whose stride and colour no test of iter_frames saw: gray frames, or every
    frame at any stride, passed."""
    frames = np.random.default_rng(3).integers(0, 256, (5, 24, 32, 3), np.uint8)
    frames[..., 0] = 255  # red everywhere: gray would lose it, BGR order would swap it into blue
    frames[..., 2] //= 4
    read = list(iter_frames(write_colour_avi(tmp_path / "loop.avi", frames), FrameOptions(frame_stride=stride)))
    assert [frame.index for frame in read] == kept
    np.testing.assert_array_equal(np.stack([frame.pixels for frame in read]), frames[kept])


@pytest.mark.parametrize("written_as, named", [("png", "scan.dcm"), ("dicom", "scan.png")])
def test_a_file_under_another_formats_name_is_read_as_what_it_is(tmp_path, written_as: str, named: str) -> None:
    """A picture named .dcm (and a DICOM named .png) was refused by prepare-corpus, which chose the reader by the
    name, while the bundles' loaders read it as what it is: the corpus left out files the bundles train on."""
    pixels = us_image(64, 7)
    path = tmp_path / named
    if written_as == "png":
        path.write_bytes(cv2.imencode(".png", pixels)[1].tobytes())
    else:
        write_dicom_frames(pixels[None], path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frames = list(iter_frames(path))
    assert len(frames) == 1 and frames[0].pixels.shape[:2] == (64, 64)
    np.testing.assert_array_equal(frames[0].pixels if frames[0].pixels.ndim == 2 else frames[0].pixels[..., 0], pixels)
    assert any("under a" in str(w.message) and str(path) in str(w.message) for w in caught)
