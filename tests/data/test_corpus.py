"""prepare-corpus end to end on a generated archive: counts, bad inputs, dedup, leak exclusion, PHI, resume."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from monai_ext.data.corpus import (
    CACHE_FORMAT,
    DEDUP_THRESHOLD,
    EVALUATION_NEAR_BITS,
    KILL_AFTER_CHUNKS_ENV,
    CorpusFrames,
    CorpusOptions,
    NearDuplicateIndex,
    hamming,
    perceptual_hash,
    prepare_corpus,
    process_file,
)
from monai_ext.data.folders import walk_files
from monai_ext.data.frames import FrameOptions, source_kind
from tests.data.corpus_builder import IDENTITY, build, us_image

REPO = Path(__file__).resolve().parents[2]
OPTIONS = CorpusOptions(size=64, files_per_chunk=4, frames=FrameOptions(modality="US"))


def manifest(out: Path) -> list[dict]:
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def prepared(module_tmp):
    base = module_tmp("corpus")
    info = build(base / "root")
    out = base / "cache"
    report = prepare_corpus(base / "root", out, OPTIONS, workers=2, evaluation_folders=[info["evaluation"]])
    return base, info, out, report


def test_every_format_ingests_with_the_expected_frame_counts(prepared):
    _, info, out, report = prepared
    counts = {name: entry["frames"] for name, entry in report["datasets"].items()}
    assert counts == info["expected"]
    rows = manifest(out)
    assert "images/name with spaces éü.png" in {r["source"] for r in rows}
    assert {r["source"] for r in rows if r["dataset"] == "images"} >= {
        "images/huge.png", "images/deep16.png", "images/alpha.png", "images/palette.png", "images/scan.tiff"}


def test_files_of_no_image_type_are_counted_in_the_report_by_suffix(prepared):
    """A MATLAB or HDF5 export of images, a sheet of labels: left out, and the report says so (they were passed
    over without a word). Loops in GIF and MOV are read (test above: the video dataset's frame count)."""
    _, info, out, report = prepared
    assert report["files_not_read"] == info["not_read"]
    assert json.loads((out / "report.json").read_text())["files_not_read"] == info["not_read"]


def test_bad_inputs_are_skipped_with_their_reason_and_good_data_is_kept(prepared):
    _, info, out, report = prepared
    reasons = {Path(s["source"]).name: s["reason"] for s in report["skipped_files"]}
    assert set(reasons) == set(info["bad"])
    for name, fragment in info["bad"].items():
        assert fragment in reasons[name]
    data = CorpusFrames(out)
    assert len(data) == report["kept"] > 0
    item = data[len(data) - 1]
    assert item["image"].shape == (1, 64, 64) and str(item["image"].dtype) == "torch.uint8"
    assert (out / "report.png").stat().st_size > 0


def test_planted_duplicates_and_evaluation_images_are_removed(prepared):
    _, _, out, report = prepared
    by_source = {r["source"]: r for r in manifest(out)}
    assert by_source["dups/exact_copy.png"]["keep"] == "1"
    assert by_source["dups/original.png"]["reason"].startswith("duplicate_of:")
    assert by_source["dups/near_copy.png"]["reason"].startswith("near_duplicate_of:")
    assert by_source["images/gray.png"]["reason"] == "matches_evaluation:busbra/bus_0001.png"
    # the NIfTI and MHA volumes hold the same slices: the later file's slices are duplicates
    assert all(r["reason"].startswith("duplicate_of:") for r in manifest(out) if r["source"] == "volumes/volume.nii.gz")
    assert report["removed"] == {"duplicate_of": 5, "near_duplicate_of": 1, "matches_evaluation": 1}


def test_a_dataset_to_exclude_that_is_not_there_is_refused_before_ingesting(prepared, tmp_path):
    base, _, _, _ = prepared
    with pytest.raises(ValueError, match=r"exclude_datasets \['VIDEOS'\] match no dataset .*'images'.*'video'"):
        prepare_corpus(base / "root", tmp_path / "fresh", OPTIONS, exclude_datasets=["Video", "VIDEOS"])
    assert not (tmp_path / "fresh").exists()                 # refused before any ingestion


def test_excluding_a_dataset_on_rerun_reuses_the_cache(prepared, caplog):
    base, info, out, _ = prepared
    before = {p.name: p.stat().st_mtime_ns for p in (out / "chunks").iterdir()}
    report = prepare_corpus(base / "root", out, OPTIONS, exclude_datasets=["video"])
    assert report["removed"]["excluded_dataset"] == info["expected"]["video"]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "chunks").iterdir()} == before  # nothing re-decoded
    with pytest.raises(ValueError, match="prepared with other settings"):
        prepare_corpus(base / "root", out, CorpusOptions(size=32, files_per_chunk=4))


