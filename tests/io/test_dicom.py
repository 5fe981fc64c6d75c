"""The DICOM display pipeline against values computed by hand from the standard (PS3.3 C.7.6.3, C.11.1, C.11.2)."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from monai_ext.io.dicom import dicom_display, first_dicom_frame, iter_dicom_frames, read_dicom
from monai_ext.io.display import to_gray_unit
from monai_ext.io.errors import UnreadableImageError
from monai_ext.io.writers import write_dicom, write_dicom_frames, write_dicom_values

RAMP12 = np.arange(4096, dtype=np.uint16).reshape(64, 64)  # every 12-bit value once


def displayed(path) -> np.ndarray:
    """(H, W) float gray of the first frame, as every loader sees it."""
    return to_gray_unit(first_dicom_frame(read_dicom(path), str(path)), str(path))


def linear_window(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1, the LINEAR VOI function, with output range [0, 1]."""
    low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    return np.where(x <= low, 0.0, np.where(x > high, 1.0, (x - (center - 0.5)) / (width - 1) + 0.5))


def lut_item(lut: np.ndarray, first_mapped: int, bits: int) -> Dataset:
    """A VOI / modality LUT item; LUT Descriptor and LUT Data have ambiguous VRs, given as US here."""
    item = Dataset()
    item.add_new(0x00283002, "US", [len(lut) % 65536, first_mapped, bits])
    item.add_new(0x00283006, "US", [int(v) for v in lut])
    return item


def test_12_bit_scales_by_its_stored_range_not_the_type(tmp_path) -> None:
    path = write_dicom_values(RAMP12, tmp_path / "deep.dcm", bits_stored=12)
    out = displayed(path)
    assert out.max() == 1.0 and out[RAMP12 == 4095] == 1.0 and out[RAMP12 == 0] == 0.0
    np.testing.assert_allclose(out, RAMP12 / 4095, rtol=1e-6)


@pytest.mark.parametrize("high_bit", [11, 13, 15])
def test_bits_outside_bits_stored_are_ignored_wherever_high_bit_puts_them(tmp_path, high_bit) -> None:
    path = write_dicom_values(RAMP12, tmp_path / "shifted.dcm", bits_stored=12, high_bit=high_bit)
    ds = pydicom.dcmread(path)
    raw = np.frombuffer(ds.PixelData, "<u2")
    unused = np.uint16(0xFFFF ^ (0x0FFF << (high_bit - 11)))  # overlay or garbage bits some scanners leave
    ds.PixelData = (raw | unused).astype("<u2").tobytes()
    ds.save_as(path)
    np.testing.assert_allclose(displayed(path), RAMP12 / 4095, rtol=1e-6)


def test_signed_values_span_their_signed_range(tmp_path) -> None:
    values = RAMP12.astype(np.int16) - 2048
    path = write_dicom_values(values, tmp_path / "signed.dcm", bits_stored=12)
    np.testing.assert_allclose(displayed(path), (values + 2048) / 4095, rtol=1e-6)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_window_centre_and_width(tmp_path, photometric) -> None:
    path = write_dicom_values(RAMP12, tmp_path / "window.dcm", bits_stored=12, photometric=photometric,
                              attributes={"WindowCenter": [1000, 3000], "WindowWidth": [500, 100]})
    expected = linear_window(RAMP12.astype(float), 1000, 500)  # the first window is the default
    np.testing.assert_allclose(displayed(path), 1 - expected if photometric == "MONOCHROME1" else expected, atol=1e-6)


def test_rescale_then_window_in_output_units(tmp_path) -> None:
    path = write_dicom_values(RAMP12, tmp_path / "ct_like.dcm", bits_stored=12, attributes={
        "RescaleSlope": 2, "RescaleIntercept": -1024, "WindowCenter": 40, "WindowWidth": 400})
    np.testing.assert_allclose(displayed(path), linear_window(RAMP12 * 2.0 - 1024, 40, 400), atol=1e-6)


def test_rescale_without_a_window_spans_the_rescaled_stored_range(tmp_path) -> None:
    path = write_dicom_values(RAMP12, tmp_path / "rescaled.dcm", bits_stored=12,
                              attributes={"RescaleSlope": -0.5, "RescaleIntercept": 100})
    units = RAMP12 * -0.5 + 100  # a negative slope makes high stored values dark
    low, high = 4095 * -0.5 + 100, 100
    np.testing.assert_allclose(displayed(path), (units - low) / (high - low), atol=1e-6)


