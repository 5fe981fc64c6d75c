"""A minimal JPEG lossless encoder (ITU T.81 process 14, selection value 1) for 8-bit grayscale test frames.

Written here because no Python package encodes this transfer syntax (pydicom has no encoder for it, and
pylibjpeg-libjpeg only decodes), yet scanners write it and the ingestion must be tested on it. Decoding in the code
under test is pydicom's own, through pylibjpeg-libjpeg: an independent implementation.
"""

from __future__ import annotations

import struct

import numpy as np

# Huffman table: categories (SSSS) 0..8 all with 4-bit codes 0000..1000 (canonical order).
_CODE_LENGTH = 4
_CATEGORIES = list(range(9))


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">HH", marker, len(payload) + 2) + payload


def _differences(image: np.ndarray) -> np.ndarray:
    """Prediction residuals of selection value 1 (left neighbour; above for the first column; 128 at the origin)."""
    img = image.astype(np.int32)
    prediction = np.empty_like(img)
    prediction[:, 1:] = img[:, :-1]
    prediction[1:, 0] = img[:-1, 0]
    prediction[0, 0] = 128
    return (img - prediction).ravel()


def _entropy_coded(diffs: np.ndarray) -> bytes:
    bits: list[str] = []
    for diff in diffs.tolist():
        category = int(abs(diff)).bit_length()
        bits.append(format(category, f"0{_CODE_LENGTH}b"))
        if category:
            value = diff if diff > 0 else diff - 1  # negative differences: one's complement in the low bits
            bits.append(format(value & ((1 << category) - 1), f"0{category}b"))
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)  # pad with one-bits
    out = bytearray()
    for i in range(0, len(stream), 8):
        byte = int(stream[i : i + 8], 2)
        out.append(byte)
        if byte == 0xFF:
            out.append(0x00)  # byte stuffing
    return bytes(out)


def encode_jpeg_lossless(image: np.ndarray) -> bytes:
    """(H, W) uint8 -> a JPEG lossless (process 14, SV1) codestream."""
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"expected a uint8 (H, W) image, got {image.dtype} {image.shape!r}")
    height, width = image.shape
    counts = [0] * 16
    counts[_CODE_LENGTH - 1] = len(_CATEGORIES)
    dht = bytes([0x00]) + bytes(counts) + bytes(_CATEGORIES)
    sof = struct.pack(">BHHB", 8, height, width, 1) + bytes([1, 0x11, 0])
    sos = bytes([1, 1, 0x00, 1, 0, 0])  # one component, table 0, Ss = predictor 1, Se = 0, Ah/Al = 0
    return (b"\xff\xd8" + _segment(0xFFC4, dht) + _segment(0xFFC3, sof) + _segment(0xFFDA, sos)
            + _entropy_coded(_differences(image)) + b"\xff\xd9")
