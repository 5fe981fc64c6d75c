"""predict_files: every input gets its prediction and heat map or its reason; the JSON is always written."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_ext.engines import inference
from monai_ext.engines.inference import predict_files
from monai_ext.io.images import DisplayImage

LONG = "超" * 80  # 240 bytes in UTF-8: a name the filesystem takes, whose outputs' names it would not


class Mean(torch.nn.Module):
    """Two-class logits from the image mean: (N, C, H, W) -> (N, 2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))[:, None]
        return torch.cat([-m, m], dim=1)


def brightness(item: dict) -> dict:
    """The preprocessing stand-in: (1, 4, 4) of a value taken from the name; no file is read."""
    return {"image": np.full((1, 4, 4), 1.0 if "z_" in item["image"] else -1.0, np.float32)}


@pytest.fixture
def heatmaps(monkeypatch) -> None:
    """Grad-CAM on: the overlay is a plain (4, 4, 3) image (token Grad-CAM itself is tested in tests/visualize)."""
    monkeypatch.setattr(inference, "has_token_blocks", lambda network: True)
    monkeypatch.setattr(inference, "gradcam_overlay",
                        lambda network, image, label, display: np.zeros((*display.shape[:2], 3), np.uint8))
    monkeypatch.setattr(inference, "read_image", lambda path: DisplayImage(np.zeros((4, 6), np.uint8)))


def files_in(folder: Path) -> list[str]:
    return [str(folder / "a_first.png"), str(folder / f"{LONG}.png"), str(folder / "z_last.png")]


def test_a_name_too_long_for_its_heat_map_still_gets_one(tmp_path, heatmaps) -> None:
    files = files_in(tmp_path / "in")
    result = predict_files(Mean(), files, brightness, ["dark", "bright"], "cpu", tmp_path / "out" / "predictions.json",
                           tmp_path / "out" / "heatmaps")
    assert set(result["predictions"]) == set(files) and result["errors"] == {}
    assert [result["predictions"][f]["class"] for f in files] == ["dark", "dark", "bright"]
    written = {Path(p["heatmap"]) for p in result["predictions"].values()}
    assert written == set((tmp_path / "out" / "heatmaps").iterdir()) and len(written) == 3
    assert json.loads((tmp_path / "out" / "predictions.json").read_text()) == result


def test_a_failed_heat_map_write_is_listed_and_the_batch_goes_on(tmp_path, heatmaps, monkeypatch) -> None:
    def full_disk_for_the_long_name(image: np.ndarray, path: Path) -> None:
        if LONG[:10] in path.name:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"png")

    monkeypatch.setattr(inference, "save_png", full_disk_for_the_long_name)
    files = files_in(tmp_path / "in")
    result = predict_files(Mean(), files, brightness, ["dark", "bright"], "cpu", tmp_path / "out" / "predictions.json",
                           tmp_path / "out" / "heatmaps")
    assert set(result["predictions"]) == set(files)  # the prediction itself stands
    assert list(result["errors"]) == [files[1]] and "No space left" in result["errors"][files[1]]
    assert "heatmap" not in result["predictions"][files[1]] and Path(result["predictions"][files[2]]["heatmap"]).exists()
    assert json.loads((tmp_path / "out" / "predictions.json").read_text()) == result


@pytest.mark.parametrize("taken", ["out", "out/heatmaps"])
def test_an_output_folder_that_is_a_file_fails_before_any_prediction(tmp_path, heatmaps, taken: str) -> None:
    (tmp_path / taken).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / taken).write_text("a file where the outputs go")
    read: list[str] = []

    def counting(item: dict) -> dict:
        read.append(item["image"])
        return brightness(item)

    with pytest.raises(FileExistsError, match=taken):
        predict_files(Mean(), files_in(tmp_path), counting, ["dark", "bright"], "cpu",
                      tmp_path / "out" / "predictions.json", tmp_path / "out" / "heatmaps")
    assert read == []


