"""prepare-corpus on real third-party DICOM files (a mix of good and bad ones that pydicom ships): the run finishes,
every file either gives frames or is skipped with a reason naming it, and the kept frames are the right size."""

from __future__ import annotations

import csv
import re
import shutil
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset

from monai_ext.data.corpus import CorpusFrames, CorpusOptions, prepare_corpus

#: Files that give frames: gray and colour, 8/16-bit, big endian, deflated, RLE, JPEG 2000, palette, multi-frame.
GOOD = ["MR_small.dcm", "MR_small_bigendian.dcm", "CT_small.dcm", "JPEG2000.dcm", "image_dfl.dcm",
        "ExplVR_BigEnd.dcm", "examples_palette.dcm", "examples_rgb_color.dcm", "examples_jpeg2k.dcm",
        "SC_ybr_full_422_uncompressed.dcm", "SC_rgb_rle_2frame.dcm", "liver_1frame.dcm"]
#: Files that are skipped, with the reason each must give (after "<dataset>/<file>: ").
BAD = {
    "MR_truncated.dcm": r"pixel data truncated: 8130 of the 8192 bytes",
    "nested_priv_SQ.dcm": r"pixel data without the required Image Pixel attribute\(s\) Rows, Columns, ",
    "meta_missing_tsyntax.dcm": r"pixel data without the required Image Pixel attribute\(s\) ",
    "badVR.dcm": r"NumberOfFrames is '1A', not an integer",
    "JPEG-lossy.dcm": r"cannot decode its pixel data \(JPEG Extended .*1\.2\.840\.10008\.1\.2\.4\.51\): ",
    "JPEG2000-embedded-sequence-delimiter.dcm": r"cannot decode its pixel data \(JPEG 2000 Image Compression, ",
    "rtdose.dcm": r"frame 0 is 10x10, smaller than 16",
    "SC_rgb_small_odd.dcm": r"frame 0 is 3x3, smaller than 16",
    "rtplan.dcm": r"DICOM file has no pixel data",
    "no_meta.dcm": r"not a DICOM image: no b'DICM' at byte 128",
}
#: CT_small.dcm as an ACR-NEMA-style export (no preamble, no b"DICM", no File Meta Information), named ``.dcm`` and,
#: as CD exports name files, without a suffix: both read, not skipped.
BARE = ["ct_small_no_file_meta.dcm", "IM0001"]


def shipped(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom {pydicom.__version__} does not ship {name}")
    return Path(path)


@pytest.fixture(scope="module")
def prepared(module_tmp):
    base = module_tmp("third_party")
    folder = base / "root" / "pydicom"
    folder.mkdir(parents=True)
    for name in [*GOOD, *BAD]:
        shutil.copy(shipped(name), folder / name)
    ds = pydicom.dcmread(shipped("CT_small.dcm"))
    ds.preamble, ds.file_meta = None, FileMetaDataset()
    for name in BARE:
        ds.save_as(folder / name, implicit_vr=True, little_endian=True, enforce_file_format=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid values of the bad files
        report = prepare_corpus(base / "root", base / "cache", CorpusOptions(size=64, files_per_chunk=8))
    with open(base / "cache" / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return folder, base / "cache", report, rows


def test_every_file_gives_frames_or_is_skipped_with_a_reason_naming_it(prepared):
    folder, _, report, rows = prepared
    with_frames = {Path(r["source"]).name for r in rows}
    skipped = {Path(s["source"]).name: s["reason"] for s in report["skipped_files"]}
    assert with_frames == {*GOOD, *BARE}
    assert set(skipped) == set(BAD)
    for name, reason in skipped.items():
        assert reason.startswith(f"pydicom/{name}: ") and "\n" not in reason, reason
        assert str(folder) not in reason  # paths under the corpus root only
        assert re.search(BAD[name], reason), reason


def test_kept_frames_have_the_source_size_and_the_cache_format(prepared):
    folder, cache, report, rows = prepared
    for name in [*GOOD, *BARE]:
        ds = pydicom.dcmread(folder / name, force=True)
        records = [r for r in rows if Path(r["source"]).name == name]
        assert {int(r["frame"]) for r in records} == set(range(int(ds.get("NumberOfFrames", 1) or 1))), name
        assert {(int(r["orig_height"]), int(r["orig_width"])) for r in records} == {(ds.Rows, ds.Columns)}, name
    data = CorpusFrames(cache)
    assert len(data) == report["kept"] > 0
    for index in range(len(data)):
        image = data[index]["image"]
        assert image.shape == (1, 64, 64) and str(image.dtype) == "torch.uint8"


@pytest.mark.parametrize("name", BARE)
def test_the_files_without_file_meta_are_copies_of_ct_small(prepared, name):
    _, _, _, rows = prepared
    bare = next(r for r in rows if r["source"] == f"pydicom/{name}")
    original = next(r for r in rows if r["source"] == "pydicom/CT_small.dcm")
    assert bare["sha256"] == original["sha256"]  # the same pixels, displayed alike


def test_readers_warnings_are_reported_under_the_file_not_printed(tmp_path, capfd):
    """pydicom's notes on odd files (implicit VR where explicit was declared, excess pixel padding) go into
    report.json under the file's name; before, each was printed among the progress bar's lines, naming no file."""
    folder = tmp_path / "root" / "pydicom"
    folder.mkdir(parents=True)
    for name in ("SC_rgb_jpeg.dcm", "MR_small_padded.dcm", "CT_small.dcm"):
        shutil.copy(shipped(name), folder / name)
    report = prepare_corpus(tmp_path / "root", tmp_path / "cache", CorpusOptions(size=64))
    notes = {Path(entry["source"]).name: entry["warnings"] for entry in report["reader_warnings"]}
    assert set(notes) == {"SC_rgb_jpeg.dcm", "MR_small_padded.dcm"}
    assert notes["SC_rgb_jpeg.dcm"] == ["Expected explicit VR, but found implicit VR - using implicit VR for reading"]
    assert "excess padding" in notes["MR_small_padded.dcm"][0]
    assert report["frames"] == 3 and report["skipped_files"] == []
    err = capfd.readouterr().err
    assert "explicit VR" not in err and "padding" not in err
