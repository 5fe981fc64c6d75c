"""Reading checkpoint files safely: they are untrusted input, so always ``weights_only=True`` with only ``argparse.Namespace`` (found in Facebook's MAE files) allow-listed, and an optional SHA-256 check before anything is unpickled."""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from monai_ext.io.settings import setting_text

# torch.save writes a zip archive (torch >= 1.6) or, in the legacy format, a pickle stream (protocol >= 2 opcode)
TORCH_FILE_MAGIC = (b"PK\x03\x04", b"\x80")


# a safetensors file (Hugging Face) starts with its JSON header's length, 8 bytes little-endian, then the header's "{"
SAFETENSORS_HEAD = 9


class CheckpointError(ValueError):
    """A checkpoint that cannot be read safely or does not fit the model."""


# --------------------------------------------------------------------------------------------------------- reading
def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_checkpoint(path: str | os.PathLike, sha256: str | None = None) -> Any:
    """Load a checkpoint file safely onto the CPU.

    Args:
        path: file written by ``torch.save`` (or a safetensors file, where the ``safetensors`` package is installed).
        sha256: expected hex digest; checked before anything is unpickled.

    Returns:
        The unpickled object (tensors, containers, numbers, strings, ``argparse.Namespace``); a safetensors file's
        tensors by name.

    Raises:
        FileNotFoundError: no such file.
        IsADirectoryError: ``path`` is a folder.
        CheckpointError: digest mismatch, the file is corrupt or pickles anything beyond the allow-list, or it is a
            safetensors file and the ``safetensors`` package is not installed (saying how to convert it).
    """
    path = Path(setting_text(path, "checkpoint"))  # --ckpt_path 2024 arrives as a number
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint {str(path)!r} is a folder; give the checkpoint file (e.g. models/model.pt)")
    if path.exists() and not path.is_file():  # a device or a pipe: torch.load needs to seek
        raise CheckpointError(f"checkpoint {str(path)!r} is not a regular file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if sha256 is not None:
        # a command-line parser may have read an all-digit digest as a number: refuse, never compare str(0)
        if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", sha256.strip()):
            raise ValueError(f"sha256 must be 64 hexadecimal characters, got {sha256!r}")
        sha256 = sha256.strip()
        actual = sha256_of(path)
        if actual.lower() != sha256.lower():
            raise CheckpointError(f"checkpoint {str(path)!r} has SHA-256 {actual!r}, expected {sha256!r}")
    with open(path, "rb") as f:
        head = f.read(SAFETENSORS_HEAD)
    if not head.startswith(TORCH_FILE_MAGIC) and is_safetensors(head, path.stat().st_size):
        return _read_safetensors(path)
    if not head.startswith(TORCH_FILE_MAGIC):
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: corrupt or not a torch file "
                              f"(starts with {head!r}, not a zip archive or a pickle stream)")
    if head.startswith(TORCH_FILE_MAGIC[0]):
        _check_zip_entries(path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" not in str(e):
            # torch's weights-only reader raises the same error for damaged bytes ("Unsupported operand 149") and
            # for a plain pickle of lists; only a refused global is the allow-list at work
            raise CheckpointError(f"cannot read checkpoint {str(path)!r}: corrupt or not a torch file "
                                  f"({_reason(e)})") from e
        raise CheckpointError(
            f"refused to load {str(path)!r}: it pickles objects outside the allow-list "
            f"(tensors, containers, argparse.Namespace); nothing in it was run. A training checkpoint that keeps "
            f"hyper-parameters or callback states (PyTorch Lightning) can be cut down to its weights where it is "
            f"trusted: torch.save(torch.load(path, weights_only=False)['state_dict'], 'weights.pt') (or the key "
            f"that holds its weights). Detail: {e}"
        ) from e
    # torch.load of damaged bytes fails in many ways (a cut-short legacy file: IndexError, struct.error; a changed
    # storage key: AssertionError, KeyError; a damaged zip: RuntimeError): all mean the file is unreadable
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: corrupt or not a torch file ({_reason(e)})") from e


def _check_zip_entries(path: Path) -> None:
    """Refuse a zip-format torch file whose entries fail their CRC-32 check.

    torch's zip reader does not check CRCs, so a file with damaged tensor bytes would load silently with wrong
    weights; :meth:`zipfile.ZipFile.testzip` reads every entry once (about 0.04 s for 24 MB) and compares them. A
    file saved without checksums (every entry's CRC 0) is not checked.

    Raises:
        CheckpointError: an entry is damaged, or the archive itself does not read (it is then left to the same
            "corrupt or not a torch file" message as torch's own failures).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            # torch.serialization.set_crc32_options(False) (torch >= 2.6, for faster saves) writes CRC 0 for every
            # entry: such a file carries no checksums to compare, and torch.load reads it
            if all(entry.CRC == 0 for entry in entries):
                return
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: corrupt or not a torch file "
                              f"({_reason(e)})") from e
    if damaged is not None:
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: corrupt or not a torch file (entry "
                              f"{damaged!r} fails its CRC-32 check: the file was damaged after it was written)")


def is_safetensors(head: bytes, size: int) -> bool:
    """Whether a file of ``size`` bytes starting with ``head`` (its first 9 bytes) is a safetensors file: a header
    length that fits in the file, then the header's opening brace. Neither torch format starts so (a zip archive
    with ``PK``, a pickle stream with ``0x80``)."""
    if len(head) < SAFETENSORS_HEAD or head[8:9] != b"{":
        return False
    return 0 < int.from_bytes(head[:8], "little") <= size - 8


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (no pickle: nothing in it can run), read with the ``safetensors`` package
    where it is installed; it is no dependency of this project, so without it the file is refused saying how to
    convert it.

    Raises:
        CheckpointError: ``safetensors`` is not installed, or the file does not read.
    """
    try:
        from safetensors.torch import load_file
    except ImportError as e:
        raise CheckpointError(
            f"cannot read checkpoint {str(path)!r}: it is a safetensors file (Hugging Face), which is read only where "
            f"the safetensors package is installed; convert it where it is: import safetensors.torch, torch; "
            f"torch.save(safetensors.torch.load_file(path), 'weights.pt')") from e
    try:
        return load_file(str(path), device="cpu")
    except Exception as e:  # noqa: BLE001 - safetensors' own errors (SafetensorError, OSError) all mean unreadable
        raise CheckpointError(f"cannot read safetensors checkpoint {str(path)!r}: {_reason(e)}") from e


def _reason(error: BaseException) -> str:
    """An exception's message, or its type where it has none (a cut-short legacy file raises a bare EOFError).

    Of torch's weights-only message only the unpickler's own error is kept: the rest advises ``weights_only=False``,
    which for damaged bytes would not help and for a stranger's file would run its code.
    """
    text = str(error).strip()
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1].split("Check the documentation", 1)[0]
        text = " ".join(text.split())
    return text if text else type(error).__name__