@pytest.mark.parametrize("pixels, blank", [
    (np.zeros((1, 4, 4), np.float32), True),                   # an all-black export
    (np.full((3, 1, 1), 0.7, np.float32), True),               # a 1 x 1 placeholder, any channels
    (np.array([-2.1, -2.0, -1.8], np.float32)[:, None, None] * np.ones((3, 4, 4), np.float32), True),  # black,
    # normalised channel-wise: one value per channel
    (np.stack([np.eye(4), np.zeros((4, 4)), np.zeros((4, 4))]).astype(np.float32), False),  # detail in one channel
    (np.eye(4, dtype=np.float32)[None], False),                # a real picture, however small
    (np.full((1, 4, 4), 5.0, np.float32) + np.eye(4, dtype=np.float32)[None] * 1e-3, False),
])
def test_a_blank_image_gets_its_prediction_and_a_warning(tmp_path, pixels: np.ndarray, blank: bool) -> None:
    """Exactly uniform images; the resized and the 16-bit cases are below."""
    result = predict_files(Mean(), ["scan.png"], lambda item: {"image": pixels}, ["dark", "bright"], "cpu",
                           tmp_path / "predictions.json")
    prediction = result["predictions"]["scan.png"]
    assert set(prediction["probabilities"]) == {"dark", "bright"} and result["errors"] == {}
    assert (prediction.get("warning") == inference.BLANK_IMAGE_WARNING) is blank


def resized(frame: np.ndarray) -> np.ndarray:
    """(1, H, W) through the inference configs' area resize to 224 and a normalisation: (1, 224, 224)."""
    from monai.transforms import Resize

    return ((np.asarray(Resize((224, 224), mode="area")(frame)) - 0.45) / 0.22).astype(np.float32)


@pytest.mark.parametrize("level", [77, 130, 202])
def test_a_uniform_gray_stays_blank_through_area_resizing(level: int) -> None:
    image = resized(np.full((1, 480, 640), level / 255, np.float32))
    assert image.max() > image.min()  # float rounding of the resize: not exactly uniform any more
    entry: dict = {}
    inference.note_if_blank(entry, "gray.png", torch.from_numpy(image))
    assert entry["warning"] == inference.BLANK_IMAGE_WARNING


def test_one_16_bit_level_of_contrast_is_not_blank() -> None:
    frame = np.zeros((1, 480, 640), np.float32)
    frame[0, 100:200, 100:200] = 1 / 65535
    entry: dict = {}
    inference.note_if_blank(entry, "faint.dcm", torch.from_numpy(resized(frame)))
    assert entry == {}


def test_a_two_dimensional_image_is_refused() -> None:
    with pytest.raises(ValueError, match=r"got shape \(4, 4\)"):
        inference.note_if_blank({}, "x.png", torch.zeros(4, 4))


def test_a_stopped_batch_keeps_the_predictions_made(tmp_path) -> None:
    """Ctrl-C (or any error outside one file's reading) on file 4 of 5: the JSON used to be written only at the end,
    so a long run over an archive lost everything."""
    files = [f"scan_{i}.png" for i in range(5)]

    def stops_at_the_fourth(item: dict) -> dict:
        if item["image"] == files[3]:
            raise KeyboardInterrupt
        return brightness(item)

    with pytest.raises(KeyboardInterrupt):
        predict_files(Mean(), files, stops_at_the_fourth, ["dark", "bright"], "cpu", tmp_path / "predictions.json",
                      weights="/models/model.pt")
    kept = json.loads((tmp_path / "predictions.json").read_text())
    assert list(kept["predictions"]) == files[:3] and kept["complete"] is False
    assert kept["weights"] == "/models/model.pt"  # which model made them, though the run did not end


def test_results_are_rewritten_every_few_files_while_the_batch_runs(tmp_path) -> None:
    """What a run killed outright (no exception to catch) leaves: the results as of the last write."""
    path, result, seen = tmp_path / "results.json", {"done": []}, []
    with inference.kept_results(path, result, save_every=2) as one_more_file:
        for i in range(5):
            one_more_file()
            seen.append(json.loads(path.read_text()) if path.exists() else None)
            result["done"].append(i)
    assert seen == [{"done": [], "complete": False}, {"done": [0], "complete": False},
                    {"done": [0], "complete": False}, {"done": [0, 1, 2], "complete": False},
                    {"done": [0, 1, 2], "complete": False}]
    assert json.loads(path.read_text()) == {"done": [0, 1, 2, 3, 4], "complete": True}
    with pytest.raises(ValueError, match="save_every must be at least 1, got 0"):
        with inference.kept_results(path, result, save_every=0):
            pass


def writes_recorded(monkeypatch) -> list[int]:
    """The results each write of the results file holds (``len(result["done"])``), recorded instead of written."""
    writes: list[int] = []
    monkeypatch.setattr(inference, "_write_results", lambda path, result, complete: writes.append(len(result["done"])))
    return writes


