"""How many frames a DICOM file's pixel data holds, whatever its header says.

Exports and anonymisers of cine loops sometimes drop ``NumberOfFrames`` or leave the value of an earlier version of
the file. pydicom believes the header: a 40-frame JPEG loop without it decodes as its first frame and nothing says
the other 39 were there; a header that promises more frames than were written makes every frame unreadable. The
frames are counted from the pixel data instead: whole frames of native data, the Extended or Basic Offset Table of
encapsulated data, else its fragments (one per frame where their count says so, as RLE always has; otherwise the
fragments that end a JPEG or JPEG 2000 codestream, pydicom's own rule for frame boundaries). Where the count differs
from the header, the file is read with the count and a warning names it.
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


def frame_count(ds: Any) -> int:
    """Number of frames as the header says (``NumberOfFrames``, 1 when absent or empty)."""
    return int(ds.get("NumberOfFrames", 1) or 1)


def reconcile_frame_count(ds: Any, source: str) -> None:
    """Set ``NumberOfFrames`` to the frames the pixel data holds when the header says otherwise, warning with the
    file's name. Native data shorter than one frame is left as it is (refused as truncated by the reader)."""
    stored, header = stored_frame_count(ds), frame_count(ds)
    if not stored or stored == header:
        return
    told = f"NumberOfFrames is {header}" if ds.get("NumberOfFrames") not in (None, "") else "no NumberOfFrames"
    fate = "all are read" if stored > header else "only those are read"
    warnings.warn(f"{source}: {told} but its pixel data holds {stored} frames; {fate}", UserWarning, stacklevel=3)
    ds.NumberOfFrames = stored
    if stored < header and not ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.PixelData = ds.PixelData[: _expected_length(ds)]  # the part of a frame cut off is not a frame


def stored_frame_count(ds: Any) -> int | None:
    """Frames held by the pixel data, or None where the data cannot tell (1-bit native data packs frames across
    byte boundaries; encapsulated data with neither offset table nor codestream ends)."""
    if not ds.file_meta.TransferSyntaxUID.is_compressed:
        return _native_frame_count(ds)
    if ds.get("ExtendedOffsetTable"):
        return len(ds.ExtendedOffsetTable) // 8
    try:
        offsets, fragments = _offsets_and_fragments(ds.PixelData)
        if offsets:
            return len(offsets)
        count = ends = 0
        for fragment in fragments:  # one at a time: a long cine loop is not copied whole
            count += 1
            ends += _END_OF_CODESTREAM in fragment[-_END_MARKER_WINDOW:]
    except (ValueError, EOFError, struct.error):  # items that do not parse: the decoder names the problem
        return None
    from pydicom.uid import RLELossless

    if count == frame_count(ds) or ds.file_meta.TransferSyntaxUID == RLELossless:
        return count  # one fragment per frame (always so for RLE, PS3.5 A.4.2)
    return ends or None


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