@pytest.mark.parametrize("written_format", [None, 2, 8, 10])
def test_a_cache_of_another_format_is_not_finished_by_this_version(prepared, tmp_path, written_format):
    """A run cut short and resumed after an upgrade would finish the cache in other rules (files listed by the old
    plan, chunks read by the new code): refused, whatever the settings."""
    base, _, out, _ = prepared
    plan = json.loads((out / "plan.json").read_text())
    assert plan["format"] == CACHE_FORMAT
    if written_format is None:
        del plan["format"]  # as versions before the format was recorded wrote it
    else:
        plan["format"] = written_format
    shutil.copytree(out, tmp_path / "old")
    (tmp_path / "old" / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(ValueError, match=rf"prepared by another version of prepare-corpus \(cache format "
                                         rf"{written_format or 1}, this version writes {CACHE_FORMAT}"):
        prepare_corpus(base / "root", tmp_path / "old", OPTIONS)


def test_no_patient_identifier_reaches_any_output(prepared, caplog, capsys):
    base, info, out, _ = prepared
    with caplog.at_level(logging.DEBUG):
        prepare_corpus(base / "root", out, OPTIONS, evaluation_folders=[info["evaluation"]])
    texts = [caplog.text, *capsys.readouterr()]
    for path in out.rglob("*"):
        if path.is_file():
            texts.append(path.read_bytes().decode("latin-1"))
    for value in IDENTITY.values():
        for text in texts:
            assert value not in text and value.replace("^", " ") not in text


@pytest.mark.parametrize("threshold", [0, 3, 4, 6, 8, 12])
def test_near_duplicate_index_is_exact_within_the_threshold(threshold):
    rng = np.random.default_rng(threshold)
    stored = [int(v) for v in rng.integers(0, 2**63, size=200)]
    index = NearDuplicateIndex(threshold=threshold)
    for i, value in enumerate(stored):
        index.add(value, str(i))
    for value in stored[:50]:
        flipped = value
        for bit in rng.choice(64, size=threshold, replace=False):
            flipped ^= 1 << int(bit)
        match = index.find(flipped)
        assert match is not None and hamming(stored[int(match)], flipped) <= threshold
    assert index.find(~stored[0] & (2**64 - 1)) is None  # 64 bits away from its source, far from the rest


#: Seeds of simulated frames of one pinned curvilinear geometry whose hashes of the padded square (cache format 5)
#: were 4 bits apart: the fan's outline, shared, outweighed the tissue (the new hashes are 14 to 22 bits apart).
OUTLINE_TWINS = [(2, 14), (27, 32), (29, 39)]


def _pinned_screens(monkeypatch, seeds: tuple[int, ...]) -> list[np.ndarray]:
    """(600, 800, 3) uint8 screens of simulated frames, one fixed curvilinear probe geometry for all."""
    from monai_ext.data import synthetic

    geometry = synthetic.curvilinear_geometry(np.random.default_rng(123), 480)
    monkeypatch.setattr(synthetic, "curvilinear_geometry", lambda rng, size: geometry)
    screens = []
    for seed in seeds:
        frame = synthetic.simulate_frame(seed, synthetic.SimulatorConfig(size=480, geometry="curvilinear"), None)
        screen = np.zeros((600, 800, 3), np.uint8)
        screen[60:540, 160:640] = frame.bmode[..., None]
        screens.append(screen)
    return screens


@pytest.mark.parametrize("seeds", OUTLINE_TWINS)
def test_distinct_frames_of_one_geometry_are_kept_and_their_jpeg_copies_dropped(tmp_path, monkeypatch, seeds):
    """Distinct frames of one probe geometry were dropped as near-duplicates of each other (58 of 300): the hash
    saw the black outside and the fan's outline. A JPEG copy must still be caught, in the corpus (default
    threshold) and against an evaluation set."""
    first, second = _pinned_screens(monkeypatch, seeds)
    site, evaluation = tmp_path / "root" / "site", tmp_path / "evalset"
    site.mkdir(parents=True)
    evaluation.mkdir()
    cv2.imwrite(str(site / "a.png"), first)
    cv2.imwrite(str(site / "b.png"), second)
    cv2.imwrite(str(site / "c_copy_of_a.jpg"), first, [cv2.IMWRITE_JPEG_QUALITY, 60])
    cv2.imwrite(str(site / "d_copy_of_b.jpg"), second, [cv2.IMWRITE_JPEG_QUALITY, 85])
    cv2.imwrite(str(evaluation / "b.png"), second)
    report = prepare_corpus(tmp_path / "root", tmp_path / "cache", CorpusOptions(), evaluation_folders=[evaluation])
    reasons = {r["source"]: r["reason"] for r in manifest(tmp_path / "cache")}
    assert reasons["site/a.png"] == "" and reasons["site/c_copy_of_a.jpg"].startswith("near_duplicate_of:")
    assert reasons["site/b.png"] == "matches_evaluation:evalset/b.png"
    assert reasons["site/d_copy_of_b.jpg"] == "near_evaluation:evalset/b.png"
    assert report["kept"] == 1


@pytest.mark.parametrize("edit", ["jpeg q60", "jpeg q85", "resize 0.9", "brighter", "caliper"])
def test_a_copy_of_a_frame_hashes_within_the_default_threshold(monkeypatch, edit):
    """Both sides of the field-of-view hash on one frame: its copies within :data:`DEDUP_THRESHOLD` bits, a
    distinct frame of the same geometry beyond :data:`EVALUATION_NEAR_BITS`."""
    from monai_ext.data.views import ViewOptions, prepare_views

    original, other = _pinned_screens(monkeypatch, OUTLINE_TWINS[0])
    if edit.startswith("jpeg"):
        _, encoded = cv2.imencode(".jpg", original, [cv2.IMWRITE_JPEG_QUALITY, int(edit[-2:])])
        copy = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    elif edit == "resize 0.9":
        copy = cv2.resize(original, None, fx=0.9, fy=0.9, interpolation=cv2.INTER_AREA)
    elif edit == "brighter":
        copy = np.where(original > 0, np.clip(original.astype(int) + 8, 0, 255), 0).astype(np.uint8)
    else:  # yellow caliper crosses and their dotted line, as scanners draw them
        copy = original.copy()
        for x, y in ((380, 300), (460, 360)):
            cv2.line(copy, (x - 6, y), (x + 6, y), (255, 255, 0), 1)
            cv2.line(copy, (x, y - 6), (x, y + 6), (255, 255, 0), 1)
        for t in np.linspace(0, 1, 14):
            copy[int(300 + 60 * t):int(302 + 60 * t), int(380 + 80 * t):int(382 + 80 * t)] = (255, 255, 0)
    hashes = [perceptual_hash(prepare_views(screen, None, ViewOptions())[0].pixels)
              for screen in (original, copy, other)]
    assert hamming(hashes[0], hashes[1]) <= DEDUP_THRESHOLD
    assert hamming(hashes[0], hashes[2]) > EVALUATION_NEAR_BITS


def test_a_dicom_of_spectral_regions_only_is_a_skipped_file_in_the_report(tmp_path):
    """A PW Doppler capture (its one region spectral) was cached as a training frame, its spectrum the view."""
    from pydicom import dcmread

    from monai_ext.io.writers import write_dicom_frames

    site = tmp_path / "root" / "site"
    site.mkdir(parents=True)
    write_dicom_frames(us_image(96)[None], site / "pw.dcm", region_box=(0, 48, 96, 96))
    ds = dcmread(site / "pw.dcm")
    ds.SequenceOfUltrasoundRegions[0].RegionSpatialFormat, ds.SequenceOfUltrasoundRegions[0].RegionDataType = 3, 3
    ds.save_as(site / "pw.dcm")
    cv2.imwrite(str(site / "scan.png"), us_image(96, 5))
    report = prepare_corpus(tmp_path / "root", tmp_path / "cache", CorpusOptions(size=32))
    assert report["frames"] == 1
    assert report["skipped_files"] == [{"source": "site/pw.dcm", "reason": "site/pw.dcm: no tissue region: its "
                                        "ultrasound regions are spectral only (SequenceOfUltrasoundRegions lists "
                                        "no 2-D tissue or colour-flow region)"}]


@pytest.mark.parametrize("paper, ink", [(255, 0), (0, 255)])
def test_a_page_of_text_is_not_in_the_chunks(tmp_path, paper, ink):
    """A worksheet naming the patient was left out of training, yet cached whole: its name legible in the chunk."""
    site = tmp_path / "root" / "site"
    site.mkdir(parents=True)
    page = np.full((240, 320), paper, np.uint8)
    for row in range(6):
        cv2.putText(page, f"DOE JANE  ID 12345  BPD {40 + row}.0 mm", (10, 30 + 35 * row), cv2.FONT_HERSHEY_SIMPLEX,
                    0.6, ink, 2)
    cv2.imwrite(str(site / "worksheet.png"), page)
    cv2.imwrite(str(site / "scan.png"), us_image(96, 5))
    out = tmp_path / "cache"
    prepare_corpus(tmp_path / "root", out, CorpusOptions(size=64))
    (row,) = [row for row in manifest(out) if row["source"] == "site/worksheet.png"]
    assert row["reason"] == "text_page" and row["keep"] == "0"
    assert not CorpusFrames(out, kept_only=False).frame(int(row["chunk"]), int(row["row"])).any()
    assert len(CorpusFrames(out)) == 1


def test_killed_midway_resumes_without_duplicates_or_corrupt_entries(tmp_path):
    """SIGKILL right after the 4th of 24 chunks is on disk (the corpus writer's test-only hook kills its own process
    there: no timing involved), then a rerun completes the cache."""
    root = tmp_path / "root" / "set"
    root.mkdir(parents=True)
    for i in range(24):
        cv2.imwrite(str(root / f"img_{i:02d}.png"), us_image(128))
    command = [sys.executable, "-m", "monai_ext", "prepare-corpus", str(tmp_path / "root"), "--out",
               str(tmp_path / "cache"), "--size", "64", "--files_per_chunk", "1", "--dedup_threshold", "-1"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed = subprocess.run(command, env={**env, KILL_AFTER_CHUNKS_ENV: "4"}, capture_output=True, timeout=300,
                            check=False)
    assert killed.returncode == -signal.SIGKILL
    assert len(list((tmp_path / "cache" / "chunks").glob("*.json"))) == 4
    assert not (tmp_path / "cache" / "manifest.csv").exists()
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=300)
    rows = manifest(tmp_path / "cache")
    assert sorted(r["source"] for r in rows) == [f"set/img_{i:02d}.png" for i in range(24)]
    assert len({r["frame_id"] for r in rows}) == 24 and all(r["keep"] == "1" for r in rows)
    data = CorpusFrames(tmp_path / "cache")
    options = CorpusOptions(size=64, files_per_chunk=1, dedup_threshold=-1)
    for i in range(len(data)):  # every entry holds its own source, prepared exactly as a fresh run would
        frames, _, _ = process_file(tmp_path / "root" / rows[i]["source"], tmp_path / "root", options)
        np.testing.assert_array_equal(data[i]["image"][0].numpy(), frames[0])


def test_symlinked_dataset_folders_are_followed_once_and_loops_end(tmp_path):
    real = tmp_path / "elsewhere" / "thyroid"
    (real / "deeper").mkdir(parents=True)
    cv2.imwrite(str(real / "a.png"), us_image(64, seed=1))
    cv2.imwrite(str(real / "deeper" / "b.png"), us_image(64, seed=2))
    root = tmp_path / "root"
    root.mkdir()
    (root / "thyroid").symlink_to(real, target_is_directory=True)
    (real / "deeper" / "loop").symlink_to(real, target_is_directory=True)  # a link back up the tree
    report = prepare_corpus(root, tmp_path / "cache", CorpusOptions(size=32, dedup_threshold=-1))
    assert sorted(r["source"] for r in manifest(tmp_path / "cache")) == ["thyroid/a.png", "thyroid/deeper/b.png"]
    assert list(report["datasets"]) == ["thyroid"] and report["kept"] == 2


def test_files_directly_under_root_form_one_dataset_named_after_it(tmp_path):
    root = tmp_path / "busi_export"
    (root / "sub").mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(root / f"flat_{i}.png"), us_image(64, seed=10 + i))
    cv2.imwrite(str(root / "sub" / "nested.png"), us_image(64, seed=20))
    report = prepare_corpus(root, tmp_path / "cache", CorpusOptions(size=32, dedup_threshold=-1))
    rows = manifest(tmp_path / "cache")
    assert {r["source"]: r["dataset"] for r in rows} == {"flat_0.png": "busi_export", "flat_1.png": "busi_export",
                                                         "sub/nested.png": "sub"}
    assert {name: entry["kept"] for name, entry in report["datasets"].items()} == {"busi_export": 2, "sub": 1}