def test_the_results_file_is_written_in_about_linear_time_and_kept_close_behind(tmp_path, monkeypatch) -> None:
    """Each write holds every result so far: rewritten every 50 files, 10^5 images made 2,000 writes of a file
    growing to tens of MB (40 GB). The results written in all now stay about 11 times the results (the gap grows
    by 10 %), and a kill at any point still finds the file at most 50 files or 10 % of those done behind."""
    monkeypatch.setattr(inference, "SAVE_SECONDS", float("inf"), raising=False)  # counts alone: no clock
    writes, result, n = writes_recorded(monkeypatch), {"done": []}, 5000
    with inference.kept_results(tmp_path / "results.json", result) as one_more_file:
        for i in range(n):
            one_more_file()
            behind = i - writes[-1]  # results a kill now would lose
            assert behind < max(inference.SAVE_EVERY, 0.1 * i + 1), (i, writes[-1])  # 0.1: SAVE_GROWTH
            result["done"].append(i)
    assert writes[-1] == n  # the final write
    assert sum(writes) <= 12 * n, f"{len(writes)} writes of {sum(writes)} results in all for {n} files"


def test_a_slow_run_is_written_at_least_every_save_seconds(tmp_path, monkeypatch) -> None:
    """Grown by 10 % a write, the gap reaches 500 files after 5,000: at a second a file (Grad-CAM on a CPU) a kill
    lost over 8 minutes of work. A file is rewritten once SAVE_SECONDS have passed (a clock of our own: no race)."""
    now = [0.0]
    monkeypatch.setattr(inference, "time", type("Clock", (), {"monotonic": staticmethod(lambda: now[0])}))
    writes, result = writes_recorded(monkeypatch), {"done": []}
    with inference.kept_results(tmp_path / "results.json", result) as one_more_file:
        for i in range(3000):
            now[0] += 1.0  # one second a file
            one_more_file()
            result["done"].append(i)
    gaps = [b - a for a, b in zip(writes, writes[1:-1])]  # the final write aside
    assert max(gaps) == gaps[-1] == inference.SAVE_SECONDS  # 60 files at a second each (10 % would be 290)


@pytest.mark.parametrize("done, saved, seconds_since, write_seconds, due", [
    (5049, 5000, 3600.0, 0.1, True),  # an hour since: written, however few files (at 6 s a file, 50 took 5 min)
    (5001, 5000, 59.0, 0.1, False),  # one file, not a minute since
    (5000, 5000, 3600.0, 0.1, False),  # nothing new to write
    (5050, 5000, 59.0, 0.1, False),  # 50 of 5000 is less than 10 %, and not a minute since
    (5500, 5000, 0.0, 0.1, True),  # 10 % more
    (5050, 5000, 60.0, 0.1, True),  # a minute since
    (5050, 5000, 60.0, 10.0, False),  # ... but the last write took 10 s: not before 200 s (5 % of the run at most)
    (5050, 5000, 200.0, 10.0, True),
    (50, 0, 0.0, 0.0, True),  # the first gap: SAVE_EVERY
])
def test_when_a_results_file_is_due(done, saved, seconds_since, write_seconds, due) -> None:
    assert inference.save_due(done, saved, seconds_since, write_seconds) is due


def test_a_file_of_several_frames_says_how_many_and_that_the_first_was_used(tmp_path, caplog) -> None:
    """A cine loop's prediction is of its first frame: the record gives the loop's frame count, the log says so."""
    def loading_with_frames(item: dict) -> dict:
        return {**brightness(item), inference.FRAMES_KEY: 48 if "loop" in item["image"] else 1}

    files = [str(tmp_path / "a_single.png"), str(tmp_path / "z_loop.dcm")]
    with caplog.at_level("WARNING", logger=inference.logger.name):
        result = predict_files(Mean(), files, loading_with_frames, ["dark", "bright"], "cpu", tmp_path / "p.json")
    assert "frames" not in result["predictions"][files[0]] and result["predictions"][files[1]]["frames"] == 48
    assert f"{files[1]}: holds 48 frames; the output is of the first" in caplog.text
    assert f"{files[0]}: holds" not in caplog.text
    # a loading that does not count frames (a custom config) gives no count, not a wrong one
    result = predict_files(Mean(), files, brightness, ["dark", "bright"], "cpu", tmp_path / "p.json")
    assert all("frames" not in p for p in result["predictions"].values())


