"""Reading a checkpoint file (io/checkpoints.py): both torch formats, pickled code refused and never run, a damaged
or foreign file named as such, and the sha256 check (sha256_of against hashlib)."""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import zipfile

import pytest
import torch

from monai_ext.io import checkpoints as ck
from monai_ext.networks.checkpoints.layouts import USF_MAE_100EP_SHA256


class _Exploit:
    """Pickles as a call that would write a marker file when unpickled."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_arbitrary_pickled_object_is_refused_and_not_run(tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": _Exploit(str(marker))}, path)
    with pytest.raises(ck.CheckpointError, match="refused to load .*evil.pth") as refused:
        ck.read_checkpoint(path)
    assert not marker.exists()
    assert "torch.load(path, weights_only=False)['state_dict']" in str(refused.value)  # how to keep the weights


def _legacy_checkpoint_prefix(tmp_path, length: int | None) -> bytes:
    """The first ``length`` bytes (all if None) of a checkpoint in torch's legacy (pre-zip) format: a pickle stream."""
    torch.save({"w": torch.ones(3)}, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    return (tmp_path / "legacy.pth").read_bytes()[:length]


def _legacy_checkpoint_with_a_changed_storage_key(tmp_path) -> bytes:
    """A legacy checkpoint whose list of storage keys (pickled after the object) no longer matches the object's."""
    data = bytearray(_legacy_checkpoint_prefix(tmp_path, None))
    last_key = [m.start() for m in re.finditer(rb"\d{6,}", bytes(data))][-1]
    data[last_key] = ord("9") if data[last_key] != ord("9") else ord("8")
    return bytes(data)


def _legacy_checkpoint_with_a_damaged_opcode(tmp_path) -> bytes:
    """A legacy checkpoint whose first pickle opcode was changed to one no unpickler knows (149)."""
    data = bytearray(_legacy_checkpoint_prefix(tmp_path, None))
    data[2] = 149
    return bytes(data)


@pytest.mark.parametrize("content", [b"", b"not a torch file", b"PK\x03\x04truncated",
                                     b"root:x:0:0:root:/root:/bin/bash\n",  # a text file given by mistake
                                     16, 30, 90,                            # legacy files cut short
                                     "changed storage key", "damaged opcode",
                                     pickle.dumps({"blocks.0.norm1.weight": [1.0, 2.0]}, protocol=2)])  # plain pickle
def test_corrupt_file_gives_clear_error(tmp_path, content: bytes | int | str) -> None:
    """Damaged bytes were reported as a security refusal ("pickles objects outside the allow-list"), advising
    torch.load(..., weights_only=False); a cut-short legacy file gave an empty reason, "()"."""
    if isinstance(content, int):
        content = _legacy_checkpoint_prefix(tmp_path, content)
    elif content == "changed storage key":
        content = _legacy_checkpoint_with_a_changed_storage_key(tmp_path)
    elif content == "damaged opcode":
        content = _legacy_checkpoint_with_a_damaged_opcode(tmp_path)
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(ck.CheckpointError, match="cannot read checkpoint .*broken.pth.*: corrupt or not a torch file") \
            as refused:
        ck.read_checkpoint(path)
    message = str(refused.value)
    assert "allow-list" not in message and "weights_only" not in message and not message.endswith("()")


@pytest.mark.parametrize("zip_format", [True, False])
def test_both_torch_file_formats_load(tmp_path, zip_format: bool) -> None:
    state = {"w": torch.arange(6.0).view(2, 3), "step": 3}
    path = tmp_path / "w.pth"
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    loaded = ck.read_checkpoint(path)
    assert torch.equal(loaded["w"], state["w"]) and loaded["step"] == 3


def test_sha256_is_checked(tmp_path) -> None:
    path = tmp_path / "w.pth"
    torch.save({"w": torch.arange(12.0)}, path)
    good = hashlib.sha256(path.read_bytes()).hexdigest()
    ck.read_checkpoint(path, sha256=good)
    with pytest.raises(ck.CheckpointError, match="expected 'f815c6"):
        ck.read_checkpoint(path, sha256=USF_MAE_100EP_SHA256)
    ck.read_checkpoint(path, sha256=f" {good.upper()}\n")  # as pasted from sha256sum output


@pytest.mark.parametrize("digest", [0, 1234, "f815c6", "z" * 64, ["f815"]])
def test_malformed_sha256_is_refused_naming_it(tmp_path, digest) -> None:
    """An all-digit digest given on a command line may arrive as a number: it must not be compared as text."""
    path = tmp_path / "w.pth"
    torch.save({"w": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match=re.escape(f"sha256 must be 64 hexadecimal characters, got {digest!r}")):
        ck.read_checkpoint(path, sha256=digest)


def test_sha256_of_is_hashlibs_digest_of_the_bytes(tmp_path) -> None:
    path = tmp_path / "blob.bin"
    content = os.urandom(3 * 1024 * 1024 + 17)  # more than one read chunk
    path.write_bytes(content)
    assert ck.sha256_of(path) == hashlib.sha256(content).hexdigest()
    assert ck.sha256_of(str(path)) == ck.sha256_of(path)
    path.write_bytes(content[:-1])
    assert ck.sha256_of(path) != hashlib.sha256(content).hexdigest()


def test_checkpoint_error_is_a_value_error() -> None:
    assert issubclass(ck.CheckpointError, ValueError)


def test_an_argparse_namespace_round_trips(tmp_path) -> None:
    """Older training scripts kept their hyper-parameters as an argparse.Namespace: on the allow-list."""
    import argparse

    path = tmp_path / "args.pt"
    torch.save({"args": argparse.Namespace(lr=0.1, arch="vit_tiny"), "w": torch.ones(2)}, path)
    loaded = ck.read_checkpoint(path)
    assert loaded["args"] == argparse.Namespace(lr=0.1, arch="vit_tiny") and loaded["w"].tolist() == [1.0, 1.0]


def test_a_folder_is_refused_naming_it(tmp_path) -> None:
    with pytest.raises(IsADirectoryError, match=re.escape(f"checkpoint {str(tmp_path)!r} is a folder")):
        ck.read_checkpoint(tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_pipe_is_refused_naming_it_without_waiting_for_a_writer(tmp_path) -> None:
    pipe = tmp_path / "model.pt"
    os.mkfifo(pipe)
    with pytest.raises(ck.CheckpointError, match=re.escape(f"checkpoint {str(pipe)!r} is not a regular file")):
        ck.read_checkpoint(pipe)


def test_an_error_without_a_message_is_named_by_its_type() -> None:
    assert ck._reason(EOFError()) == "EOFError"  # a cut-short legacy file raises a bare EOFError
    assert ck._reason(ValueError("  bad byte  ")) == "bad byte"


def _safetensors_file(tmp_path) -> tuple[str, bytes]:
    """A one-tensor safetensors file as Hugging Face writes it: header length (8 bytes, little-endian), JSON header,
    then the raw data. Returns (path, data bytes)."""
    import json
    import struct

    data = torch.arange(4, dtype=torch.float32).numpy().tobytes()
    header = json.dumps({"cls_token": {"dtype": "F32", "shape": [1, 1, 4], "data_offsets": [0, len(data)]}}).encode()
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return str(path), data


@pytest.mark.parametrize("installed", [False, True])
def test_a_safetensors_file_is_named_as_such(tmp_path, monkeypatch, installed: bool) -> None:
    """It was "corrupt or not a torch file (starts with b'O\\x00\\x00\\x00')": the file was fine, only its format
    unsupported. Without the safetensors package it is refused saying how to convert it; with it, it is read."""
    import sys
    import types

    path, _ = _safetensors_file(tmp_path)
    if installed:  # a stand-in for the package (it is no dependency of this project): its loader's call is checked
        torch_module = types.ModuleType("safetensors.torch")
        torch_module.load_file = lambda name, device: {"cls_token": torch.zeros(1, 1, 4), "read": (name, device)}
        monkeypatch.setitem(sys.modules, "safetensors", types.ModuleType("safetensors"))
        monkeypatch.setitem(sys.modules, "safetensors.torch", torch_module)
        assert ck.read_checkpoint(path)["read"] == (path, "cpu")
        return
    monkeypatch.setitem(sys.modules, "safetensors", None)  # importing it raises ImportError, installed or not
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    with pytest.raises(ck.CheckpointError) as refused:
        ck.read_checkpoint(path)
    message = str(refused.value)
    assert "it is a safetensors file" in message and "torch.save(safetensors.torch.load_file(path)" in message
    assert "\n" not in message and "corrupt" not in message


@pytest.mark.parametrize("head, size, expected", [
    (b"\x10\x00\x00\x00\x00\x00\x00\x00{", 100, True),
    (b"\x10\x00\x00\x00\x00\x00\x00\x00{", 20, False),   # a header longer than the file: not one
    (b"\x10\x00\x00\x00\x00\x00\x00\x00[", 100, False),  # no JSON object after the length
    (b"\x00\x00\x00\x00\x00\x00\x00\x00{", 100, False),  # an empty header
    (b"{", 100, False),                                   # too short to hold the length
])
def test_the_safetensors_header_is_recognised(head: bytes, size: int, expected: bool) -> None:
    assert ck.is_safetensors(head, size) is expected


def _damage_tensor_bytes(path, data_entry_suffix: str = "/data/0") -> str:
    """XOR a few bytes in the middle of the stored (uncompressed) tensor entry ``*/data/0`` of a zip-format torch
    file; returns the entry's name."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(data_entry_suffix))
    raw = bytearray(path.read_bytes())
    # the local header is 30 bytes plus the name and the extra field, which may differ from the central directory's
    name_length = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little")
    extra_length = int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_length + extra_length + info.file_size // 2
    for i in range(start, start + 4):
        raw[i] ^= 0x5A
    path.write_bytes(bytes(raw))
    return info.filename


@pytest.mark.parametrize("damaged", [False, True])
def test_damaged_tensor_bytes_in_a_zip_file_are_refused_naming_the_entry(tmp_path, damaged: bool) -> None:
    """torch's zip reader does not check CRCs: a file whose tensor bytes were damaged loaded silently with wrong
    weights."""
    state = {"blocks.0.attn.qkv.weight": torch.arange(256.0).view(16, 16)}
    path = tmp_path / "w.pth"
    torch.save(state, path)
    if not damaged:
        assert torch.equal(ck.read_checkpoint(path)["blocks.0.attn.qkv.weight"], state["blocks.0.attn.qkv.weight"])
        return
    entry = _damage_tensor_bytes(path)
    with pytest.raises(ck.CheckpointError, match=rf"cannot read checkpoint .*w\.pth.*{re.escape(repr(entry))} "
                                                 r"fails its CRC-32 check"):
        ck.read_checkpoint(path)


def test_a_zip_file_saved_without_checksums_is_read(tmp_path) -> None:
    """``torch.serialization.set_crc32_options(False)`` (torch >= 2.6, faster saves) writes CRC 0 for every entry;
    torch.load reads such a file, which the CRC check refused as damaged."""
    state = {"blocks.0.attn.qkv.weight": torch.arange(256.0).view(16, 16)}
    path = tmp_path / "nocrc.pth"
    torch.serialization.set_crc32_options(False)
    try:
        torch.save(state, path)
    finally:
        torch.serialization.set_crc32_options(True)
    with zipfile.ZipFile(path) as archive:
        assert {entry.CRC for entry in archive.infolist()} == {0}  # what the check must tell from damage
    assert torch.equal(ck.read_checkpoint(path)["blocks.0.attn.qkv.weight"], state["blocks.0.attn.qkv.weight"])
