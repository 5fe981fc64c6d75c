"""Multi-frame DICOMs whose ``NumberOfFrames`` is missing or wrong: every frame the pixel data holds is read, with a
warning naming the file. Before, pydicom's reading of the header cut a 5-frame loop to its first frame in silence
(no ``NumberOfFrames``), or made the whole file unreadable (a header promising more frames than were written)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, generate_frames

from monai_ext.io.dicom import iter_dicom_frames, read_dicom
from monai_ext.io.dicom_frames import stored_frame_count
from monai_ext.io.errors import UnreadableImageError
from monai_ext.io.writers import write_dicom_frames

#: Five frames, each one flat gray level, so a frame's identity survives lossy coding.
LEVELS = (40, 80, 120, 160, 200)
FRAMES = np.stack([np.full((32, 48), level, np.uint8) for level in LEVELS])
SYNTAXES = ("explicit", "rle", "jpeg2000", "jpeg_baseline")
ENCAPSULATED = SYNTAXES[1:]


def loop_with_header(folder: Path, syntax: str, header: int | None, offset_table: bool = True) -> Path:
    """The five-frame loop written with ``syntax``, then ``NumberOfFrames`` set to ``header`` (deleted for None)
    and, for encapsulated data, its Basic Offset Table emptied unless ``offset_table``."""
    path = write_dicom_frames(FRAMES, folder / f"{syntax}.dcm", transfer_syntax=syntax)
    ds = pydicom.dcmread(path)
    if not offset_table:
        ds.PixelData = encapsulate(list(generate_frames(ds.PixelData, number_of_frames=len(LEVELS))), has_bot=False)
    if header is None:
        del ds.NumberOfFrames
    else:
        ds.NumberOfFrames = header
    out = folder / f"{syntax}_{header}_{offset_table}.dcm"
    ds.save_as(out)
    return out


def frame_levels(path: Path) -> list[int]:
    return [int(round(float(frame.mean()))) for _, frame in iter_dicom_frames(read_dicom(path), str(path))]


@pytest.mark.parametrize("syntax", ENCAPSULATED)
@pytest.mark.parametrize("header", [None, 1, 2, 8])
def test_every_stored_frame_is_read_whatever_the_header_says(tmp_path, syntax, header):
    path = loop_with_header(tmp_path, syntax, header)
    told = "no NumberOfFrames" if header is None else f"NumberOfFrames is {header}"
    with pytest.warns(UserWarning, match=rf"{path.name}: {told} but its pixel data holds 5 frames"):
        levels = frame_levels(path)
    assert np.abs(np.array(levels) - LEVELS).max() <= 2


@pytest.mark.parametrize("syntax", ["rle", "jpeg2000", "jpeg_baseline"])
@pytest.mark.parametrize("header", [None, 2, 8])
def test_frames_are_counted_without_an_offset_table(tmp_path, syntax, header):
    """One fragment per frame counts as is (the header agreeing or not); JPEG and JPEG 2000 frames end with their
    codestream's end marker."""
    path = loop_with_header(tmp_path, syntax, header, offset_table=False)
    assert stored_frame_count(pydicom.dcmread(path)) == len(LEVELS)
    with pytest.warns(UserWarning, match="holds 5 frames"):
        assert len(frame_levels(path)) == len(LEVELS)


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_a_right_header_reads_as_before_and_warns_nothing(tmp_path, syntax, recwarn):
    path = loop_with_header(tmp_path, syntax, len(LEVELS))
    assert len(frame_levels(path)) == len(LEVELS)
    assert not [w for w in recwarn if "NumberOfFrames" in str(w.message)]


def test_native_data_cut_inside_a_frame_keeps_its_whole_frames(tmp_path):
    path = loop_with_header(tmp_path, "explicit", len(LEVELS))
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData[: 3 * FRAMES[0].size + 100]  # three whole frames and part of a fourth
    ds.save_as(path)
    with pytest.warns(UserWarning, match="NumberOfFrames is 5 but its pixel data holds 3 frames; only those are read"):
        assert frame_levels(path) == list(LEVELS[:3])