def test_a_rerun_where_a_file_fails_leaves_no_earlier_heat_map_of_it(tmp_path, heatmaps) -> None:
    files = files_in(tmp_path / "in")
    broken: set[str] = set()

    def transform(item: dict) -> dict:
        if item["image"] in broken:
            raise ValueError(f"{item['image']}: cannot decode")
        return brightness(item)

    def run() -> dict:
        return predict_files(Mean(), files, transform, ["dark", "bright"], "cpu", tmp_path / "out" / "p.json",
                             tmp_path / "out" / "heatmaps")

    first = run()
    gone = Path(first["predictions"][files[2]]["heatmap"])
    broken.add(files[2])
    second = run()
    assert list(second["errors"]) == [files[2]] and not gone.exists()
    assert len(list((tmp_path / "out" / "heatmaps").iterdir())) == 2  # the others' heat maps stand


def test_an_earlier_runs_results_do_not_outlive_the_start_of_a_run(tmp_path) -> None:
    """A rerun into the same folder stopped before its first periodic write left the earlier run's file in place,
    saying "complete": true about other inputs (perhaps another model's)."""
    path = tmp_path / "predictions.json"
    path.write_text(json.dumps({"predictions": {"earlier.png": {}}, "complete": True}))
    with inference.kept_results(path, {"predictions": {}}):
        assert json.loads(path.read_text()) == {"predictions": {}, "complete": False}


@pytest.mark.parametrize("name", [name for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)])
def test_a_terminated_batch_keeps_the_predictions_made(tmp_path, name) -> None:
    """A queue's time limit, docker stop or timeout sends SIGTERM, a closed SSH session SIGHUP: the process ended at
    once, losing up to 49 files' results. The batch now stops as on Ctrl-C, with the exit status of the signal."""
    files = [f"scan_{i}.png" for i in range(5)]
    number = getattr(signal, name)

    def signalled_at_the_fourth(item: dict) -> dict:
        if item["image"] == files[3]:
            os.kill(os.getpid(), number)
        return brightness(item)

    before = signal.getsignal(number)
    with pytest.raises(SystemExit) as stopped:
        predict_files(Mean(), files, signalled_at_the_fourth, ["dark", "bright"], "cpu", tmp_path / "p.json")
    assert stopped.value.code == 128 + number
    kept = json.loads((tmp_path / "p.json").read_text())
    assert list(kept["predictions"]) == files[:3] and kept["complete"] is False
    assert signal.getsignal(number) == before  # the process's own handling is back after the batch


def test_a_batch_in_which_no_file_is_read_is_an_error_after_its_results_are_written(tmp_path) -> None:
    """A mistyped --input_files path, or a folder given as a file, ended as a success with no prediction."""
    def unreadable(item: dict) -> dict:
        raise ValueError(f"{item['image']}: cannot open (missing, a broken link or not a file)")

    with pytest.raises(ValueError, match=r"no predictions: none of the 2 input file\(s\) gave a result \(first: "
                                         r"ValueError: typo.png: cannot open"):
        predict_files(Mean(), ["typo.png", "folder"], unreadable, ["dark", "bright"], "cpu", tmp_path / "p.json")
    kept = json.loads((tmp_path / "p.json").read_text())
    assert kept["predictions"] == {} and set(kept["errors"]) == {"typo.png", "folder"} and kept["complete"] is True


def test_heat_maps_an_earlier_run_listed_are_removed_and_a_users_files_stay(tmp_path, heatmaps) -> None:
    """A rerun into the same folder with other inputs or another model left the earlier maps under names that look
    like this run's (a clinician zipping heatmaps/ got another model's maps). Only what the earlier predictions.json
    lists, inside the output folder, is removed."""
    out, folder = tmp_path / "out", tmp_path / "out" / "heatmaps"
    folder.mkdir(parents=True)
    for name in ("a_first_gradcam.png", "other_case_gradcam.png", "users_own_gradcam.png"):
        (folder / name).write_bytes(b"earlier")
    (tmp_path / "elsewhere_gradcam.png").write_bytes(b"outside the output folder")
    listed = {"x.png": {"heatmap": str(folder / "a_first_gradcam.png")},
              "y.png": {"heatmap": str(folder / "other_case_gradcam.png")},
              "z.png": {"heatmap": str(tmp_path / "elsewhere_gradcam.png")}, "w.png": "not an entry"}
    (out / "p.json").write_text(json.dumps({"predictions": listed, "complete": True}))
    files = [str(tmp_path / "in" / "a_first.png")]
    predict_files(Mean(), files, brightness, ["dark", "bright"], "cpu", out / "p.json", folder)
    assert sorted(p.name for p in folder.iterdir()) == ["a_first_gradcam.png", "users_own_gradcam.png"]
    assert (folder / "a_first_gradcam.png").read_bytes() != b"earlier"  # this run's
    assert (tmp_path / "elsewhere_gradcam.png").exists()  # named, but outside the output folder