def test_voi_lut_sequence_wins_over_a_window(tmp_path) -> None:
    lut = np.rint(65535 * np.sqrt(np.arange(3000) / 2999)).astype(np.uint16)  # maps stored 500..3499
    path = write_dicom_values(RAMP12, tmp_path / "voi_lut.dcm", bits_stored=12, attributes={
        "VOILUTSequence": Sequence([lut_item(lut, 500, 16)]), "WindowCenter": 2048, "WindowWidth": 4096})
    expected = lut[np.clip(RAMP12.astype(int) - 500, 0, 2999)] / 65535  # below / above the LUT: its end entries
    np.testing.assert_allclose(displayed(path), expected, atol=1e-6)


@pytest.mark.parametrize("window", [None, (1000, 500)])
def test_modality_lut_sequence(tmp_path, window) -> None:
    lut = (4095 - np.arange(4096)).astype(np.uint16)  # an inverting modality LUT with 16-bit entries
    item = lut_item(lut, 0, 16)
    item.ModalityLUTType = "US"
    attributes = {"ModalityLUTSequence": Sequence([item])}
    if window:
        attributes.update(WindowCenter=window[0], WindowWidth=window[1])
    path = write_dicom_values(RAMP12, tmp_path / "modality_lut.dcm", bits_stored=12, attributes=attributes)
    mapped = 4095.0 - RAMP12
    # no window: the LUT's entries span the display; a window works on the LUT's output
    expected = linear_window(mapped, *window) if window else mapped / 4095
    np.testing.assert_allclose(displayed(path), expected, atol=1e-6)


def test_identity_rescale_keeps_8_bit_exact(tmp_path) -> None:
    gray = np.random.default_rng(0).integers(0, 256, (20, 30), np.uint8)
    path = write_dicom_values(gray, tmp_path / "plain.dcm", bits_stored=8,
                              attributes={"RescaleSlope": 1, "RescaleIntercept": 0})
    frame = first_dicom_frame(read_dicom(path), "plain.dcm")
    assert frame.dtype == np.uint8
    np.testing.assert_array_equal(frame, gray)