@pytest.mark.parametrize("header", [None, 1, 2])
def test_native_data_longer_than_its_header_gives_the_headers_frames_and_says_so(tmp_path, header):
    """More bytes than the header's frames are as often a mislabelled sample size (16-bit data said to be 8-bit) or
    a single-frame file with trailing bytes as they are frames: the header's frames are read. pydicom's warning said
    the extra frames were returned, while the reader took the header's."""
    path = loop_with_header(tmp_path, "explicit", header)
    told = "it has no NumberOfFrames" if header is None else f"NumberOfFrames says {header}"
    with pytest.warns(UserWarning) as caught:
        assert frame_levels(path) == list(LEVELS[: header or 1])
    messages = [str(w.message) for w in caught]
    assert any(f"holds 5 frames' bytes but {told}: {header or 1} read" in m for m in messages), messages
    assert not any("include these extra frames" in m for m in messages), messages


@pytest.mark.parametrize("syntax", ["jpeg_baseline", "jpeg2000", "rle"])
@pytest.mark.parametrize("keep_fraction", [0.55, 0.85])
def test_an_encapsulated_loop_cut_off_while_copied_gives_its_whole_frames(tmp_path, syntax, keep_fraction):
    """pydicom drops the whole data set of a file that ends inside encapsulated pixel data: a JPEG cine loop whose
    copy was interrupted lost every frame, and the reason said it had no pixel data."""
    path = loop_with_header(tmp_path, syntax, len(LEVELS), offset_table=False)
    data = path.read_bytes()
    start = data.rfind(b"\xe0\x7f\x10\x00")  # the pixel data element
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: start + int((len(data) - start) * keep_fraction)])
    with pytest.warns(UserWarning, match=r"cut.dcm: the file is cut off inside its pixel data .*whole fragment"):
        levels = frame_levels(cut)
    assert 1 <= len(levels) < len(LEVELS)
    assert np.abs(np.array(levels) - LEVELS[: len(levels)]).max() <= 2


@pytest.mark.parametrize("syntax, kept, reason", [
    ("jpeg_baseline", 30, "DICOM file is cut off inside its pixel data before the end of its first frame"),
    ("explicit", 6, "DICOM file is cut off inside its pixel data"),      # inside the element's header
    ("explicit", 30, "pixel data truncated: 18 of the 7680 bytes"),     # inside its value: pydicom reads that part
])
def test_a_file_cut_before_a_whole_frame_says_it_is_cut_off(tmp_path, syntax, kept, reason):
    """Such a file was refused as having no pixel data, which reads like a structured report, not a copy to redo."""
    path = loop_with_header(tmp_path, syntax, len(LEVELS))
    data = path.read_bytes()
    start = data.rfind(b"\xe0\x7f\x10\x00")
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: start + kept])
    with pytest.raises(UnreadableImageError, match=f"cut.dcm: {reason}"):
        frame_levels(cut)


def with_offset_table(path: Path, offsets: list[int]) -> Path:
    """The file with its Basic Offset Table replaced by ``offsets`` (PS3.5 A.4: item tag, length, offsets)."""
    ds = pydicom.dcmread(path)
    fragments = encapsulate(list(generate_frames(ds.PixelData, number_of_frames=len(LEVELS))), has_bot=False)
    table = b"\xfe\xff\x00\xe0" + struct.pack(f"<I{len(offsets)}I", 4 * len(offsets), *offsets)
    ds.PixelData = table + fragments[8:]  # the empty table item is 8 bytes
    out = path.with_name(f"table_{len(offsets)}.dcm")
    ds.save_as(out)
    return out


@pytest.mark.parametrize("header", [None, len(LEVELS)])
@pytest.mark.parametrize("entries", [1, 3])
def test_a_short_offset_table_gives_way_to_the_fragments(tmp_path, entries, header):
    """A one-entry ``[0]`` table (some writers' way of writing "no table") or one an editor left short: pydicom 3
    refused the file, 2.4 decoded garbage frames, and counting by the table lost frames. The fragments count."""
    path = loop_with_header(tmp_path, "jpeg_baseline", len(LEVELS))
    ds = pydicom.dcmread(path)
    lengths = [len(f) + 8 for f in generate_frames(ds.PixelData, number_of_frames=len(LEVELS))]
    short = with_offset_table(path, [int(sum(lengths[:i])) for i in range(entries)])
    if header is None:  # a "[0]" table agrees with a missing header's 1: it must not be taken for the count
        ds = pydicom.dcmread(short)
        del ds.NumberOfFrames
        ds.save_as(short)
    with pytest.warns(UserWarning, match=r"Basic Offset Table does not fit its 5 frames"):
        levels = frame_levels(short)
    assert np.abs(np.array(levels) - LEVELS).max() <= 2