def test_dicom_files_without_a_suffix_are_ingested(tmp_path):
    """A DICOMDIR / CD export names its files ``IM0001``: found by their b"DICM" magic, alone or among others."""
    from monai_ext.io.writers import write_dicom

    only = tmp_path / "only"
    write_dicom(us_image(64, seed=30), only / "IM0001")
    report = prepare_corpus(only, tmp_path / "cache_only", CorpusOptions(size=32, dedup_threshold=-1))
    assert report["kept"] == 1 and report["skipped_files"] == []
    mixed = tmp_path / "mixed"
    write_dicom(us_image(64, seed=31), mixed / "study" / "DICOM" / "IM0001")
    cv2.imwrite(str(mixed / "study" / "b.png"), us_image(64, seed=32))
    (mixed / "study" / "DICOMDIR_NOTES").write_text("no image")  # no suffix, not DICOM: not a source
    report = prepare_corpus(mixed, tmp_path / "cache_mixed", CorpusOptions(size=32, dedup_threshold=-1))
    assert sorted(r["source"] for r in manifest(tmp_path / "cache_mixed")) == ["study/DICOM/IM0001", "study/b.png"]
    assert report["kept"] == 2 and report["skipped_files"] == []


def test_the_root_is_walked_once_and_each_file_without_a_suffix_opened_once(tmp_path, monkeypatch, caplog):
    """On a network share a walk of a large archive takes minutes and telling a suffix-less DICOM from a note opens
    the file: the dataset-name check, the plan and the files-not-read count share one walk (it was three)."""
    import monai_ext.data.corpus as corpus
    from monai_ext.io.writers import write_dicom

    root = tmp_path / "root"
    write_dicom(us_image(64, seed=50), root / "thyroid" / "IM0001")
    (root / "breast").mkdir(parents=True)
    cv2.imwrite(str(root / "breast" / "a.png"), us_image(64, seed=51))
    (root / "breast" / "NOTES").write_text("no image")
    walked, probed = [], []
    monkeypatch.setattr(corpus, "walk_files", lambda folder, exclude=(): walked.append(folder) or list(walk_files(folder, exclude)))
    monkeypatch.setattr(corpus, "source_kind", lambda path: probed.append(path.name) or source_kind(path))
    with caplog.at_level(logging.WARNING):
        report = prepare_corpus(root, tmp_path / "cache", CorpusOptions(size=32, dedup_threshold=-1),
                                exclude_datasets=["breast"])
    assert walked == [root.resolve()]
    assert sorted(probed) == ["IM0001", "NOTES", "a.png"]
    assert report["files_not_read"] == {"": 1}
    assert "(by suffix: (no suffix) 1)" in caplog.text  # as inference's --input_dir warning spells it
    assert {name: entry["kept"] for name, entry in report["datasets"].items()} == {"breast": 0, "thyroid": 1}


