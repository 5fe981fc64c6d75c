"""Label-efficiency curve: the per-class budgets in the datalists written, the table and figure against the per-run
reports (recomputed here), and refusals of impossible budgets before anything trains."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy import stats

from monai_ext.apps import label_efficiency as le
from monai_ext.apps.label_efficiency import check_counts, curve_protocol, label_efficiency
from monai_ext.cli import main

COUNTS = (2, 4)
TINY = {"arch": "mae_vit_tiny_patch16_dec128d2b", "image_size": 32, "in_channels": 1, "batch_size": 8,
        "num_workers": 0, "epochs": 1, "precision": "fp32"}


@pytest.fixture(scope="module")
def cache(module_tmp) -> Path:
    return module_tmp("cache")


@pytest.fixture(scope="module")
def checkpoint(module_tmp) -> Path:
    """A tiny MAE (32 px, one channel) standing in for a pretraining run's model."""
    import torch

    from monai_ext.networks.mae import build_mae

    torch.manual_seed(7)
    path = module_tmp("mae") / "mae.pth"
    torch.save(build_mae("mae_vit_tiny_patch16_dec128d2b", img_size=32, in_chans=1).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def curve(module_tmp, cache, checkpoint) -> tuple[dict, dict]:
    """One real curve: 2 budgets x 2 starts x 2 repeats of 1-epoch fine-tuning; the panels the figure was drawn from."""
    drawn: dict = {}
    real_plot = le.plot_errorbar_panels

    def keep(panels, path, *args, **kwargs):
        drawn.update(panels, reference_lines=kwargs["reference_lines"])
        real_plot(panels, path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(le, "plot_errorbar_panels", keep)
        protocol = curve_protocol("subtle", None, cache, COUNTS, per_class=6)
        out = module_tmp("curve")
        record = label_efficiency(protocol, out, checkpoint, COUNTS, repeats=2,
                                  overrides={**TINY, "cache_dir": str(cache)})
    return record, drawn


@pytest.mark.slow
def test_each_class_has_exactly_the_budget_in_the_datalists_and_the_test_part_is_shared(curve) -> None:
    record, _ = curve
    for r in range(2):
        datalists = {n: json.loads(Path(record["outputs"]["json"]).parent.joinpath("splits", f"n{n}_rep{r}.json")
                                   .read_text()) for n in COUNTS}
        for n, data in datalists.items():
            labelled = data["train"] + data["validation"]
            assert Counter(it["label"] for it in labelled) == {c: n for c in range(4)}
        assert datalists[2]["test"] == datalists[4]["test"] and len(datalists[2]["test"]) in (4, 5)  # 24 images, 5 folds
        ids = {n: {it["image"] for it in d["train"] + d["validation"]} for n, d in datalists.items()}
        assert ids[2] < ids[4]  # nested budgets
    assert {run["datalist"] for run in record["runs"]} == {
        str(Path(record["outputs"]["json"]).parent / "splits" / f"n{n}_rep{r}.json") for n in COUNTS for r in range(2)}


@pytest.mark.slow
def test_table_and_json_equal_statistics_recomputed_from_the_run_reports(curve) -> None:
    record, _ = curve
    reports = {(run["labels_per_class"], run["start"], run["repeat"]): json.loads(Path(run["report"]).read_text())
               for run in record["runs"]}
    assert len(reports) == 8
    table = Path(record["outputs"]["md"]).read_text()
    assert table == record["table"]
    for n in COUNTS:
        cells = []
        for start in ("pretrained", "random"):
            values = {m: np.array([reports[(n, start, r)][m] for r in range(2)]) for m in le.CURVE_METRICS}
            summary = record["per_count"][str(n)]["summary"][start]
            for m, v in values.items():
                assert summary[m]["mean"] == pytest.approx(v.mean()) and summary[m]["std"] == pytest.approx(v.std(ddof=1))
            cells = " | ".join(f"{100 * v.mean():.1f} ± {100 * v.std(ddof=1):.1f}" for v in values.values())
            assert f"| {n} | {start} | {cells} |" in table
        for m in ("macro_f1", "auc", "balanced_accuracy"):
            a = [reports[(n, "pretrained", r)][m] for r in range(2)]
            b = [reports[(n, "random", r)][m] for r in range(2)]
            d = record["per_count"][str(n)]["paired_differences"][m]
            assert d["mean"] == pytest.approx(np.mean(np.subtract(a, b)))
            if np.ptp(np.subtract(a, b)) > 0:  # scipy's interval is NaN-free only when the differences vary
                ci = stats.ttest_rel(a, b).confidence_interval(0.95)
                assert (d["low"], d["high"]) == pytest.approx((ci.low, ci.high))
        assert f"| {n} | {100 * record['per_count'][str(n)]['paired_differences']['macro_f1']['mean']:+.1f} [" in table


@pytest.mark.slow
def test_the_figure_is_a_png_of_the_summary_numbers(curve) -> None:
    record, drawn = curve
    image = cv2.imread(record["outputs"]["png"])
    assert image is not None and image.shape[0] > 300 and image.shape[1] > 600 and image.std() > 10
    assert set(drawn) == {*le.PLOTTED.values(), "reference_lines"}
    assert drawn["reference_lines"] == {le.PLOTTED["macro_f1"]: (25.0, "chance"), le.PLOTTED["auc"]: (50.0, "chance")}
    for metric, label in le.PLOTTED.items():
        for start in ("pretrained", "random"):
            xs, means, errs = drawn[label][start]
            summary = [record["per_count"][str(n)]["summary"][start][metric] for n in COUNTS]
            assert list(xs) == list(COUNTS)
            assert means == pytest.approx([100 * s["mean"] for s in summary])
            assert errs == pytest.approx([100 * s["std"] for s in summary])


@pytest.mark.parametrize("counts, message", [((), "at least one"), ((10, 1), "at least 2, got 1"),
                                             ((10, 2.5), "got 2.5"), ((10, 10), "distinct"), ((True,), "got True")])
def test_bad_counts_are_refused(counts: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_counts(counts)


def test_numpy_counts_are_counts() -> None:
    """labels_per_class takes numpy integers; the curve refused them."""
    assert check_counts(np.array([25, 10])) == [10, 25] and all(type(v) is int for v in check_counts(np.arange(2, 4)))


def test_counts_above_the_labelled_images_are_refused_before_any_run(tmp_path, cache, checkpoint) -> None:
    """Refused before anything is written: the datalists of the budgets drawn before the impossible one
    (``splits/n2_rep0.json``) were left behind, and the previous run's outputs removed."""
    protocol = curve_protocol("subtle", None, cache, COUNTS, per_class=6)  # 4 or 5 labelled images per class
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "label_efficiency.json").write_text("an earlier run's")
    with pytest.raises(ValueError, match=r"repeat 0 \(fold 0 of protocol 'subtle_lesions', classes \[.*\]\): class "
                                         r"\d has \d labelled images in the split's training and validation parts "
                                         r"\(its other images are in the test part\), fewer than 6 labels per class"):
        label_efficiency(protocol, tmp_path / "out", checkpoint, (2, 6), repeats=1, overrides=TINY)
    assert not list((tmp_path / "out").glob("n2/*"))  # nothing trained
    assert not (tmp_path / "out" / "splits").exists()  # nothing written
    assert (tmp_path / "out" / "label_efficiency.json").read_text() == "an earlier run's"  # nothing removed


@pytest.mark.parametrize("kwargs, message", [({"repeats": 6}, "repeats must be an integer in \\[1, 5\\]"),
                                             ({"overrides": {"linear_probe": "true"}}, "linear_probe must stay false"),
                                             ({"init_checkpoint": "/nonexistent.pt"}, "init checkpoint not found")])
def test_bad_settings_are_refused(tmp_path, cache, checkpoint, kwargs: dict, message: str) -> None:
    protocol = curve_protocol("subtle", None, cache, COUNTS, per_class=6)
    settings = {"init_checkpoint": checkpoint, "counts": COUNTS, "repeats": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        label_efficiency(protocol, tmp_path / "out", **settings)


@pytest.mark.parametrize("args, message", [
    (["--counts", "10,abc"], "--counts must be comma-separated whole numbers"),
    (["--counts", "10,1"], "at least 2, got 1"),
    (["--repeats", "two"], "--repeats must be an integer"),
    (["--protocol", "busbra-seg"], "segmentation protocol"),
    (["--repeats", "6"], "repeats must be an integer in [1, 5] (repeat r uses fold r of the 5 folds of protocol "
                         "'subtle'), got 6"),  # before the benchmark is generated: the cache stays empty
    (["--repeats", "4", "--protocol", "folder", "--root", ".", "--num_folds", "3"], "in [1, 3]"),
    # the runner's own settings in its own words: it has no --folds, and its runs are OUT/n<count>/<start>/rep<r>
    (["--fold", "3"], "--fold is set by the runner: repeat r uses fold r of the protocol; choose how many with "
                      "--repeats"),
    (["--output_dir", "x"], "go under OUT/n<count>/<start>/rep<r>/eval; choose OUT"),
    (["--ckpt_dir", "x"], "go under OUT/n<count>/<start>/rep<r>/models; choose OUT"),
])
def test_cli_user_errors_are_one_line_with_exit_code_2(tmp_path, checkpoint, capsys, args, message) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["label-efficiency", str(tmp_path / "out"), "--init_checkpoint", str(checkpoint),
              "--cache_dir", str(tmp_path / "cache"), *args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("counts, expected", [([2], 5), ([2, 4], 5), ([10, 100], 125)])
def test_generated_benchmark_default_size_holds_five_folds_and_the_largest_budget(counts, expected, monkeypatch):
    import monai_ext.apps.label_efficiency as module

    seen = {}
    monkeypatch.setattr(module, "protocol_by_name", lambda name, root, cache, **kw: seen.update(kw) or "protocol")
    assert curve_protocol("subtle", None, "cache", counts) == "protocol"
    assert seen["per_class"] == expected


def test_per_class_is_refused_for_a_dataset_it_does_not_size(tmp_path):
    """It was dropped in silence: the budgets were drawn from the dataset as it is."""
    with pytest.raises(ValueError, match="--per_class sizes the generated synthetic and subtle benchmark; protocol "
                                         "'folder' does not take it"):
        curve_protocol("folder", tmp_path, tmp_path / "cache", [2], per_class=500)


def test_a_per_class_too_small_for_five_folds_is_refused_before_generating(tmp_path):
    with pytest.raises(ValueError, match="per_class 4 is too small: .* need at least 5 images per class"):
        curve_protocol("subtle", None, tmp_path, [2], per_class=4)
    assert not any(tmp_path.iterdir())


def test_one_repeat_gives_no_interval_and_says_so_in_the_table() -> None:
    """``--repeats 1``: a single pair has no paired-t interval; the table printed ``[+nan, +nan]``."""
    from monai_ext.apps.comparison import paired_differences

    one = {start: {"macro_f1": [0.7 if start == "pretrained" else 0.6], "auc": [0.8], "balanced_accuracy": [0.7],
                   "accuracy": [0.7]} for start in le.STARTS}
    summary = {start: {m: {"folds": v, "mean": v[0], "std": 0.0} for m, v in one[start].items()}
               for start in le.STARTS}
    diffs = paired_differences(summary, "pretrained", "random")
    table = le.efficiency_table({"10": {"summary": summary, "paired_differences": diffs}}, "subtle", repeats=1)
    assert "| 10 | +10.0 [n/a] | +0.0 [n/a] | +0.0 [n/a] |" in table and "nan" not in table


@pytest.mark.parametrize("recorded, warned", [(True, [0]), (False, [])])
def test_a_pretrained_start_trained_on_a_repeats_test_images_is_warned_of(tmp_path, monkeypatch, caplog, recorded,
                                                                         warned) -> None:
    """A classifier fine-tuned on the test images of repeat 0, given as the pretrained start: its curve was scored
    on images it had seen, and its lead over the random start shown, without a word (cross-validate warned). An
    older checkpoint (no record of its images) passes silently."""
    from monai_ext.apps.crossval import SUMMARY_METRICS
    from monai_ext.data.downstream import Protocol
    from monai_ext.networks import build_classifier
    from monai_ext.networks.checkpoints import save_model_checkpoint

    (tmp_path / "data").mkdir()
    items = [{"image": str(tmp_path / "data" / f"{i}.png"), "label": i % 2, "id": str(i)} for i in range(12)]
    for item in items:
        cv2.imwrite(item["image"], np.full((8, 8), 10, np.uint8))
    config = {"arch": "vit_tiny_patch16", "image_size": 32, "in_channels": 1, "class_names": ["a", "b"],
              "datalist_file": str(tmp_path / "fold.json")}
    if recorded:
        config.update(datalist_sha256="0" * 64, trained_images=["data/0.png", "data/1.png", "data/5.png"])
    path = tmp_path / "model.pt"
    save_model_checkpoint(path, build_classifier("vit_tiny_patch16", 2, img_size=32, in_chans=1), "classifier",
                          config)
    protocol = Protocol("toy", ["a", "b"], [{"train": items[2:], "validation": [], "test": items[:2]},
                                            {"train": items[:10], "validation": [], "test": items[10:]}])
    report = {**{m: 0.5 for m in SUMMARY_METRICS}, "per_class": {"a": {"support": 1}, "b": {"support": 1}}}
    monkeypatch.setattr(le, "run_fold", lambda *args, **kwargs: report)  # the check, not the training, is tested
    monkeypatch.setattr(le, "plot_efficiency", lambda *args: None)
    with caplog.at_level("WARNING"):
        record = label_efficiency(protocol, tmp_path / "out", path, (2,), repeats=2, overrides={"image_size": 32})
    said = [r.getMessage() for r in caplog.records if str(path) in r.getMessage()]
    if warned:
        assert len(said) == 2, said
        assert said[0].startswith(f"2 of 2 image(s) of toy test fold 0 (start pretrained) are training or validation "
                                  f"images of {path}") and "e.g. 0.png, 1.png" in said[0]
        assert said[1].startswith(f"label-efficiency: the pretrained start {path} saw test images of repeat(s) 0 "
                                  "(counted above)") and "start from a checkpoint" in said[1]
        assert "Note: the pretrained start trained, was selected or pretrained on test images of repeat(s) 0" \
            in record["table"]
    else:
        assert said == [] and "Note:" not in record["table"]
    assert record["pretrained_trained_on_test"] == warned


def _toy_curve_protocol(folder: Path):
    """Two classes of 6 images each; fold 0 tests 2 of them and labels from the other 10 (5 per class)."""
    from monai_ext.data.downstream import Protocol

    folder.mkdir(exist_ok=True)
    items = [{"image": str(folder / f"{i}.png"), "label": i % 2, "id": str(i)} for i in range(12)]
    for item in items:
        cv2.imwrite(item["image"], np.full((8, 8), 10, np.uint8))
    return Protocol("toy", ["a", "b"], [{"train": items[2:], "validation": [], "test": items[:2]}])


def _finished_run(split_file, out, overrides=None, bundle=None, tracking=None) -> dict:
    """run_fold's stand-in for a finished run: a best model and a trainer checkpoint kept, a test report."""
    from monai_ext.apps.crossval import SUMMARY_METRICS

    (out / "models").mkdir(parents=True, exist_ok=True)
    (out / "models" / "model.pt").write_bytes(b"best model")
    (out / "models" / "checkpoint_iteration=4.pt").write_bytes(b"trainer")
    return {**{m: 0.5 for m in SUMMARY_METRICS}, "per_class": {"a": {"support": 1}, "b": {"support": 1}}}


@pytest.fixture
def fake_curve(tmp_path, monkeypatch):
    """label_efficiency on a toy protocol with run_fold replaced by :func:`_finished_run` (the settings checks and
    the training are not what is tested); returns ``run(settings, resume)`` and the run folders run_fold was given."""
    monkeypatch.setattr(le, "check_run_inputs", lambda *args, **kwargs: None)
    monkeypatch.setattr(le, "shared_architecture", lambda checkpoint, overrides: dict(overrides or {}))
    monkeypatch.setattr(le, "warn_of_start_trained_on_test_images", lambda *args: [])
    monkeypatch.setattr(le, "plot_efficiency", lambda *args: None)
    calls: list[Path] = []
    monkeypatch.setattr(le, "run_fold", lambda *args, **kw: calls.append(args[1]) or _finished_run(*args))
    for name, content in (("A.pt", b"A"), ("A2.pt", b"A"), ("B.pt", b"B")):
        (tmp_path / name).write_bytes(content)
    protocol = _toy_curve_protocol(tmp_path / "data")

    def run(settings: dict, resume: bool) -> dict:
        settings = dict(settings)
        checkpoint = tmp_path / settings.pop("checkpoint", "A.pt")
        data_seed = settings.pop("data_seed", 0)
        return label_efficiency(protocol, tmp_path / "out", checkpoint, (2,), repeats=1, data_seed=data_seed,
                                overrides={**settings, **({"resume": "true"} if resume else {})})

    return run, calls


@pytest.mark.parametrize("first, second, refused", [
    ({"checkpoint": "A.pt"}, {"checkpoint": "B.pt"}, "run n2/pretrained/rep0 was trained from start checkpoint"),
    ({}, {"data_seed": 3}, "run n2/pretrained/rep0's split changed since its checkpoint"),
    ({"epochs": 3}, {"epochs": 5}, "run n2/pretrained/rep0 was trained with --epochs 3 and this run has --epochs 5"),
    ({}, {}, None),
    ({"checkpoint": "A.pt"}, {"checkpoint": "A2.pt"}, None),  # the same weights under another name
    ({"num_workers": 0}, {"num_workers": 2}, None),  # how it runs, not what it computes
])
def test_a_resume_onto_runs_trained_otherwise_is_refused(fake_curve, tmp_path, first, second, refused) -> None:
    """--resume true kept each finished run's best model and tested it as this run's: a rerun from another pretrained
    checkpoint reported the first checkpoint's curve under the second's name (the bundle compares the datalist's
    path, which every rerun rewrites, not its images or the start); cross-validate refused it, label-efficiency did
    not."""
    run, calls = fake_curve
    run(first, resume=False)
    calls.clear()
    if refused is None:
        run(second, resume=True)
        assert len(calls) == 2  # both starts continued
        return
    with pytest.raises(ValueError, match="rerun without --resume true") as raised:
        run(second, resume=True)
    assert refused in str(raised.value)
    assert calls == [] and (tmp_path / "out" / "label_efficiency.json").is_file()  # refused before anything changed


def test_a_resume_does_not_continue_an_earlier_runs_checkpoints(fake_curve, tmp_path, monkeypatch) -> None:
    """A rerun without --resume, stopped before its first checkpoint, then resumed: the checkpoint left by the run
    before it (another start) was continued as this run's, unless the rerun listed it as an earlier run's."""
    from monai_ext.handlers.checkpointing import resumable_checkpoints

    run, calls = fake_curve
    run({"checkpoint": "A.pt"}, resume=False)

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C before the run saved anything

    monkeypatch.setattr(le, "run_fold", stopped)
    with pytest.raises(KeyboardInterrupt):
        run({"checkpoint": "B.pt"}, resume=False)
    seen: list[list[Path]] = []

    def resumed(split_file, out, *args, **kwargs):
        seen.append(resumable_checkpoints(out / "models"))
        return _finished_run(split_file, out)

    monkeypatch.setattr(le, "run_fold", resumed)
    run({"checkpoint": "B.pt"}, resume=True)
    assert seen[0] == []  # the pretrained run of checkpoint A's trainer state is not this run's to continue


@pytest.mark.parametrize("support, shown", [({"a": 2, "b": 0}, "n/a (class 'b' absent)"), ({"a": 1, "b": 1}, "0.6667")])
def test_the_console_line_scores_a_repeat_as_the_table_counts_it(fake_curve, monkeypatch, capsys, support,
                                                                shown) -> None:
    """A test part without a class: the table says its macro-F1 is undefined there (n/a), the console line printed
    the report's average over the other classes as the repeat's score."""
    from monai_ext.apps.crossval import SUMMARY_METRICS

    run, _ = fake_curve
    report = {**{m: 2 / 3 for m in SUMMARY_METRICS},
              "per_class": {name: {"support": count} for name, count in support.items()}}
    monkeypatch.setattr(le, "run_fold", lambda *args, **kwargs: report)
    run({}, resume=False)
    assert f"2 labels per class, pretrained, repeat 0: test macro-F1 {shown}\n" in capsys.readouterr().out


def _refused_batch_size() -> None:
    from monai_ext.engines.optim import scaled_lr

    scaled_lr(1e-3, 0)  # a user's mistake: validation refuses it, naming the value


def _device_fault() -> None:
    raise RuntimeError("CUDA error: device-side assert")  # a fault: its type is kept, its traceback shown by the CLI


@pytest.mark.parametrize("fail, said", [
    (_refused_batch_size, "need base_lr > 0 and whole numbers >= 1 for ['accumulation_steps', 'batch_size', "
                          "'world_size'], got 0.001 and {'batch_size': 0, 'accumulation_steps': 1, 'world_size': 1}"),
    (_device_fault, "RuntimeError: CUDA error: device-side assert"),
])
def test_a_failing_run_names_itself_and_what_is_kept(fake_curve, monkeypatch, fail, said) -> None:
    """A run that failed hours into a curve ended it with a bare traceback: cross-validate names the fold, what is
    done and kept and that --resume true continues; label-efficiency now says the same of its runs."""
    from monai_ext.apps.crossval import FoldFailed

    run, _ = fake_curve
    finished: list[Path] = []

    def second_fails(split_file, out, *args, **kwargs):
        if finished:
            fail()
        finished.append(out)
        return _finished_run(split_file, out)

    monkeypatch.setattr(le, "run_fold", second_fails)
    with pytest.raises(FoldFailed) as raised:
        run({}, resume=False)
    assert str(raised.value) == (f"run n2/random/rep0 failed: {said}; done and kept: run n2/pretrained/rep0; once the "
                                 "cause is dealt with, rerun with --resume true to continue")
    assert isinstance(raised.value.__cause__, (ValueError, RuntimeError))


def test_a_stopped_curve_says_what_is_kept_and_how_to_go_on(fake_curve, monkeypatch, capsys) -> None:
    """SIGTERM of a queue's time limit in the first run: the stop still ends the curve, with one line saying how to
    go on."""
    from monai_ext.io.signals import StopSignal

    run, _ = fake_curve

    def stopped(*args, **kwargs):
        raise StopSignal(15)

    monkeypatch.setattr(le, "run_fold", stopped)
    with pytest.raises(StopSignal):
        run({}, resume=False)
    assert capsys.readouterr().err == ("label-efficiency stopped by SIGTERM in run n2/pretrained/rep0; no run finished "
                                       "yet; rerun the same command with --resume true to continue\n")