def colourful_frames(count: int = 3) -> np.ndarray:
    """(N, 48, 64, 3) smooth colour frames (smooth so that 4:2:2 JPEG keeps them close)."""
    rows, cols = np.mgrid[0:48, 0:64]
    frames = [np.stack([(rows * 5 + 10 * k) % 256, cols * 4, 255 - (rows + cols) * 2 - k], -1) for k in range(count)]
    return np.clip(frames, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("photometric, syntax, tolerance", [
    ("RGB", "explicit", 0), ("YBR_FULL", "explicit", 1), ("YBR_FULL", "rle", 1), ("RGB", "jpeg2000", 0),
    ("YBR_FULL_422", "jpeg_baseline", 10),
])
def test_colour_encodings_display_the_written_rgb(tmp_path, photometric, syntax, tolerance) -> None:
    frames = colourful_frames()
    path = write_dicom_frames(frames, tmp_path / "colour.dcm", photometric, syntax)
    decoded = list(iter_dicom_frames(read_dicom(path), "colour.dcm"))
    assert [index for index, _ in decoded] == [0, 1, 2]
    for (_, got), want in zip(decoded, frames):
        assert got.shape == want.shape and got.dtype == np.uint8
        assert np.abs(got.astype(int) - want).max() <= tolerance


def test_planar_configuration_1(tmp_path) -> None:
    frames = colourful_frames(1)
    path = write_dicom(frames[0], tmp_path / "planar.dcm")
    ds = pydicom.dcmread(path)
    ds.PlanarConfiguration = 1
    ds.PixelData = np.ascontiguousarray(frames[0].transpose(2, 0, 1)).tobytes()  # R plane, G plane, B plane
    ds.save_as(path)
    np.testing.assert_array_equal(first_dicom_frame(read_dicom(path), "planar.dcm"), frames[0])


def test_palette_colour_goes_through_its_lut(tmp_path) -> None:
    gray = np.random.default_rng(1).integers(0, 256, (2, 20, 30), np.uint8)
    path = write_dicom_frames(gray, tmp_path / "palette.dcm", "PALETTE COLOR")
    np.testing.assert_allclose(displayed(path), gray[0] / 255, atol=1e-6)


def test_frame_stride_and_first_frame(tmp_path) -> None:
    frames = np.stack([np.full((8, 8), 40 * k, np.uint8) for k in range(5)])
    ds = read_dicom(write_dicom_frames(frames, tmp_path / "cine.dcm"))
    got = list(iter_dicom_frames(ds, "cine.dcm", frame_stride=2))
    assert [index for index, _ in got] == [0, 2, 4]
    assert [int(pixels[0, 0]) for _, pixels in got] == [0, 80, 160]
    np.testing.assert_array_equal(first_dicom_frame(ds, "cine.dcm"), frames[0])
    with pytest.raises(ValueError, match="frame_stride must be at least 1, got 0"):
        list(iter_dicom_frames(ds, "cine.dcm", frame_stride=0))


@pytest.mark.parametrize("keep", [200, "meta"])  # cut inside the file meta header, or right after it
def test_a_file_cut_short_in_its_header_says_so(tmp_path, keep) -> None:
    """It was refused as having no pixel data, which sends a user looking for a codec, not for a better copy."""
    path = write_dicom(np.zeros((8, 8), np.uint8), tmp_path / "cut.dcm")
    meta_end = 132 + 12 + pydicom.dcmread(path).file_meta.FileMetaInformationGroupLength
    size = meta_end if keep == "meta" else keep
    path.write_bytes(path.read_bytes()[:size])
    with pytest.raises(UnreadableImageError, match=rf"cut.dcm: DICOM file holds nothing after its file meta header "
                                                   rf"\({size} bytes\): it is cut short"):
        read_dicom(path)


def test_files_without_image_pixels_are_refused_with_the_reason(tmp_path) -> None:
    path = write_dicom(np.zeros((4, 4), np.uint8), tmp_path / "float.dcm")
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    with pytest.raises(UnreadableImageError, match="float.dcm: DICOM file has no pixel data"):
        read_dicom(path)
    ds.FloatPixelData = np.zeros(16, np.float32).tobytes()
    ds.save_as(path)
    with pytest.raises(UnreadableImageError, match="float.dcm: DICOM file has float pixel data"):
        read_dicom(path)


@pytest.mark.parametrize("sop_class, said", [
    ("1.2.840.10008.5.1.4.1.1.11.1", "Grayscale Softcopy Presentation State Storage"),
    ("1.2.840.10008.5.1.4.1.1.88.59", "Key Object Selection Document Storage"),  # was "a structured report
    ("1.2.840.10008.5.1.4.1.1.66", "Raw Data Storage"),                           # (measurements as text)"
    ("1.2.840.10008.5.1.4.1.1.104.1", "Encapsulated PDF Storage"),
])
def test_a_non_image_object_is_named_by_its_sop_class(tmp_path, sop_class, said) -> None:
    """Ultrasound archives keep presentation states, key object selections, scanners' raw data and PDF reports
    beside the images; each was refused as "DICOM file has no pixel data" alone."""
    from monai_ext.io.writers import new_dicom_dataset, save_dicom

    path = save_dicom(new_dicom_dataset(tmp_path / "other.dcm", sop_class), tmp_path / "other.dcm")
    with pytest.raises(UnreadableImageError, match=rf"other.dcm: DICOM file has no pixel data \(SOP class {said}, "
                                                   rf"{re.escape(sop_class)}\)$"):
        read_dicom(path)


@pytest.mark.parametrize("bits_stored, signed", [(12, False), (12, True), (10, False)])
def test_big_endian_values_with_unused_high_bits_keep_their_order(tmp_path, bits_stored, signed) -> None:
    """Explicit VR Big Endian (retired, still in old archives): masking the unused bits dropped the byte order and
    gave plausible-looking noise."""
    from pydicom.uid import ExplicitVRBigEndian

    values = (RAMP12 % (1 << bits_stored)).astype(np.int16 if signed else np.uint16)
    if signed:
        values = values - (1 << (bits_stored - 1))
    path = write_dicom_values(values, tmp_path / "big.dcm", bits_stored=bits_stored)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    ds.PixelData = values.astype(">i2" if signed else ">u2").tobytes()
    pydicom.dcmwrite(path, ds, implicit_vr=False, little_endian=False, force_encoding=True)
    low = -(1 << (bits_stored - 1)) if signed else 0
    np.testing.assert_allclose(displayed(path), (values - low) / ((1 << bits_stored) - 1), rtol=1e-6)


@pytest.mark.parametrize("attributes, expected, warning", [
    ({"RescaleSlope": 0, "RescaleIntercept": 0}, RAMP12 / 4095, r"RescaleSlope '0(\.0)?' is read as 1"),
    ({"WindowCenter": 2048, "WindowWidth": 0}, RAMP12 / 4095, "cannot be applied; the stored range is shown"),
    ({"WindowCenter": 2048, "WindowWidth": -5, "VOILUTFunction": "SIGMOID"}, RAMP12 / 4095, "cannot be applied"),
    ({"WindowCenter": 1000, "WindowWidth": 500, "VOILUTFunction": "BOGUS"},
     linear_window(RAMP12.astype(float), 1000, 500), "VOILUTFunction 'BOGUS' is not one of"),
    ({"WindowCenter": 1000, "WindowWidth": 500, "VOILUTFunction": ""},
     linear_window(RAMP12.astype(float), 1000, 500), None),             # empty: allowed (type 3), pydicom refused it
    ({"WindowCenter": 1000, "WindowWidth": 500, "VOILUTFunction": "linear"},
     linear_window(RAMP12.astype(float), 1000, 500), None),
])
def test_bad_presentation_attributes_are_mended_with_a_warning(tmp_path, attributes, expected, warning) -> None:
    """A slope of 0 gave every pixel NaN (and inference a class for it); a window of width 0 or an unknown VOI
    function made pydicom refuse a file that every viewer shows."""
    path = write_dicom_values(RAMP12, tmp_path / "odd.dcm", bits_stored=12, attributes=attributes)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = displayed(path)
    if warning is not None:
        assert any(re.search(warning, str(w.message)) for w in caught), [str(w.message) for w in caught]
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_bits_stored_of_zero_is_refused(tmp_path) -> None:
    path = write_dicom_values(RAMP12, tmp_path / "zero.dcm", bits_stored=12)
    ds = pydicom.dcmread(path)
    ds.BitsStored = 0
    ds.save_as(path)
    with pytest.raises(UnreadableImageError, match=r"zero.dcm: BitsStored 0 is not in 1..BitsAllocated 16"):
        read_dicom(path)


def test_an_8_bit_palette_in_16_bit_words_is_read_by_its_8_bits(tmp_path) -> None:
    """PS3.3 C.7.6.3.1.5: a descriptor of 8 bits with entries in 16-bit words; read by the uint16 range, white (255)
    came out near black."""
    gray = np.random.default_rng(2).integers(0, 256, (1, 20, 30), np.uint8)
    path = write_dicom_frames(gray, tmp_path / "palette8.dcm", "PALETTE COLOR")
    ds = pydicom.dcmread(path)
    for colour in ("Red", "Green", "Blue"):
        ds[f"{colour}PaletteColorLookupTableDescriptor"].value = [256, 0, 8]
        ds[f"{colour}PaletteColorLookupTableData"].value = np.arange(256).astype("<u2").tobytes()
    assert int(ds.BitsAllocated) == 8
    ds.PixelData = gray[0].tobytes()  # indices, looked up in the identity palette above
    ds.save_as(path)
    frame = first_dicom_frame(read_dicom(path), "palette8.dcm")
    assert frame.dtype == np.uint8
    np.testing.assert_array_equal(frame, np.repeat(gray[0][..., None], 3, axis=-1))


@pytest.mark.parametrize("photometric, syntax, tolerance, warned", [
    ("RGB", "explicit", 0, True), ("YBR_FULL", "rle", 1, False), ("YBR_FULL_422", "jpeg_baseline", 10, False),
])
def test_colour_without_planar_configuration_is_read_interleaved(tmp_path, photometric, syntax, tolerance,
                                                                  warned) -> None:
    """Left out by some exports (type 1C): pydicom refused the file ("Missing required element: (0028,0006)")."""
    frames = colourful_frames(1)
    path = write_dicom_frames(frames, tmp_path / "colour.dcm", photometric, syntax)
    ds = pydicom.dcmread(path)
    del ds.PlanarConfiguration
    ds.save_as(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = first_dicom_frame(read_dicom(path), "colour.dcm")
    assert np.abs(frame.astype(int) - frames[0]).max() <= tolerance
    assert any("without PlanarConfiguration; read as interleaved" in str(w.message) for w in caught) == warned


def relabelled(path, **attributes):
    """``path`` rewritten with ``attributes`` set (by keyword) on its data set."""
    ds = pydicom.dcmread(path)
    with warnings.catch_warnings():  # pydicom's note on the invalid values some tests write
        warnings.simplefilter("ignore")
        for name, value in attributes.items():
            setattr(ds, name, value)
        ds.save_as(path)
    return path


def all_frames(path, caught: list | None = None) -> np.ndarray:
    """Every displayed frame of ``path``, stacked; warnings recorded into ``caught`` where given."""
    with warnings.catch_warnings(record=True) as recorded:
        warnings.simplefilter("always")
        frames = np.stack([pixels for _, pixels in iter_dicom_frames(read_dicom(path), str(path))])
    if caught is not None:
        caught.extend(str(w.message) for w in recorded)
    return frames


@pytest.mark.parametrize("photometric", ["YBR_PARTIAL_422", "YBR_PARTIAL_420", "YBR_ICT", "YBR_RCT"])
def test_another_ybr_label_on_a_jpeg_stream_is_read_as_full_range_ycbcr(tmp_path, photometric) -> None:
    """A JPEG stream's YCbCr is full range whatever the label says (ITU-T T.871); read by such a label, its YCbCr
    planes were shown as RGB: gray tissue pink at a third of its contrast, which the corpus took for colour flow."""
    frames = colourful_frames()
    path = write_dicom_frames(frames, tmp_path / "ybr.dcm", "YBR_FULL_422", "jpeg_baseline")
    reference = pydicom.dcmread(path).pixel_array  # pydicom's own decoding and YBR_FULL_422 -> RGB conversion
    caught: list[str] = []
    got = all_frames(relabelled(path, PhotometricInterpretation=photometric), caught)
    np.testing.assert_array_equal(got, reference)
    assert np.abs(got.astype(int) - frames).max() <= 10
    assert f"{path}: PhotometricInterpretation is {photometric!r} but a JPEG stream's YCbCr is full range whatever " \
           "the label says; read as 'YBR_FULL_422'" in caught


@pytest.mark.parametrize("photometric, syntax", [
    ("YBR_PARTIAL_422", "explicit"),  # native, subsampled: was refused as "pixel data truncated"
    ("YBR_PARTIAL_420", "explicit"),
    ("YBR_ICT", "explicit"),          # the JPEG 2000 colour transforms outside JPEG 2000
    ("YBR_RCT", "rle"),
    ("YBR_PARTIAL_422", "jpeg2000"),
    ("HSV", "explicit"),              # retired
    ("MONOCHROME1", "explicit"),      # an inverted monochrome label on three samples: which to invert is unknown
])
def test_colour_encodings_not_converted_to_rgb_are_refused_naming_them(tmp_path, photometric, syntax) -> None:
    """Their samples were shown as if they were RGB, without a word."""
    frames = colourful_frames(2)
    path = write_dicom_frames(frames, tmp_path / "colour.dcm", "RGB", syntax)
    relabelled(path, PhotometricInterpretation=photometric)
    if photometric.startswith("YBR_PARTIAL") and syntax == "explicit":  # two samples a pixel: Y Y Cb Cr
        relabelled(path, PixelData=bytes(2 * frames[..., 0].size))
    message = rf"colour.dcm: colour pixel data with PhotometricInterpretation '{photometric}' \(.*\), a colour " \
              r"encoding not supported here"
    with pytest.raises(UnreadableImageError, match=message):
        all_frames(path)


@pytest.mark.parametrize("syntax", ["explicit", "rle"])
def test_three_samples_labelled_monochrome2_are_read_as_rgb_with_a_warning(tmp_path, syntax) -> None:
    """Exports that copy a gray frame into three channels keep the gray label: their samples were shown as RGB, and
    the colour check first refused them."""
    frames = colourful_frames(2)
    path = relabelled(write_dicom_frames(frames, tmp_path / "gray3.dcm", "RGB", syntax),
                      PhotometricInterpretation="MONOCHROME2")
    caught: list[str] = []
    np.testing.assert_array_equal(all_frames(path, caught), frames)
    assert f"{path}: 3 samples per pixel labelled MONOCHROME2; read as RGB" in caught


def test_dicom_display_refuses_a_colour_encoding_it_does_not_convert(tmp_path) -> None:
    """For a data set that did not come through read_dicom: its frames were shown as RGB."""
    path = write_dicom_frames(colourful_frames(1), tmp_path / "colour.dcm", "RGB", "explicit")
    ds = pydicom.dcmread(path)
    frame = ds.pixel_array
    ds.PhotometricInterpretation = "YBR_PARTIAL_422"
    with pytest.raises(UnreadableImageError, match=r"colour.dcm: .*PhotometricInterpretation 'YBR_PARTIAL_422'"):
        dicom_display(frame, ds, "colour.dcm")


@pytest.mark.parametrize("syntax, tolerance, warned", [
    ("jpeg_baseline", 10, True), ("jpeg2000", 0, True),
    ("rle", 0, False),  # RLE is planar by definition, and pydicom decodes it so whatever the attribute says
])
def test_planar_configuration_1_on_compressed_colour_follows_the_codec(tmp_path, syntax, tolerance, warned) -> None:
    """PS3.5 8.2.1: the attribute is irrelevant for JPEG-family data, whose codecs give interleaved samples; pydicom 3
    reshaped them by it, and the colour came out scrambled."""
    frames = colourful_frames()
    path = write_dicom_frames(frames, tmp_path / "planar.dcm", "YBR_FULL_422" if syntax == "jpeg_baseline" else "RGB",
                              syntax)
    caught: list[str] = []
    got = all_frames(relabelled(path, PlanarConfiguration=1), caught)
    assert np.abs(got.astype(int) - frames).max() <= tolerance
    assert any("PlanarConfiguration 1 does not apply to" in message for message in caught) == warned


def loop_values(signed: bool) -> np.ndarray:
    """(3, 32, 48) values of a 16-bit loop that uses a small part of its range (0..1020), each frame less of it."""
    ramp = np.arange(32 * 48).reshape(32, 48) % 1021
    frames = np.stack([ramp // 3, ramp // 2 + 5, ramp])
    return (frames - 500).astype(np.int16) if signed else frames.astype(np.uint16)


@pytest.mark.parametrize("bits_stored, high_bit, signed", [(16, None, False), (12, 15, False), (12, None, True)])
def test_a_native_loop_is_shown_over_the_values_the_whole_file_holds(tmp_path, bits_stored, high_bit, signed) -> None:
    """Without a window or Smallest/LargestImagePixelValue, a loop was shown over every value of its bit depth:
    a 16-bit loop holding values up to 1,020 came out black, and the corpus dropped its frames as no signal. One
    range for every frame keeps them comparable (a dim frame is not stretched as bright as a bright one)."""
    values = loop_values(signed)
    path = write_dicom_values(values, tmp_path / "loop.dcm", bits_stored=bits_stored, high_bit=high_bit)
    expected = (values - values.min()) / float(values.max() - values.min())
    np.testing.assert_allclose(all_frames(path), expected, atol=1e-6)


@pytest.mark.parametrize("syntax", ["jpeg2000", "rle"])
def test_a_compressed_loop_is_shown_over_the_values_of_all_its_frames(tmp_path, syntax) -> None:
    """Its first frame is the darkest: shown over that frame's range alone, the later ones saturated to white."""
    from pydicom.uid import JPEG2000Lossless, RLELossless

    values = loop_values(False)
    path = write_dicom_values(values, tmp_path / "loop.dcm", bits_stored=16)
    ds = pydicom.dcmread(path)
    ds.compress(JPEG2000Lossless if syntax == "jpeg2000" else RLELossless)
    ds.save_as(path)
    expected = (values - values.min()) / float(values.max() - values.min())
    np.testing.assert_allclose(all_frames(path), expected, atol=1e-6)


@pytest.mark.parametrize("attributes", [{"RescaleIntercept": -1024}, {"RescaleSlope": 2}, {"RescaleSlope": 0.5}])
def test_a_loop_with_one_rescale_attribute_alone_is_shown_as_its_pixels_are_read(tmp_path, attributes) -> None:
    """Neither is applied to the pixels without the other (pydicom's apply_modality_lut): the range applied it, and
    an intercept-only loop came out all white, a slope-only one at half or clipped contrast."""
    values = loop_values(False)
    path = write_dicom_values(values, tmp_path / "loop.dcm", bits_stored=16, attributes=attributes)
    expected = (values - values.min()) / float(values.max() - values.min())
    np.testing.assert_allclose(all_frames(path), expected, atol=1e-6)


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"])  # implicit, explicit VR
def test_an_empty_pixel_data_element_is_refused_naming_the_file(tmp_path, syntax) -> None:
    """It crashed with "TypeError: object of type 'NoneType' has no len()"."""
    path = write_dicom(np.zeros((8, 8), np.uint8), tmp_path / "empty.dcm")
    ds = pydicom.dcmread(path)
    ds.PixelData = b""
    ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(path, implicit_vr=syntax == "1.2.840.10008.1.2", little_endian=True)
    with pytest.raises(UnreadableImageError, match=r"empty.dcm: its Pixel Data element is empty"):
        read_dicom(path)


@pytest.mark.parametrize("photometric", ["monochrome1", "monochrome2", "rgb", "ybr_full"])
def test_a_lower_case_photometric_interpretation_is_read_upper_cased(tmp_path, photometric) -> None:
    frames = colourful_frames(2) if photometric in ("rgb", "ybr_full") else colourful_frames(2)[..., 1]
    path = write_dicom_frames(frames, tmp_path / "lower.dcm", photometric.upper())
    caught: list[str] = []
    got = all_frames(relabelled(path, PhotometricInterpretation=photometric), caught)
    assert np.abs(got.astype(int) - frames).max() <= (1 if photometric == "ybr_full" else 0)
    assert f"{path}: PhotometricInterpretation {photometric!r} is read as {photometric.upper()!r}" in caught


@pytest.mark.parametrize("syntax", ["jpeg_baseline", "jpeg2000"])
@pytest.mark.parametrize("coded, header", [("gray", ("RGB", 3)), ("gray", ("YBR_FULL_422", 3)),
                                           ("colour", ("MONOCHROME2", 1))])
def test_samples_per_pixel_follow_the_codestream_where_the_header_says_otherwise(tmp_path, syntax, coded,
                                                                                  header) -> None:
    """Gray JPEG frames labelled colour (and colour ones labelled MONOCHROME2) were refused with pydicom's "could not
    broadcast input array from shape (1536,) into shape (4608,)"; they are read as their codestream codes them."""
    levels = (40, 80, 120)
    if coded == "gray":
        frames = np.stack([np.full((32, 48), level, np.uint8) for level in levels])
        path = write_dicom_frames(frames, tmp_path / "coded.dcm", transfer_syntax=syntax)
    else:
        frames = np.stack([np.full((32, 48, 3), (level, 255 - level, 0), np.uint8) for level in levels])
        path = write_dicom_frames(frames, tmp_path / "coded.dcm", "YBR_FULL_422" if syntax == "jpeg_baseline" else "RGB",
                                  transfer_syntax=syntax)
    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation, ds.SamplesPerPixel = header
    if header[1] == 3:
        ds.PlanarConfiguration = 0
    else:
        del ds.PlanarConfiguration
    ds.save_as(path)
    with pytest.warns(UserWarning, match=rf"coded.dcm: its header says SamplesPerPixel {header[1]}, '{header[0]}' but "
                                         rf"its JPEG( 2000)? codestream codes {4 - header[1]} component"):
        read = [pixels for _, pixels in iter_dicom_frames(read_dicom(path), str(path))]
    assert [pixels.shape for pixels in read] == [frame.shape for frame in frames]
    np.testing.assert_allclose(np.stack(read).astype(float), frames.astype(float), atol=3)