def test_file_names_that_are_not_utf8_reach_a_utf8_manifest(tmp_path):
    """A Windows archive unzipped on Linux names ``café.png`` with the Latin-1 byte 0xE9: the frame is ingested and
    the manifest stays UTF-8, the byte written as the escape ``\\udce9`` that report.json gives it too."""
    root = tmp_path / "root" / "thyroid"
    root.mkdir(parents=True)
    try:
        name = Path(os.fsdecode(os.fsencode(root) + b"/caf\xe9.png"))
        cv2.imencode(".png", us_image(64, seed=40))[1].tofile(name)
    except OSError:
        pytest.skip("this filesystem refuses file names that are not UTF-8")
    cv2.imwrite(str(root / "plain.png"), us_image(64, seed=41))
    report = prepare_corpus(root.parent, tmp_path / "cache", CorpusOptions(size=32, dedup_threshold=-1))
    assert report["kept"] == 2 and report["skipped_files"] == []
    assert sorted(r["source"] for r in manifest(tmp_path / "cache")) == ["thyroid/caf\\udce9.png", "thyroid/plain.png"]


@pytest.mark.parametrize("modality, dedup_threshold, frame_stride", [
    (None, 4, 1),   # the defaults
    ("US", 4, 1),   # the corpus keeps ultrasound only; the evaluation copy is a secondary capture (Modality OT)
    (None, -1, 1),  # near-duplicates inside the corpus kept (every cine frame wanted)
    (None, 4, 2),   # every second cine frame ingested; the evaluation's second frame is in the corpus
])
def test_evaluation_images_are_kept_out_whatever_the_corpus_settings(tmp_path, modality, dedup_threshold,
                                                                     frame_stride):
    """The corpus's modality filter, near-duplicate setting and frame stride choose what to train on; they must not
    choose which evaluation images are checked: each let an evaluation image into the corpus, and an evaluation
    file that could not be read was not reported."""
    from monai_ext.io.writers import write_dicom_frames

    exact, near, cine_second = (us_image(96, seed) for seed in (1, 2, 3))
    (tmp_path / "root" / "site").mkdir(parents=True)
    evaluation = tmp_path / "evalset"
    evaluation.mkdir()
    cv2.imwrite(str(tmp_path / "root" / "site" / "exact.png"), exact)
    cv2.imwrite(str(tmp_path / "root" / "site" / "near.jpg"), near, [cv2.IMWRITE_JPEG_QUALITY, 90])
    cv2.imwrite(str(tmp_path / "root" / "site" / "frame.png"), cine_second)
    write_dicom_frames(exact[None], evaluation / "capture.dcm", modality="OT")
    cv2.imwrite(str(evaluation / "near.png"), near)
    write_dicom_frames(np.stack([us_image(96, 4), cine_second]), evaluation / "cine.dcm")
    (evaluation / "broken.png").write_bytes(b"")
    options = CorpusOptions(size=64, dedup_threshold=dedup_threshold,
                            frames=FrameOptions(modality=modality, frame_stride=frame_stride))
    report = prepare_corpus(tmp_path / "root", tmp_path / "cache", options, evaluation_folders=[evaluation])
    reasons = {r["source"]: r["reason"] for r in manifest(tmp_path / "cache")}
    assert reasons == {"site/exact.png": "matches_evaluation:evalset/capture.dcm",
                       "site/near.jpg": "near_evaluation:evalset/near.png",
                       "site/frame.png": "matches_evaluation:evalset/cine.dcm"}
    assert report["evaluation_files_unread"] == [{"source": "evalset/broken.png",
                                                  "reason": "evalset/broken.png: empty file (0 bytes)"}]


#: Small chunks, no near-duplicate merging: what the rerun tests need to see chunks read again or kept.
RERUN_OPTIONS = CorpusOptions(size=32, files_per_chunk=2, dedup_threshold=-1)


def _site_of_scans(tmp_path, count: int, first_seed: int):
    """``ROOT/site`` with ``count`` simulated scans ``scan_<i>.png`` (seeds from ``first_seed``)."""
    site = tmp_path / "root" / "site"
    site.mkdir(parents=True)
    for i in range(count):
        cv2.imwrite(str(site / f"scan_{i}.png"), us_image(64, first_seed + i))
    return site


