"""How many frames a DICOM file's pixel data holds, whatever its header says.

Exports and anonymisers of cine loops sometimes drop ``NumberOfFrames`` or leave the value of an earlier version of
the file. pydicom believes the header: a 40-frame JPEG loop without it decodes as its first frame and nothing says
the other 39 were there; a header that promises more frames than were written makes every frame unreadable. The
frames are counted from the pixel data instead: whole frames of native data, the Extended or Basic Offset Table of
encapsulated data, else its fragments (one per frame where their count says so, as RLE always has; otherwise the
fragments that end a JPEG or JPEG 2000 codestream, pydicom's own rule for frame boundaries). Where the count differs
from the header, the file is read with the count and a warning names it; so is a Basic Offset Table that the
fragments contradict.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Iterator
from io import BytesIO
from typing import Any

#: JPEG EOI and JPEG 2000 EOC (the same two bytes): the last marker of a frame's codestream.
_END_OF_CODESTREAM = b"\xff\xd9"
#: How far from a fragment's end the marker may lie (the fragment is padded to an even length, some writers pad more).
_END_MARKER_WINDOW = 10


#: The start of encapsulated Pixel Data in Explicit VR Little Endian (the only encoding that encapsulates): tag
#: (7FE0,0010), VR OB or OW, two reserved bytes, undefined length.
_ENCAPSULATED_PIXEL_DATA = tuple(b"\xe0\x7f\x10\x00" + vr + b"\x00\x00\xff\xff\xff\xff" for vr in (b"OB", b"OW"))
_ITEM = b"\xfe\xff\x00\xe0"


def fragments_before_cut(data: bytes) -> tuple[int, list[bytes]] | None:
    """Where the encapsulated pixel data of a file cut off inside it starts, and its whole items (the Basic Offset
    Table first, then the fragments); None where ``data`` holds no encapsulated pixel data.

    pydicom drops the whole element when the file ends before its sequence delimiter, so a JPEG cine loop whose
    copy was interrupted would lose every frame; read here item by item up to the cut, as for native data. The last
    pixel data in the file is the image's (an icon's comes earlier, inside its sequence).
    """
    start = max(data.rfind(header) for header in _ENCAPSULATED_PIXEL_DATA)
    if start < 0:
        return None
    position, items = start + len(_ENCAPSULATED_PIXEL_DATA[0]), []
    while position + 8 <= len(data) and data[position : position + 4] == _ITEM:
        length = int.from_bytes(data[position + 4 : position + 8], "little")
        if position + 8 + length > len(data):  # the item the copy was cut in
            break
        items.append(data[position + 8 : position + 8 + length])
        position += 8 + length
    return start, items


#: Explicit VRs with a 4-byte length after two reserved bytes (PS3.5 7.1.2), as Pixel Data has.
_LONG_VRS = (b"OB", b"OW", b"OD", b"OF", b"OL", b"OV", b"UN")


def native_pixel_data_cut(data: bytes) -> bool:
    """Whether ``data`` ends inside its last Pixel Data element (its header, or a value shorter than its length):
    a copy cut off there. An icon's complete pixel data in a file without the image's is no cut."""
    start = data.rfind(b"\xe0\x7f\x10\x00")
    if start < 0:
        return False
    explicit = data[start + 4 : start + 6] in _LONG_VRS
    header = 12 if explicit else 8
    if len(data) < start + header:
        return True
    length = int.from_bytes(data[start + header - 4 : start + header], "little")
    return length != 0xFFFFFFFF and start + header + length > len(data)


def whole_frame_fragments(fragments: list[bytes]) -> list[bytes]:
    """The fragments up to the last that ends a JPEG or JPEG 2000 codestream (a frame split over fragments and cut
    after some of them is no frame); all of them where none ends one (RLE has no end marker: a fragment per frame)."""
    ends = [i for i, fragment in enumerate(fragments) if _END_OF_CODESTREAM in fragment[-_END_MARKER_WINDOW:]]
    return fragments[: ends[-1] + 1] if ends else fragments


def encapsulated_value(fragments: list[bytes]) -> bytes:
    """Encapsulated Pixel Data holding ``fragments`` after an empty Basic Offset Table (frames found by their
    fragments, see :func:`reconcile_frame_count`)."""
    items = [_ITEM + len(fragment).to_bytes(4, "little") + fragment for fragment in fragments]
    return _ITEM + bytes(4) + b"".join(items)


def frame_count(ds: Any) -> int:
    """Number of frames as the header says (``NumberOfFrames``; 1 when absent, empty or below 1, as pydicom reads 0:
    a header-only count of -1 was given on as -1 frames)."""
    return max(1, int(ds.get("NumberOfFrames", 1) or 1))


def reconcile_frame_count(ds: Any, source: str) -> None:
    """Make ``NumberOfFrames`` (and, where it is wrong, the Basic Offset Table) say what the pixel data holds,
    warning with the file's name.

    Native data is only ever cut to its whole frames (a file cut off while copied). Of more bytes than the header's
    frames, the header's frames are read, with a warning saying so, because the excess is as often a mislabelled
    sample size or colour layout as frames left out of the count (pydicom's own warning would say they are read);
    data exactly a half, a third or a quarter of the length the header needs (a mislabelled header too) and data
    shorter than one frame are left as they are, refused as truncated by the reader.
    """
    header = frame_count(ds)
    if not ds.file_meta.TransferSyntaxUID.is_compressed:
        stored = _native_frame_count(ds)
        if stored and stored < header and not _is_a_whole_fraction(len(ds.PixelData), _expected_length(ds)):
            _set_frames(ds, source, header, stored)
            ds.PixelData = ds.PixelData[: _expected_length(ds)]  # the part of a frame cut off is not a frame
        elif stored and stored > header and str(ds.get("PhotometricInterpretation", "")) != "YBR_FULL_422":
            # (YBR_FULL_422 left as it is: full-size colour data decompressed under that label is half as long
            # again as the header says, which pydicom refuses with its own clear reason)
            told = f"NumberOfFrames says {header}" if ds.get("NumberOfFrames") not in (None, "") else "it has no NumberOfFrames"
            warnings.warn(f"{source}: its pixel data holds {stored} frames' bytes but {told}: {header} read (extra "
                          "bytes are as often a mislabelled sample size or colour layout as frames; correct the "
                          "header to read them)", UserWarning, stacklevel=3)
            length = _expected_length(ds)
            ds.PixelData = ds.PixelData[:length] + b"\0" * (length % 2)  # even, as DICOM values are
        return
    stored, table_is_wrong = _encapsulated_frame_count(ds)
    if table_is_wrong:
        warnings.warn(f"{source}: its Basic Offset Table does not fit its {stored} frames; they are read by their "
                      f"fragments", UserWarning, stacklevel=3)
        ds.PixelData = _without_offset_table(ds.PixelData)
    if stored and stored != header:
        _set_frames(ds, source, header, stored)


def stored_frame_count(ds: Any) -> int | None:
    """Frames held by the pixel data, or None where the data cannot tell (1-bit native data packs frames across
    byte boundaries; encapsulated data with neither offset table nor codestream ends)."""
    if not ds.file_meta.TransferSyntaxUID.is_compressed:
        return _native_frame_count(ds)
    return _encapsulated_frame_count(ds)[0]


def _is_a_whole_fraction(actual: int, expected: int) -> bool:
    """Whether ``actual`` bytes are exactly 1/2, 1/3 or 1/4 of ``expected`` (one padding byte allowed): a sample
    size or count said wrong in the header (gray frames said to be RGB, 8-bit said to be 16), not frames cut off;
    such a file is left to be refused as truncated rather than read as garbage frames."""
    return any(abs(actual * parts - expected) <= parts for parts in (2, 3, 4))


def _set_frames(ds: Any, source: str, header: int, stored: int) -> None:
    """Warn that the header's frame count is not the stored one, naming the file, and take the stored one."""
    told = f"NumberOfFrames is {header}" if ds.get("NumberOfFrames") not in (None, "") else "no NumberOfFrames"
    fate = "all are read" if stored > header else "only those are read"
    warnings.warn(f"{source}: {told} but its pixel data holds {stored} frames; {fate}", UserWarning, stacklevel=4)
    ds.NumberOfFrames = stored


def _encapsulated_frame_count(ds: Any) -> tuple[int | None, bool]:
    """(frames, whether the Basic Offset Table is wrong) of encapsulated pixel data.

    The Extended Offset Table is trusted, as pydicom trusts it. The Basic Offset Table is trusted where it lists the
    header's frames, or where the fragments cannot tell; a table that the fragments contradict (a one-entry ``[0]``
    table before a loop, a table an editor left short) is wrong, and the fragments count.
    """
    if ds.get("ExtendedOffsetTable"):
        return len(ds.ExtendedOffsetTable) // 8, False
    try:
        offsets, by_fragments = _offsets_and_fragment_count(ds)
    except (ValueError, EOFError, struct.error):  # items that do not parse: the decoder names the problem
        return None, False
    header_agrees = ds.get("NumberOfFrames") not in (None, "") and len(offsets) == frame_count(ds)
    if offsets and (header_agrees or by_fragments in (None, len(offsets))):
        return len(offsets), False
    return by_fragments, bool(offsets) and by_fragments is not None


def _offsets_and_fragment_count(ds: Any) -> tuple[list[int], int | None]:
    """The Basic Offset Table's offsets, and the frames its fragments hold: one per fragment where their count is
    the header's, the fragments that begin an RLE frame (PS3.5 G.5) for RLE, else the fragments that end a JPEG
    or JPEG 2000 codestream (pydicom's own rule); None where none does."""
    from pydicom.uid import RLELossless

    rle = ds.file_meta.TransferSyntaxUID == RLELossless
    offsets, fragments = _offsets_and_fragments(ds.PixelData)
    count = ends = rle_starts = 0
    for fragment in fragments:  # one at a time: a long cine loop is not copied whole
        count += 1
        ends += _END_OF_CODESTREAM in fragment[-_END_MARKER_WINDOW:]
        rle_starts += rle and begins_rle_frame(fragment)
    if count == frame_count(ds) and (not rle or rle_starts == count):
        return offsets, count
    return offsets, (rle_starts if rle else ends) or None


def first_fragment(pixel_data: bytes, header_bytes: int = 1 << 16) -> bytes | None:
    """The start of the first frame's codestream in encapsulated pixel data: its fragments after the Basic Offset
    Table joined until one ends the codestream or ``header_bytes`` are held (a frame split into small fragments may
    have its frame header past the first one, after a large APPn segment); None where the items do not parse or
    hold none."""
    head = b""
    try:
        for fragment in _offsets_and_fragments(pixel_data)[1]:
            head += fragment
            if len(head) >= header_bytes or _END_OF_CODESTREAM in fragment[-_END_MARKER_WINDOW:]:
                break
    except (ValueError, EOFError, struct.error):
        return None
    return head or None


def begins_rle_frame(fragment: bytes) -> bool:
    """Whether a fragment starts with an RLE header: 1 to 15 segments, the first one right after the 64-byte
    header (PS3.5 G.5)."""
    if len(fragment) < 64:
        return False
    segments, first_offset = struct.unpack("<2I", fragment[:8])
    return 1 <= segments <= 15 and first_offset == 64


def _without_offset_table(pixel_data: bytes) -> bytes:
    """Encapsulated pixel data with its Basic Offset Table item emptied (PS3.5 A.4: an item tag, a 4-byte
    length, then the table), so that pydicom finds the frames by their fragments."""
    (length,) = struct.unpack("<I", pixel_data[4:8])
    return pixel_data[:4] + b"\x00\x00\x00\x00" + pixel_data[8 + length :]


def _native_frame_count(ds: Any) -> int | None:
    """Whole frames in uncompressed pixel data (trailing padding ignored)."""
    if int(ds.BitsAllocated) == 1:
        return None
    frame_bytes = _expected_length(ds) // frame_count(ds)
    return len(ds.PixelData) // frame_bytes if frame_bytes else None


def _expected_length(ds: Any) -> int:
    """Bytes of native pixel data that the header's frames take (pydicom 3 or 2.4)."""
    try:
        from pydicom.pixels.utils import get_expected_length
    except ImportError:  # pydicom 2.4
        from pydicom.pixel_data_handlers.util import get_expected_length
    return int(get_expected_length(ds))


def _offsets_and_fragments(pixel_data: bytes) -> tuple[list[int], Iterator[bytes]]:
    """The Basic Offset Table's offsets and the fragments of encapsulated pixel data, read as iterated (pydicom 3
    or 2.4)."""
    try:
        from pydicom.encaps import generate_fragments, parse_basic_offsets
    except ImportError:  # pydicom 2.4
        from pydicom.encaps import generate_pixel_data_fragment, get_frame_offsets
        from pydicom.filebase import DicomBytesIO

        stream = DicomBytesIO(pixel_data)
        stream.is_little_endian = True
        has_table, offsets = get_frame_offsets(stream)  # [0] when the table is empty
        return list(offsets) if has_table else [], generate_pixel_data_fragment(stream)
    stream = BytesIO(pixel_data)
    offsets = parse_basic_offsets(stream)
    return list(offsets), generate_fragments(stream)