@pytest.mark.parametrize("earlier", ["", "{broken", "[]", '{"predictions": []}'])
def test_an_unreadable_earlier_results_file_removes_nothing(tmp_path, earlier) -> None:
    (tmp_path / "keep_gradcam.png").write_bytes(b"x")
    (tmp_path / "p.json").write_text(earlier)
    inference.clear_earlier_outputs(tmp_path / "p.json", "predictions", ["heatmap"])
    assert (tmp_path / "keep_gradcam.png").exists()


@pytest.mark.parametrize("handling", ["ignored", "the caller's"])
def test_a_stop_signal_the_caller_ignores_or_handles_keeps_its_handling(tmp_path, handling) -> None:
    """Started under nohup (SIGHUP ignored), a batch went on when the SSH session closed; taking every stop signal
    over made it stop there. Only signals that would end the process are turned into a stop."""
    number = signal.SIGHUP if hasattr(signal, "SIGHUP") else signal.SIGTERM
    caught = []
    handler = signal.SIG_IGN if handling == "ignored" else (lambda signum, frame: caught.append(signum))
    before = signal.signal(number, handler)
    try:
        files = [f"scan_{i}.png" for i in range(4)]

        def signalled_at_the_third(item: dict) -> dict:
            if item["image"] == files[2]:
                os.kill(os.getpid(), number)
            return brightness(item)

        result = predict_files(Mean(), files, signalled_at_the_third, ["dark", "bright"], "cpu", tmp_path / "p.json")
        assert list(result["predictions"]) == files and result["complete"] is True
        assert caught == ([] if handling == "ignored" else [number])
        assert signal.getsignal(number) is handler
    finally:
        signal.signal(number, before)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_an_image_of_nan_pixels_is_listed_as_an_error_not_classified(tmp_path, bad: float) -> None:
    """A DICOM the reader once turned into NaN everywhere got class 0 with null probabilities and no error."""
    def preprocess(item: dict) -> dict:
        image = brightness(item)["image"]
        if "a_" in item["image"]:
            image[0, 1, 2] = bad
        return {"image": image}

    files = files_in(tmp_path / "in")
    result = predict_files(Mean(), files, preprocess, ["dark", "bright"], "cpu", tmp_path / "out" / "predictions.json")
    assert set(result["predictions"]) == set(files[1:])
    assert result["errors"] == {files[0]: f"UnreadableImageError: {files[0]}: 1 of 16 preprocessed values are NaN or "
                                          "infinite"}


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_network_giving_nan_or_inf_is_an_error_per_file_not_the_first_class(tmp_path, bad) -> None:
    """The arg-max of NaN is class 0: damaged weights labelled every file "dark", wrote null probabilities, no error,
    and the run ended well."""
    class Broken(Mean):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits = super().forward(x)
            return torch.where(x.mean(dim=(1, 2, 3))[:, None] > 0, logits, torch.full_like(logits, bad))

    result = predict_files(Broken(), [str(tmp_path / "a_dark.png"), str(tmp_path / "z_bright.png")], brightness,
                           ["dark", "bright"], "cpu", tmp_path / "predictions.json")
    assert list(result["predictions"]) == [str(tmp_path / "z_bright.png")]
    assert result["errors"][str(tmp_path / "a_dark.png")].startswith("the network's output holds NaN or inf")
    with pytest.raises(ValueError, match="no predictions: none of the 1 input file\\(s\\) gave a result \\(first: the network"):
        predict_files(Broken(), [str(tmp_path / "a_dark.png")], brightness, ["dark", "bright"], "cpu",
                      tmp_path / "again.json")