def rle_split_over_fragments(folder: Path) -> Path:
    """The RLE loop with each frame split over two fragments and no offset table (not allowed for RLE)."""
    path = loop_with_header(folder, "rle", len(LEVELS))
    ds = pydicom.dcmread(path)
    frames = list(generate_frames(ds.PixelData, number_of_frames=len(LEVELS)))
    ds.PixelData = encapsulate([part for frame in frames for part in (frame[: len(frame) // 4 * 2],
                                                                      frame[len(frame) // 4 * 2 :])], has_bot=False)
    ds.save_as(path)
    return path


def test_rle_frames_split_over_fragments_are_counted_as_frames(tmp_path):
    """RLE frames must be one fragment each (PS3.5 A.4.2); a file that splits them has twice the fragments, and
    the count is of those that begin an RLE frame: no "holds 10 frames" warning, and the decoder's refusal is
    named."""
    path = rle_split_over_fragments(tmp_path)
    assert stored_frame_count(pydicom.dcmread(path)) == len(LEVELS)
    with pytest.raises(UnreadableImageError, match=rf"{path.name}: cannot decode its pixel data \(RLE Lossless"):
        frame_levels(path)


def test_native_data_a_whole_fraction_short_is_a_mislabelled_header_and_refused(tmp_path):
    """Gray frames whose header says RGB hold exactly a third of the bytes it needs: not frames cut off (read as
    garbage colour frames), but a header to fix; refused as truncated, as before."""
    path = loop_with_header(tmp_path, "explicit", len(LEVELS))
    ds = pydicom.dcmread(path)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.save_as(path)
    with pytest.raises(UnreadableImageError, match="pixel data truncated"):
        frame_levels(path)


def test_a_complete_file_with_only_an_icons_pixel_data_has_no_pixel_data_not_a_cut(tmp_path):
    """The icon's (7FE0,0010) tag was taken for the image's pixel data cut off: "an incomplete copy?" sent users
    looking for a copy that was complete."""
    from pydicom.dataset import Dataset

    path = loop_with_header(tmp_path, "explicit", len(LEVELS))
    ds = pydicom.dcmread(path)
    del ds.PixelData
    icon = Dataset()
    icon.Rows, icon.Columns, icon.SamplesPerPixel, icon.PhotometricInterpretation = 8, 8, 1, "MONOCHROME2"
    icon.BitsAllocated, icon.BitsStored, icon.HighBit, icon.PixelRepresentation = 8, 8, 7, 0
    icon.PixelData = bytes(64)
    ds.IconImageSequence = [icon]
    ds.save_as(tmp_path / "icon_only.dcm")
    with pytest.raises(UnreadableImageError, match="icon_only.dcm: DICOM file has no pixel data"):
        read_dicom(tmp_path / "icon_only.dcm")


def test_full_size_colour_labelled_ybr_full_422_is_refused_not_read_at_wrong_offsets(tmp_path):
    """Decompressed colour left labelled YBR_FULL_422 is half as long again as the header says: cut to the header's
    length, its frames were decoded from the wrong bytes (mixing frames) instead of being refused."""
    path = write_dicom_frames(np.stack([np.full((16, 16, 3), 40 * (k + 1), np.uint8) for k in range(4)]),
                              tmp_path / "rgb.dcm", photometric="RGB")
    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.save_as(tmp_path / "ybr.dcm")
    with pytest.raises(UnreadableImageError, match="ybr.dcm: .*(YBR_FULL_422|third larger)"):
        frame_levels(tmp_path / "ybr.dcm")


def native_ybr_full_422(path: Path, rgb: np.ndarray) -> Path:
    """(N, H, W, 3) uint8 ``rgb`` (W even) written uncompressed as YBR_FULL_422: Y1 Y2 Cb Cr for each pair of
    pixels, 2 bytes a pixel (PS3.3 C.7.6.3.1.2), the chroma of the pair's first pixel."""
    from pydicom.pixels import convert_color_space

    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    stored = np.stack([ybr[:, :, 0::2, 0], ybr[:, :, 1::2, 0], ybr[:, :, 0::2, 1], ybr[:, :, 0::2, 2]], axis=-1)
    ds = pydicom.dcmread(write_dicom_frames(rgb, path, photometric="RGB"))
    ds.PhotometricInterpretation, ds.PixelData = "YBR_FULL_422", stored.tobytes()
    ds.save_as(path)
    return path


@pytest.mark.parametrize("count, stride", [(2, 1), (5, 1), (5, 2)])
def test_uncompressed_ybr_full_422_frames_are_read_at_their_own_offsets(tmp_path, count, stride):
    """pydicom 3's frame iterator placed frames after the first at 3 bytes a pixel where this layout stores 2:
    frames 1.. mixed other frames' bytes and the read failed two thirds in ("insufficient pixel data")."""
    rgb = np.stack([np.full((16, 32, 3), (30 * (k + 1), 200 - 30 * k, 100), np.uint8) for k in range(count)])
    path = native_ybr_full_422(tmp_path / "ybr422.dcm", rgb)
    reference = pydicom.dcmread(path).pixel_array.reshape(count, 16, 32, 3)  # pydicom's decoding of all frames
    read = list(iter_dicom_frames(read_dicom(path), str(path), frame_stride=stride))
    assert [index for index, _ in read] == list(range(0, count, stride))
    for index, frame in read:
        np.testing.assert_array_equal(frame, reference[index])


@pytest.mark.parametrize("syntax", SYNTAXES)
@pytest.mark.parametrize("header", [-1, 0])
def test_a_frame_count_below_one_is_read_as_absent(tmp_path, syntax, header):
    """NumberOfFrames -1 ("unknown") read native data as no frames at all, and refused the file in a loader as
    "frame_stride must be at least 1, got -1"; it now reads as a file without the attribute: every encapsulated
    frame, the first native one (extra native bytes are not trusted to be frames)."""
    path = loop_with_header(tmp_path, syntax, header)
    with pytest.warns(UserWarning, match=rf"{path.name}: NumberOfFrames '{header}' is no frame count; read as if absent"):
        levels = frame_levels(path)
    expected = LEVELS[:1] if syntax == "explicit" else LEVELS
    assert len(levels) == len(expected) and np.abs(np.array(levels) - expected).max() <= 2


def relabelled(source: Path, path: Path, syntax: str) -> Path:
    """``source`` written again with its file meta saying transfer syntax ``syntax``, its data set (pixel data
    included) unchanged: what an exporter that re-encodes the pixels and keeps the old file meta leaves."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info

    ds = pydicom.dcmread(source)
    ds.file_meta.TransferSyntaxUID = syntax
    meta, body = DicomBytesIO(), DicomBytesIO()
    for stream in (meta, body):
        stream.is_little_endian, stream.is_implicit_VR = True, False
    write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    write_dataset(body, ds)
    path.write_bytes(b"\0" * 128 + b"DICM" + meta.getvalue() + body.getvalue())
    return path


@pytest.mark.parametrize("written, label, read_as", [
    ("jpeg_baseline", pydicom.uid.ExplicitVRLittleEndian, "JPEG Baseline"),  # was read as raw bytes: noise
    ("rle", pydicom.uid.ExplicitVRLittleEndian, "RLE Lossless"),             # was "pixel data truncated"
    ("jpeg2000", pydicom.uid.ImplicitVRLittleEndian, "JPEG 2000"),
    ("jpeg_baseline", pydicom.uid.JPEG2000Lossless, "JPEG Baseline"),        # was the wrong codec's complaint
    ("jpeg_baseline", pydicom.uid.RLELossless, "JPEG Baseline"),
    ("rle", pydicom.uid.JPEGBaseline8Bit, "RLE Lossless"),
    ("explicit", pydicom.uid.JPEGBaseline8Bit, "uncompressed"),  # was "unexpected tag (2828,2828) ... Offset Table"
    ("explicit", pydicom.uid.RLELossless, "uncompressed"),
    ("explicit", pydicom.uid.JPEG2000Lossless, "uncompressed"),
])
def test_pixel_data_is_read_by_what_it_holds_when_its_transfer_syntax_says_otherwise(tmp_path, written, label,
                                                                                       read_as):
    path = relabelled(loop_with_header(tmp_path, written, len(LEVELS)), tmp_path / "relabelled.dcm", label)
    with pytest.warns(UserWarning, match=rf"relabelled.dcm: .*; read as {read_as}"):
        levels = frame_levels(path)
    assert len(levels) == len(LEVELS) and np.abs(np.array(levels) - LEVELS).max() <= 2


@pytest.mark.parametrize("written, label, reason", [
    ("jpeg_baseline", pydicom.uid.ExplicitVRLittleEndian,
     r"encapsulated \(compressed\) but its transfer syntax says uncompressed .* the codec is unknown"),
    ("explicit", pydicom.uid.JPEGBaseline8Bit,
     r"says compressed .* not encapsulated, and its \d+ bytes are too few for its frames uncompressed"),
])
def test_pixel_data_that_fits_no_transfer_syntax_is_refused_with_the_reason(tmp_path, written, label, reason):
    source = loop_with_header(tmp_path, written, len(LEVELS))
    ds = pydicom.dcmread(source)
    if written == "explicit":
        ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]  # less than one frame per header frame
    else:  # a first fragment that is no codestream known here (an MPEG stream, say)
        ds.PixelData = encapsulate([b"\0\0\1\xb3" + bytes(60)] * len(LEVELS))
    ds.save_as(source)
    path = relabelled(source, tmp_path / "relabelled.dcm", label)
    with pytest.raises(UnreadableImageError, match=rf"relabelled.dcm: .*{reason}"):
        frame_levels(path)


def with_defined_length(source: Path, path: Path) -> Path:
    """``source`` (encapsulated pixel data last) written again with its pixel data given a defined length and no
    sequence delimiter, as some writers leave encapsulated data (pydicom and GDCM decode it)."""
    raw = source.read_bytes()
    start = raw.rfind(b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff")
    end = raw.rfind(b"\xfe\xff\xdd\xe0\x00\x00\x00\x00")
    value = raw[start + 12 : end]
    path.write_bytes(raw[:start] + b"\xe0\x7f\x10\x00OB\x00\x00" + struct.pack("<I", len(value)) + value)
    return path


@pytest.mark.parametrize("syntax", ["rle", "jpeg2000", "jpeg_baseline"])
def test_encapsulated_pixel_data_of_a_defined_length_is_decoded(tmp_path, syntax):
    """Taken for uncompressed data under a compressed label: refused as "damaged", shorter than its frames."""
    path = with_defined_length(loop_with_header(tmp_path, syntax, len(LEVELS)), tmp_path / "defined.dcm")
    assert not pydicom.dcmread(path)["PixelData"].is_undefined_length
    levels = frame_levels(path)
    assert len(levels) == len(LEVELS) and np.abs(np.array(levels) - LEVELS).max() <= 2


def test_encapsulated_noise_of_a_defined_length_is_not_read_as_raw_bytes(tmp_path):
    """An RLE of noisy frames is longer than the frames: it was relabelled uncompressed and its bytes shown."""
    frames = np.random.default_rng(0).integers(0, 256, (3, 32, 48), dtype=np.uint8)
    path = with_defined_length(write_dicom_frames(frames, tmp_path / "rle.dcm", transfer_syntax="rle"),
                               tmp_path / "defined.dcm")
    read = [pixels for _, pixels in iter_dicom_frames(read_dicom(path), str(path))]
    np.testing.assert_array_equal(np.stack(read), frames)


def test_a_codestream_whose_frame_header_is_past_its_first_fragment_is_sniffed(tmp_path):
    """A JPEG frame split into fragments, a 3 kB APP2 segment before its frame header: only the first fragment
    was read, and the mislabelled file was refused as "the codec is unknown"."""
    import io

    from PIL import Image

    source = loop_with_header(tmp_path, "jpeg_baseline", len(LEVELS))
    ds = pydicom.dcmread(source)
    streams = []
    for level in LEVELS:
        out = io.BytesIO()
        Image.fromarray(np.full((int(ds.Rows), int(ds.Columns)), level, np.uint8)).save(
            out, "JPEG", quality=95, icc_profile=bytes(3000))
        streams.append(out.getvalue())
    ds.PixelData = encapsulate(streams, fragments_per_frame=4, has_bot=False)
    ds.save_as(source)
    path = relabelled(source, tmp_path / "relabelled.dcm", pydicom.uid.ExplicitVRLittleEndian)
    with pytest.warns(UserWarning, match=r"relabelled.dcm: .*; read as JPEG Baseline"):
        levels = frame_levels(path)
    assert len(levels) == len(LEVELS) and np.abs(np.array(levels) - LEVELS).max() <= 2