def test_a_rerun_ingests_the_files_added_since_and_refuses_another_root(tmp_path, caplog):
    """A rerun into the same --out used to reuse the stored plan as it was: files added to the archive were never
    ingested, and a run over another root reported the old root's cache as its own."""
    options, site = RERUN_OPTIONS, _site_of_scans(tmp_path, 3, first_seed=10)
    out = tmp_path / "cache"
    assert prepare_corpus(tmp_path / "root", out, options)["kept"] == 3
    before = {p.name: p.stat().st_mtime_ns for p in (out / "chunks").iterdir()}
    for i in range(3, 6):
        cv2.imwrite(str(site / f"scan_{i}.png"), us_image(64, 10 + i))
    (site / "scan_0.png").unlink()
    with caplog.at_level(logging.INFO, logger="monai_ext.data.corpus"):
        report = prepare_corpus(tmp_path / "root", out, options)
    assert report["kept"] == 6  # the three new files, and the frame cached from the one removed since
    assert {p.name: p.stat().st_mtime_ns for p in (out / "chunks").iterdir() if p.name in before} == before
    assert "3 file(s) added under" in caplog.text and "1 planned file(s) are no longer under" in caplog.text
    shutil.copytree(tmp_path / "root", tmp_path / "other")
    with pytest.raises(ValueError, match=f"was prepared from '{tmp_path / 'root'}', not '{tmp_path / 'other'}'"):
        prepare_corpus(tmp_path / "other", out, options)