def test_heat_maps_asked_of_a_network_without_token_blocks_are_said_not_written(tmp_path, caplog) -> None:
    """The heat-map folder stayed empty without a word for a CNN."""
    with caplog.at_level("WARNING", logger="monai_ext.engines.inference"):
        predict_files(Mean(), [str(tmp_path / "a.png")], brightness, ["dark", "bright"], "cpu",
                      tmp_path / "predictions.json", heatmap_dir=tmp_path / "heatmaps")
    assert "heat maps need a ViT's token blocks" in caplog.text and "Mean has none" in caplog.text


@contextlib.contextmanager
def killed_outright(monkeypatch) -> Iterator[None]:
    """A batch killed outright (SIGKILL): its results file keeps only the start's write, the block's run stops
    (KeyboardInterrupt from :func:`stopping_at`, expected here), and writes work again after it."""
    real_write, writes = inference._write_results, []

    def first_write_only(path: Path, result: dict, complete: bool) -> None:
        writes.append(complete)
        if len(writes) == 1:  # a kill leaves no later write
            real_write(path, result, complete)

    monkeypatch.setattr(inference, "_write_results", first_write_only)
    with pytest.raises(KeyboardInterrupt):
        yield
    monkeypatch.setattr(inference, "_write_results", real_write)


def stopping_at(stop: str, load: Callable[[dict], dict]) -> Callable[[dict], dict]:
    """``load``, stopping the batch (KeyboardInterrupt) at the item of image ``stop``."""
    def loading(item: dict) -> dict:
        if item["image"] == stop:
            raise KeyboardInterrupt
        return load(item)
    return loading


@pytest.mark.parametrize("rerun_heatmaps", [True, False])
def test_a_killed_runs_heat_maps_do_not_survive_a_rerun(tmp_path, heatmaps, monkeypatch, rerun_heatmaps) -> None:
    """A heat map is written after every file, the JSON every SAVE_EVERY files: a run killed outright (SIGKILL)
    left maps its JSON does not list, and a rerun with other inputs kept them beside its own."""
    out, folder = tmp_path / "out", tmp_path / "out" / "heatmaps"
    files = [str(tmp_path / "in" / f"scan_{i}.png") for i in range(4)]
    with killed_outright(monkeypatch):
        predict_files(Mean(), files, stopping_at(files[3], brightness), ["dark", "bright"], "cpu", out / "p.json",
                      folder)
    killed = json.loads((out / "p.json").read_text())
    assert killed["predictions"] == {} and killed["complete"] is False and len(list(folder.iterdir())) == 3
    (folder / "notes.txt").write_text("a user's file, not a heat map")
    (folder / "benign (1)_gradcam.png").write_bytes(b"a user's file of the pattern")
    other = [str(tmp_path / "in" / "other.png")]
    result = predict_files(Mean(), other, brightness, ["dark", "bright"], "cpu", out / "p.json",
                           folder if rerun_heatmaps else None)
    assert sorted(p.name for p in folder.iterdir()) == [
        "benign (1)_gradcam.png", "notes.txt", *(["other_gradcam.png"] if rerun_heatmaps else [])]
    assert list(result["predictions"]) == other
    assert inference.PENDING_KEY not in json.loads((out / "p.json").read_text())  # complete: its entries list all


@pytest.mark.parametrize("complete", [False, True])
def test_an_unfinished_earlier_run_clears_only_the_files_it_was_to_write(tmp_path, complete: bool) -> None:
    """The files a run that did not complete planned, inside the output folder, go; a user's own file of the same
    pattern (a map or a BUSI mask kept in the output folder) stays, and so does anything outside it. A folder-wide
    sweep by name pattern removed a user's own ``benign (1)_gradcam.png`` after a Ctrl-C that wrote nothing."""
    folder, outside = tmp_path / "out" / "heatmaps", tmp_path / "elsewhere"
    for place in (folder, outside):
        place.mkdir(parents=True)
        (place / "a_gradcam.png").write_bytes(b"x")
    (folder / "benign (1)_gradcam.png").write_bytes(b"the user's own")
    earlier = {"predictions": {}, "complete": complete,
               inference.PENDING_KEY: [str(folder / "a_gradcam.png"), str(outside / "a_gradcam.png")]}
    (tmp_path / "out" / "p.json").write_text(json.dumps(earlier))
    inference.clear_earlier_outputs(tmp_path / "out" / "p.json", "predictions", ["heatmap"])
    assert (folder / "a_gradcam.png").exists() is complete  # a complete run's entries, not its plan, count
    assert (outside / "a_gradcam.png").exists() and (folder / "benign (1)_gradcam.png").exists()