def test_a_rerun_reads_again_the_files_changed_since_they_were_cached(tmp_path, caplog):
    """A file still being copied was skipped as truncated, and a study re-exported in place kept its old frames:
    the cache trusted every chunk with a JSON. Chunks of unchanged files are not read again."""
    options = CorpusOptions(size=32, files_per_chunk=1, dedup_threshold=-1)
    site = tmp_path / "root" / "site"
    site.mkdir(parents=True)
    whole = cv2.imencode(".png", us_image(64, 21))[1].tobytes()
    (site / "copying.png").write_bytes(whole[: len(whole) // 3])   # the copy is not finished
    cv2.imwrite(str(site / "re_exported.png"), us_image(64, 22))
    cv2.imwrite(str(site / "unchanged.png"), us_image(64, 23))
    out = tmp_path / "cache"
    first = prepare_corpus(tmp_path / "root", out, options)
    assert [s["source"] for s in first["skipped_files"]] == ["site/copying.png"] and first["kept"] == 2
    unchanged = {p.name: p.stat().st_mtime_ns for p in (out / "chunks").iterdir() if p.stem.endswith("2")}
    (site / "copying.png").write_bytes(whole)                           # the copy finished
    cv2.imwrite(str(site / "re_exported.png"), us_image(48, 24))
    with caplog.at_level(logging.WARNING, logger="monai_ext.data.corpus"):
        second = prepare_corpus(tmp_path / "root", out, options)
    assert second["skipped_files"] == [] and second["kept"] == 3
    rows = {r["source"]: r for r in manifest(out)}
    assert rows["site/re_exported.png"]["orig_height"] == "48"          # the new export's frame, not the cached one
    assert "2 file(s) changed since they were cached" in caplog.text
    assert {p.name: p.stat().st_mtime_ns for p in (out / "chunks").iterdir() if p.stem.endswith("2")} == unchanged


def test_a_reread_chunk_cut_between_its_array_and_its_json_is_read_again(tmp_path, monkeypatch):
    """A chunk re-read for a changed file, cut after its new array and before its new JSON (SIGKILL, a power cut),
    kept its old JSON over the new array; with the file changed back (a restored backup: size and time as cached)
    the rerun trusted the chunk and trained on the other file's frame. The old JSON now goes before the new array."""
    from monai_ext.data import corpus
    from monai_ext.io.atomic import atomic_write_bytes

    options = CorpusOptions(size=32, files_per_chunk=1, dedup_threshold=-1)
    site = tmp_path / "root" / "site"
    site.mkdir(parents=True)
    cv2.imwrite(str(site / "scan.png"), us_image(64, 41))
    original, stat = (site / "scan.png").read_bytes(), (site / "scan.png").stat()
    out = tmp_path / "cache"
    prepare_corpus(tmp_path / "root", out, options)
    expected = np.load(out / "chunks" / "chunk_000000.npy").copy()
    cv2.imwrite(str(site / "scan.png"), us_image(48, 42))              # re-exported: the chunk is read again

    def cut_before_the_json(path, data):
        if Path(path).name.startswith("chunk_000000.json"):
            raise KeyboardInterrupt  # the process ends here, its new array on disk
        return atomic_write_bytes(path, data)

    monkeypatch.setattr(corpus, "atomic_write_bytes", cut_before_the_json)
    with pytest.raises(KeyboardInterrupt):
        prepare_corpus(tmp_path / "root", out, options)
    monkeypatch.undo()
    (site / "scan.png").write_bytes(original)                           # the backup restored as it was cached
    os.utime(site / "scan.png", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    prepare_corpus(tmp_path / "root", out, options)
    np.testing.assert_array_equal(np.load(out / "chunks" / "chunk_000000.npy"), expected)


def test_a_stop_while_a_reread_chunk_writes_its_array_keeps_a_gone_files_frames(tmp_path, monkeypatch):
    """A chunk read again (one file changed, one gone), stopped while its new array is written: the gone file's
    frames, which the cache keeps, were lost where the old JSON was dropped before the new array was written."""
    from monai_ext.data import corpus

    options, site = RERUN_OPTIONS, _site_of_scans(tmp_path, 2, first_seed=90)
    out = tmp_path / "cache"
    prepare_corpus(tmp_path / "root", out, options)
    before = {r["source"]: r["sha256"] for r in manifest(out)}
    cv2.imwrite(str(site / "scan_0.png"), us_image(48, 92))   # changed: the chunk is read again
    (site / "scan_1.png").unlink()                             # gone: its frames stay, from the cache

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C / a stop signal while the (large) array is being written

    monkeypatch.setattr(corpus, "_write_frames", stopped)
    with pytest.raises(KeyboardInterrupt):
        prepare_corpus(tmp_path / "root", out, options)
    monkeypatch.undo()
    prepare_corpus(tmp_path / "root", out, options)
    after = {r["source"]: r["sha256"] for r in manifest(out)}
    assert after.get("site/scan_1.png") == before["site/scan_1.png"] and after["site/scan_0.png"] != before[
        "site/scan_0.png"]


def test_a_chunk_write_cut_between_its_two_renames_is_finished_by_the_next_run(tmp_path, monkeypatch):
    """The new array in place, the new JSON not yet (a kill between the two renames), then the file changed back (a
    backup restored, size and time as cached): the old JSON would stand over the new frames and match the file. The
    next run puts the new JSON in place first, so the chunk is found changed and read again."""
    from monai_ext.data import corpus

    options, site = RERUN_OPTIONS, _site_of_scans(tmp_path, 1, first_seed=95)
    original, stat = (site / "scan_0.png").read_bytes(), (site / "scan_0.png").stat()
    out = tmp_path / "cache"
    prepare_corpus(tmp_path / "root", out, options)
    expected = np.load(out / "chunks" / "chunk_000000.npy").copy()
    cv2.imwrite(str(site / "scan_0.png"), us_image(48, 96))   # changed: the chunk is read again
    renames = []
    real_replace = os.replace

    def killed_after_the_first_rename(source, target):
        if str(source).endswith(".next"):
            renames.append(source)
            if len(renames) == 2:
                raise KeyboardInterrupt  # the process ends here: the array renamed, its JSON not
        return real_replace(source, target)

    monkeypatch.setattr(corpus.os, "replace", killed_after_the_first_rename)
    with pytest.raises(KeyboardInterrupt):
        prepare_corpus(tmp_path / "root", out, options)
    monkeypatch.undo()
    assert sorted(p.name for p in (out / "chunks").iterdir() if p.name.endswith(".next")) == ["chunk_000000.json.next"]
    (site / "scan_0.png").write_bytes(original)
    os.utime(site / "scan_0.png", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    prepare_corpus(tmp_path / "root", out, options)
    np.testing.assert_array_equal(np.load(out / "chunks" / "chunk_000000.npy"), expected)
    assert not list((out / "chunks").glob("*.next"))


def test_an_out_folder_inside_the_root_is_never_read_as_data(tmp_path, caplog):
    """The rerun ingested the cache's own report.png as a frame of a dataset named after the cache folder, and
    warned of its .npy and .json files as files of no image type."""
    root = tmp_path / "root"
    (root / "site").mkdir(parents=True)
    cv2.imwrite(str(root / "site" / "scan.png"), us_image(64, 31))
    options = CorpusOptions(size=32, files_per_chunk=2)
    for _ in range(2):
        with caplog.at_level(logging.WARNING, logger="monai_ext.data.corpus"):
            report = prepare_corpus(root, root / "cache", options)
    assert {r["source"] for r in manifest(root / "cache")} == {"site/scan.png"}
    assert report["files_not_read"] == {} and "types the corpus does not read" not in caplog.text


@pytest.mark.parametrize("copy_dataset", ["AAA_export", "clinic"])  # listed before and after the excluded one
def test_copies_of_an_excluded_dataset_filed_under_another_are_left_out(tmp_path, copy_dataset):
    """Exclusion keeps an evaluation set out of pretraining: the same image under a second dataset leaked back."""
    root = tmp_path / "root"
    for folder in ("BUS-BRA", copy_dataset, "other"):
        (root / folder).mkdir(parents=True)
    original = us_image(64, 41)
    cv2.imwrite(str(root / "BUS-BRA" / "bus_0001.png"), original)
    cv2.imwrite(str(root / copy_dataset / "img7.png"), original)                       # exact copy
    noisy = np.clip(original.astype(int) + np.random.default_rng(0).integers(-2, 3, original.shape), 0, 255)
    cv2.imwrite(str(root / copy_dataset / "img8.png"), noisy.astype(np.uint8))         # near copy (re-encoded)
    cv2.imwrite(str(root / "other" / "scan.png"), us_image(64, 42))
    report = prepare_corpus(root, tmp_path / "cache", CorpusOptions(size=32), exclude_datasets=["BUS-BRA"])
    reasons = {r["source"]: r["reason"] for r in manifest(tmp_path / "cache")}
    assert reasons[f"{copy_dataset}/img7.png"].startswith("matches_excluded:")
    assert reasons[f"{copy_dataset}/img8.png"].startswith("near_excluded:")
    assert reasons["other/scan.png"] == "" and report["kept"] == 1


def test_a_file_failing_part_way_keeps_the_frames_read_before(tmp_path):
    """A 4-page TIFF cut inside its last page lost all four (its page count was asked for first), and one corrupt
    frame of a JPEG cine loop lost the whole loop."""
    from PIL import Image
    from pydicom.encaps import encapsulate

    from tests.io.test_dicom_frames import loop_with_header

    root = tmp_path / "root"
    (root / "site").mkdir(parents=True)
    pages = [Image.fromarray(us_image(64, 50 + i)) for i in range(4)]
    pages[0].save(root / "site" / "stack.tif", save_all=True, append_images=pages[1:], compression="tiff_deflate")
    data = (root / "site" / "stack.tif").read_bytes()
    (root / "site" / "stack.tif").write_bytes(data[: int(len(data) * 0.85)])
    import pydicom

    loop = loop_with_header(tmp_path, "jpeg_baseline", 5)
    ds = pydicom.dcmread(loop)
    fragments = [cv2.imencode(".jpg", np.full((32, 48), level, np.uint8))[1].tobytes() for level in (40, 80, 0, 160)]
    fragments[2] = b"\xff\xd8" + np.random.default_rng(0).integers(0, 256, 600, np.uint8).tobytes() + b"\xff\xd9"
    ds.PixelData, ds.NumberOfFrames = encapsulate(fragments), 4
    ds.save_as(root / "site" / "loop.dcm")
    options = CorpusOptions(size=32, dedup_threshold=-1, min_signal_std=0.0, crop_fov=False)
    report = prepare_corpus(root, tmp_path / "cache", options)
    frames = {}
    for row in manifest(tmp_path / "cache"):
        frames.setdefault(row["source"], []).append(int(row["frame"]))
    assert frames == {"site/stack.tif": [0, 1, 2], "site/loop.dcm": [0, 1]}
    assert report["skipped_files"] == []
    warned = {entry["source"]: " ".join(entry["warnings"]) for entry in report["reader_warnings"]}
    assert "the views of frames 0-2 are kept" in warned["site/stack.tif"]
    assert "the views of frames 0-1 are kept" in warned["site/loop.dcm"]


@pytest.mark.parametrize("out", [".", "..", "site"])
def test_an_out_folder_that_is_the_root_or_a_dataset_in_it_is_refused(tmp_path, out):
    """--out ROOT/<dataset> left that dataset out of the walk (the cache's folder) and ended in "no supported
    files", with empty chunk folders left in the user's data."""
    root = tmp_path / "root"
    (root / "site").mkdir(parents=True)
    cv2.imwrite(str(root / "site" / "scan.png"), us_image(64, 61))
    with pytest.raises(ValueError, match="(is \\(or holds\\) the corpus root|already holds files that are no corpus)"):
        prepare_corpus(root, root / out, CorpusOptions(size=32))
    assert sorted(p.name for p in root.rglob("*")) == ["scan.png", "site"]


def test_a_failure_inside_a_frame_keeps_views_and_records_aligned(tmp_path, monkeypatch):
    """A failure after a frame's pixels were kept but before its record was made shifted every later row of the
    chunk: the manifest's hashes and kept rows pointed at other frames."""
    from PIL import Image

    import monai_ext.data.corpus as corpus

    root = tmp_path / "root"
    (root / "site").mkdir(parents=True)
    pages = [Image.fromarray(us_image(64, 70 + i)) for i in range(3)]
    pages[0].save(root / "site" / "loop.tif", save_all=True, append_images=pages[1:])
    cv2.imwrite(str(root / "site" / "z_after.png"), us_image(64, 75))
    calls = {"n": 0}
    real_hash = corpus.perceptual_hash

    def failing_second(gray):
        calls["n"] += 1
        if calls["n"] == 2:
            raise MemoryError
        return real_hash(gray)

    monkeypatch.setattr(corpus, "perceptual_hash", failing_second)
    options = CorpusOptions(size=32, dedup_threshold=-1, files_per_chunk=4)
    prepare_corpus(root, tmp_path / "cache", options)
    rows = manifest(tmp_path / "cache")
    assert [(r["source"], r["frame"]) for r in rows] == [("site/loop.tif", "0"), ("site/z_after.png", "0")]
    data = CorpusFrames(tmp_path / "cache")
    for index, row in enumerate(rows):  # each row's hash is the hash of the frame stored at its row
        import hashlib

        stored = data[index]["image"].numpy()[0]
        assert hashlib.sha256(np.ascontiguousarray(stored).tobytes()).hexdigest() == row["sha256"]


def test_a_rerun_after_a_refused_first_run_into_an_out_inside_the_root_goes_on(tmp_path):
    """The refused first run left ROOT/cache/chunks, and the rerun took the folder for a dataset."""
    root = tmp_path / "root"
    (root / "site").mkdir(parents=True)
    with pytest.raises(ValueError, match="no supported files"):
        prepare_corpus(root, root / "cache", CorpusOptions(size=32))
    cv2.imwrite(str(root / "site" / "scan.png"), us_image(64, 81))
    assert prepare_corpus(root, root / "cache", CorpusOptions(size=32))["kept"] == 1


def test_a_file_gone_from_a_chunk_read_again_keeps_its_cached_frames(tmp_path, caplog):
    """The warning says the frames of files no longer under the root stay; when another file of their chunk changed
    they were lost and the gone file listed as unreadable."""
    options, site = RERUN_OPTIONS, _site_of_scans(tmp_path, 2, first_seed=90)
    out = tmp_path / "cache"
    prepare_corpus(tmp_path / "root", out, options)
    before = {r["source"]: r["sha256"] for r in manifest(out)}
    cv2.imwrite(str(site / "scan_0.png"), us_image(48, 92))   # changed
    (site / "scan_1.png").unlink()                             # gone
    report = prepare_corpus(tmp_path / "root", out, options)
    after = {r["source"]: r["sha256"] for r in manifest(out)}
    assert after["site/scan_1.png"] == before["site/scan_1.png"] and after["site/scan_0.png"] != before["site/scan_0.png"]
    assert report["skipped_files"] == [] and report["kept"] == 2


#: Loaded at the start of every Python process of the run under test (its spawned workers too): every file but the
#: first takes a minute to read, as a long cine loop does, so that a run is stopped while its workers are busy and no
#: chunk but the first can be written before it ends.
SLOW_READER_HOOK = """
import os
import time
import monai_ext.data.corpus as corpus

_read = corpus.process_file


def process_file(path, root, options):
    (root.parent / "reading" / str(os.getpid())).touch()  # a worker started, its initializer run
    if path.name != "img_00.png":
        time.sleep(60)
    return _read(path, root, options)


corpus.process_file = process_file
"""


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped by its new parent, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; workers end with their parent on Linux")
@pytest.mark.parametrize("stop, status", [("ctrl-c", 130), (signal.SIGTERM, 128 + signal.SIGTERM),
                                          (signal.SIGKILL, -signal.SIGKILL)])
def test_a_stopped_run_with_workers_ends_them_and_their_queued_chunks(tmp_path, stop, status):
    """Stopped with --workers 2, the run went on: Ctrl-C read the chunks queued in the pool before it ended (each
    worker took Ctrl-C's KeyboardInterrupt as its chunk's result and read the next), and after SIGTERM or SIGKILL
    the workers outlived it (re-parented, reading the queue, then idle for ever)."""
    root = tmp_path / "root" / "set"
    root.mkdir(parents=True)
    for i in range(8):
        cv2.imwrite(str(root / f"img_{i:02d}.png"), us_image(64, seed=i))
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(SLOW_READER_HOOK)
    (tmp_path / "reading").mkdir()
    chunks = tmp_path / "cache" / "chunks"
    command = [sys.executable, "-m", "monai_ext", "prepare-corpus", str(tmp_path / "root"), "--out",
               str(tmp_path / "cache"), "--size", "32", "--files_per_chunk", "1", "--workers", "2",
               "--dedup_threshold", "-1"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "hook"), str(REPO)])}
    with open(tmp_path / "stderr.txt", "w", encoding="utf-8") as stderr:  # a file: workers left behind hold it
        run = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
                               start_new_session=True)  # its own group: Ctrl-C reaches it and its workers only
    try:
        deadline = time.monotonic() + 180  # both workers reading (past their start), the first chunk written
        while time.monotonic() < deadline and run.poll() is None and not (
                (chunks / "chunk_000000.json").exists() and len(list((tmp_path / "reading").iterdir())) == 2):
            time.sleep(0.2)
        workers = [int(path.name) for path in (tmp_path / "reading").iterdir()]
        assert len(workers) == 2 and run.poll() is None
        if stop == "ctrl-c":
            os.killpg(run.pid, signal.SIGINT)  # a terminal sends it to the whole foreground group
        else:
            os.kill(run.pid, stop)
        stopped = time.monotonic()
        run.wait(timeout=50)  # under the minute a queued chunk takes
        message = (tmp_path / "stderr.txt").read_text()
        assert run.returncode == status, message[-2000:]
        assert time.monotonic() - stopped < 20
        while any(alive(pid) for pid in workers) and time.monotonic() < stopped + 20:
            time.sleep(0.2)
        assert not any(alive(pid) for pid in workers)
    finally:  # whatever failed, nothing of the run outlives the test
        try:
            os.killpg(run.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        run.wait()
    assert sorted(path.name for path in chunks.glob("*.json")) == ["chunk_000000.json"]
    if stop != signal.SIGKILL:  # stopped, not killed by a file: no chunk is taken for a killer on the rerun
        assert not list(chunks.glob("*.started"))
        assert "the chunks already written are kept: rerun the same command to resume" in message


def test_a_chunks_error_in_the_pool_is_raised_at_once_not_after_the_queued_chunks(tmp_path):
    """One chunk failed with an ordinary error (here its array cannot replace a folder; a full disk in practice)
    while another was still being read: the error came after that chunk (in order), and after every chunk queued in
    the pool (a shutdown that waits): hours of an archive read to report a full disk."""
    from monai_ext.data.corpus import _run_chunks  # noqa: PLC0415 - private, for this test only

    root, chunks = tmp_path / "root", tmp_path / "cache" / "chunks"
    (root / "site").mkdir(parents=True)
    chunks.mkdir(parents=True)
    cv2.imwrite(str(root / "site" / "a.png"), us_image(64, seed=1))
    # chunk 0 is read again (its cached views first): its JSON is a pipe that nobody writes, so reading it never ends
    np.save(chunks / "chunk_000000.npy", np.zeros((0, 32, 32), np.uint8))
    os.mkfifo(chunks / "chunk_000000.json")
    (chunks / "chunk_000001.npy").mkdir()  # chunk 1 cannot be written
    jobs = [(index, ["site/a.png"], str(root), str(tmp_path / "cache"), CorpusOptions(size=32), {})
            for index in (0, 1)]
    unblocked = threading.Event()

    def unblock() -> None:  # a guard only, so that the test fails rather than hangs where the error waits
        unblocked.set()
        try:
            descriptor = os.open(chunks / "chunk_000000.json", os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # no reader (ended): nothing to unblock
            return
        os.write(descriptor, json.dumps({"files": [], "records": []}).encode())
        os.close(descriptor)

    guard = threading.Timer(120, unblock)
    guard.daemon = True
    guard.start()
    try:
        with pytest.raises(IsADirectoryError):
            for _ in _run_chunks(jobs, 2, tmp_path / "cache"):
                pass
    finally:
        guard.cancel()
    assert not unblocked.is_set(), "the error was raised only once the chunk being read ended"
    assert not list(chunks.glob("*.started"))  # the chunk in flight was stopped, not killed by one of its files


def test_a_stop_while_a_chunk_that_killed_its_process_is_written_keeps_its_marker(tmp_path, monkeypatch):
    """Ctrl-C or a stop signal while a chunk that a process had died on was read in the end (its killers known)
    removed its marker: the next run read it as any chunk, and its killer killed the run (--workers 1) again."""
    from monai_ext.data import corpus  # noqa: PLC0415 - private, for this test only

    root, chunks = tmp_path / "root", tmp_path / "cache" / "chunks"
    (root / "site").mkdir(parents=True)
    chunks.mkdir(parents=True)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(root / "site" / name), us_image(64, seed=len(name)))
    read = corpus.process_file

    def stopped_on_b(path: Path, root: Path, options: CorpusOptions):
        if path.name == "b.png":
            raise KeyboardInterrupt
        return read(path, root, options)

    monkeypatch.setattr(corpus, "process_file", stopped_on_b)
    killers = {"site/killer.png": "its reader's process died"}
    for index, died_on_before in ((0, True), (1, False)):
        if died_on_before:
            (chunks / f"chunk_{index:06d}.json.started").touch()
        job = (index, ["site/a.png", "site/killer.png", "site/b.png"], str(root), str(tmp_path / "cache"),
               CorpusOptions(size=32), killers if died_on_before else {})
        with pytest.raises(KeyboardInterrupt):
            corpus._write_chunk(job)
    assert sorted(path.name for path in chunks.glob("*.started")) == ["chunk_000000.json.started"]
    assert not list(chunks.glob("*.json"))


def test_a_rerun_removes_the_unfinished_writes_of_a_killed_run(tmp_path):
    """A run killed (SIGKILL) while it wrote a chunk left the temporary file of that write, a chunk's size, for
    ever: no later run removed it."""
    root = tmp_path / "root" / "site"
    root.mkdir(parents=True)
    cv2.imwrite(str(root / "a.png"), us_image(64, seed=3))
    chunks = tmp_path / "cache" / "chunks"
    chunks.mkdir(parents=True)
    leftovers = [chunks / ".chunk_000000.npy.k3x9q2ab.tmp", chunks / ".chunk_000000.json.p0w1e2r3.tmp"]
    for path in leftovers:
        path.write_bytes(b"\x93NUMPY half-written")
    other = tmp_path / "cache" / "chunks" / "notes.tmp"  # not a chunk write: left alone
    other.write_text("mine")
    assert prepare_corpus(tmp_path / "root", tmp_path / "cache", CorpusOptions(size=32))["kept"] == 1
    assert not any(path.exists() for path in leftovers) and other.exists()


@pytest.mark.skipif(sys.platform == "win32", reason="the lock is fcntl's")
def test_a_second_run_on_a_cache_being_written_is_refused_and_leaves_its_writes(tmp_path):
    """A second run on the same cache (the command started twice, a requeued job while the first is in its grace
    period) removed the first's chunk writes in flight as a killed run's leftovers; the first then failed on its
    rename."""
    import fcntl

    root = tmp_path / "root" / "site"
    root.mkdir(parents=True)
    cv2.imwrite(str(root / "a.png"), us_image(64, seed=3))
    out = tmp_path / "cache"
    (out / "chunks").mkdir(parents=True)
    in_flight = out / "chunks" / ".chunk_000000.npy.k3x9q2ab.tmp"  # the first run's write
    in_flight.write_bytes(b"\x93NUMPY being written")
    with open(out / ".ingest.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the first run holds it
        with pytest.raises(ValueError, match="another prepare-corpus run is writing to"):
            prepare_corpus(tmp_path / "root", out, CorpusOptions(size=32))
        assert in_flight.exists()
    assert prepare_corpus(tmp_path / "root", out, CorpusOptions(size=32))["kept"] == 1  # the first run ended
    assert not in_flight.exists()
