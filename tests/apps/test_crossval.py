"""The cross-validation runner's own rules, without training: reused results folders, failed runs' MLflow parent,
settings checked before any fold, the options a dataset protocol takes (bundle runs are tested in tests/bundles)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monai_ext.apps import crossval
from monai_ext.apps.cv_tracking import PARENT_RUN_RECORD
from monai_ext.data.downstream import Protocol
from monai_ext.io.signals import StopSignal


def fake_bundle_run(config_file, tracking=None, **settings) -> None:
    """monai.bundle.run's stand-in: training writes nothing, evaluation writes a test report."""
    if isinstance(config_file, list):
        out = Path(settings["output_dir"])
        out.mkdir(parents=True, exist_ok=True)
        (out / "test_report.json").write_text(json.dumps({"macro_f1": 0.5, "auc": 0.6, "balanced_accuracy": 0.5}))


def model_seen_by_each_run(monkeypatch, look) -> list:
    """Stand in for monai.bundle.run (:func:`fake_bundle_run`); returns the list of ``look(ckpt_dir/model.pt)`` taken
    as each run starts."""
    import monai.bundle

    seen = []

    def run(config_file, tracking=None, **settings):
        seen.append(look(Path(settings["ckpt_dir"]) / "model.pt"))
        fake_bundle_run(config_file, tracking, **settings)

    monkeypatch.setattr(monai.bundle, "run", run)
    return seen


def test_a_reused_folder_does_not_lend_an_older_runs_knn_report_or_model(tmp_path, monkeypatch) -> None:
    """A linear-probe run left probe_report.json: a fine-tuning run into the same folder must not report its kNN.
    A run that validated no epoch wrote no model.pt: the earlier run's was tested and reported as this one's."""
    seen = model_seen_by_each_run(monkeypatch, lambda model: model.exists())
    (tmp_path / "eval").mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "eval" / "probe_report.json").write_text(json.dumps({"knn_test": {"macro_f1": 0.9, "auc": 0.95}}))
    (tmp_path / "models" / "model.pt").write_bytes(b"an earlier run's best model")
    report = crossval.run_fold(tmp_path / "split.json", tmp_path, {})
    assert report == {"macro_f1": 0.5, "auc": 0.6, "balanced_accuracy": 0.5}
    assert not (tmp_path / "eval" / "probe_report.json").exists()
    assert seen == [False, False]  # training started without it, and so did the test of what training wrote


@pytest.mark.parametrize("resume", [True, "true", "yes"])
def test_a_resumed_fold_keeps_its_best_model(tmp_path, monkeypatch, resume) -> None:
    """--resume true continues a crashed multi-fold run: a finished fold's best model is the one to test (it was
    deleted first, and every finished fold then failed at its evaluation)."""
    seen = model_seen_by_each_run(monkeypatch, lambda model: model.read_bytes())
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.pt").write_bytes(b"this fold's best so far")
    crossval.run_fold(tmp_path / "split.json", tmp_path, {"resume": resume})
    assert seen == [b"this fold's best so far"] * 2


def test_a_rerun_removes_the_previous_summary_before_its_first_fold(tmp_path, monkeypatch, caplog) -> None:
    """A rerun stopped after fold 1 left the old cv_summary.json (another protocol, other folds) beside the new
    run's splits and reports, describing neither."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(crossval, "check_run_inputs", lambda *args: None)
    monkeypatch.setattr(crossval, "run_fold", interrupted)
    out = tmp_path / "cv"
    out.mkdir()
    for name in ("cv_summary.json", "cv_table.md"):
        (out / name).write_text("an earlier run's")
    protocol = Protocol("toy", ["a", "b"], [{"train": [], "validation": [], "test": []}])
    with caplog.at_level("WARNING"), pytest.raises(KeyboardInterrupt):
        crossval.cross_validate(protocol, out, ["random"], None)
    assert not (out / "cv_summary.json").exists() and not (out / "cv_table.md").exists()
    assert "removed the previous run's cv_summary.json, cv_table.md" in caplog.text


@pytest.mark.parametrize("overrides, tracking, message", [
    ({"linear_probe": "maybe"}, None, r"--linear_probe must be true or false \(or yes/no, 1/0\), got 'maybe'"),
    ({"resume": "sure"}, None, r"--resume must be true or false"),
    ({}, "banana.yaml", r"--tracking 'banana.yaml' is no file; give a tracking settings file"),
])
def test_a_typo_is_refused_before_the_previous_results_are_touched(overrides, tracking, message, tmp_path,
                                                                     monkeypatch) -> None:
    """``--linear_probe maybe`` and a missing ``--tracking`` file were found by the first fold's bundle run, after
    the previous summary was removed (and, tracked, a FAILED parent run written)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(crossval, "ParentRun", lambda *args, **kwargs: pytest.fail("a parent run was started"))
    out = tmp_path / "cv"
    out.mkdir()
    for name in ("cv_summary.json", "cv_table.md"):
        (out / name).write_text("an earlier run's")
    protocol = Protocol("toy", ["a", "b"], [{"train": [], "validation": [], "test": []}])
    with pytest.raises(ValueError, match=message):
        crossval.cross_validate(protocol, out, ["random"], None, None, overrides, tracking)
    assert (out / "cv_summary.json").read_text() == "an earlier run's" and (out / "cv_table.md").exists()


@pytest.mark.parametrize("overrides, tracking", [
    ({"linear_probe": "yes", "resume": 0, "compile": False}, "mlflow"),
    ({}, str(Path(__file__).parents[2] / "bundles/usf_mae_classify/configs/mlflow_tracking.yaml")),
])
def test_good_flags_and_tracking_settings_pass_the_check(overrides, tracking) -> None:
    crossval.check_run_inputs(["random"], None, overrides, "classify", tracking)


@pytest.mark.parametrize("key", sorted(crossval.RUNNER_SETTINGS))
def test_settings_the_runner_sets_are_refused_before_any_checkpoint_is_read(key, tmp_path) -> None:
    with pytest.raises(ValueError, match=f"--{key} is set by the runner: "):
        crossval.check_run_inputs(["pretrained"], tmp_path / "missing.pt", {key: "x"})


@pytest.mark.parametrize("key", ["probe#bogus", "probe#c", "probe::c", "recipes#x"])
def test_a_misspelt_nested_setting_is_refused_before_any_run(key) -> None:
    """Only the part before the first ``#`` was checked: ``--probe#c 0.1`` ran with the default sweep."""
    with pytest.raises(ValueError, match=f"usf_mae_classify has no setting --{key} "):
        crossval.check_run_inputs(["random"], None, {key: 0.1})


@pytest.mark.parametrize("key", ["probe#cs", "probe#ks", "probe#class_weight", "checkpointer#n_saved",
                                 "optimizer#betas", "resume"])
def test_the_documented_nested_settings_are_accepted(key) -> None:
    crossval.check_run_inputs(["random"], None, {key: 1})


class FakeParent:
    """ParentRun's stand-in: records how it ended."""

    ended: list[str] = []

    def __init__(self, name, out, tracking_uri, resume=False) -> None:
        self.uri, self.experiment = "sqlite:///unused.db", f"cv_{name}"

    def reachable(self) -> bool:
        return True

    def finish(self, summary, artifacts) -> None:
        FakeParent.ended.append("FINISHED")

    def fail(self, stopped: bool = False) -> None:
        FakeParent.ended.append("KILLED" if stopped else "FAILED")


@pytest.mark.parametrize("error, status", [(RuntimeError("a fold's training failed"), "FAILED"),
                                           (KeyboardInterrupt(), "KILLED"), (StopSignal(15), "KILLED")])
def test_a_failed_fold_closes_the_parent_run_as_failed(tmp_path, monkeypatch, error, status) -> None:
    def failing_fold(*args, **kwargs):
        raise error

    FakeParent.ended = []
    monkeypatch.setattr(crossval, "ParentRun", FakeParent)
    monkeypatch.setattr(crossval, "check_run_inputs", lambda *args: None)
    monkeypatch.setattr(crossval, "run_fold", failing_fold)
    protocol = Protocol("toy", ["a", "b"], [{"train": [], "validation": [], "test": []}])
    with pytest.raises(type(error)):
        crossval.cross_validate(protocol, tmp_path, ["random"], None, tracking="mlflow_tracking.yaml")
    assert FakeParent.ended == [status]  # stopped by the user: KILLED, as its fold runs end


@pytest.mark.parametrize("key, value", [("epochs", 0), ("batch_size", 0), ("batch_size", -2), ("seed", 1.5),
                                        ("seed", -1), ("num_workers", -1), ("epochs", "ten"), ("epochs", True)])
def test_count_settings_are_refused_before_any_fold(key, value) -> None:
    with pytest.raises(ValueError, match=rf"--{key} must be a whole number of at least \d, got {value!r}"):
        crossval.check_counts({key: value})


def test_count_settings_in_range_and_config_expressions_pass() -> None:
    crossval.check_counts({"epochs": 1, "batch_size": 8, "seed": 0, "num_workers": 0, "image_size": 0.5})
    crossval.check_counts({"epochs": "$@max_epochs * 2", "batch_size": "@train_batch"})


@pytest.mark.parametrize("name, num_folds, seed, expected", [
    ("folder", 3, 7, {"seed": 7, "folds": 3}),
    ("csv", None, 2, {"seed": 2}),
    ("busbra", 10, 2, {"folds": 10}),  # the official fold files: no seed
    ("mmotu", None, 4, {"seed": 4}),
    ("image-mask-folders", 4, 0, {"seed": 0, "folds": 4}),
])
def test_dataset_options_pass_what_the_protocol_takes(name, num_folds, seed, expected) -> None:
    assert crossval.dataset_options(name, num_folds, seed) == expected


@pytest.mark.parametrize("name", ["mmotu", "gist514", "mmotu-seg"])
def test_num_folds_for_a_protocol_with_fixed_splits_is_refused(name) -> None:
    with pytest.raises(ValueError, match=rf"protocol '{name}' has fixed splits: --num_folds does not apply"):
        crossval.dataset_options(name, 3)


def test_a_file_missing_in_a_later_fold_is_refused_before_the_first_fold_trains(tmp_path, monkeypatch) -> None:
    trained = []
    monkeypatch.setattr(crossval, "check_run_inputs", lambda *args: None)
    monkeypatch.setattr(crossval, "run_fold", lambda *args, **kwargs: trained.append(args))
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"png")
    good = {"train": [{"image": str(tmp_path / "a.png"), "label": 0}], "validation": [],
            "test": [{"image": str(tmp_path / "b.png"), "label": 1}]}
    missing = {**good, "test": [{"image": str(tmp_path / "gone.png"), "label": 1}]}
    protocol = Protocol("toy", ["a", "b"], [good, missing])
    with pytest.raises(ValueError, match="fold1.json': 1 file\\(s\\) not found .*gone.png"):
        crossval.cross_validate(protocol, tmp_path / "cv", ["random"], None)
    assert trained == [] and not (tmp_path / "cv" / "splits").exists()


def test_images_holding_several_frames_are_named_once_not_for_every_fold(tmp_path, monkeypatch, caplog) -> None:
    import numpy as np

    from monai_ext.io.writers import write_dicom_frames

    def stop(*args, **kwargs):
        raise RuntimeError("stop before training")

    monkeypatch.setattr(crossval, "check_run_inputs", lambda *args: None)
    monkeypatch.setattr(crossval, "run_fold", stop)
    loop = str(write_dicom_frames(np.full((3, 8, 8), 80, np.uint8), tmp_path / "loop.dcm"))
    (tmp_path / "b.png").write_bytes(b"png")
    still = str(tmp_path / "b.png")
    folds = [{"train": [{"image": a, "label": 0}], "validation": [], "test": [{"image": b, "label": 1}]}
             for a, b in ((loop, still), (still, loop))]
    with caplog.at_level("WARNING", logger="monai_ext.data.datalists"), pytest.raises(RuntimeError, match="stop"):
        crossval.cross_validate(Protocol("toy", ["a", "b"], folds), tmp_path / "cv", ["random"], None)
    said = [r.getMessage() for r in caplog.records if "several frames" in r.getMessage()]
    assert len(said) == 1 and "train[0] 'loop.dcm': 3 frames" in said[0], said


def test_every_start_builds_the_architecture_the_pretrained_file_records(tmp_path) -> None:
    """With the train configs following ``--init_checkpoint``'s record, the pretrained start of a ViT-Tiny gray file
    would have been compared with a random ViT-B 224-px 3-channel start: every start now shares the file's
    architecture, and what the command line gives still wins."""
    from monai_ext.networks import build_mae
    from monai_ext.networks.checkpoints import save_model_checkpoint

    tiny = "mae_vit_tiny_patch16_dec128d2b"
    save_model_checkpoint(tmp_path / "model.pt", build_mae(tiny, img_size=64, in_chans=1), "mae",
                          {"arch": tiny, "image_size": 64})
    shared = crossval.shared_architecture(str(tmp_path / "model.pt"), {"epochs": 1})
    assert shared == {"arch": tiny, "image_size": 64, "in_channels": 1, "epochs": 1}
    assert crossval.shared_architecture(str(tmp_path / "model.pt"), {"image_size": 32})["image_size"] == 32
    assert crossval.shared_architecture(None, {"epochs": 1}) == {"epochs": 1}


@pytest.mark.parametrize("undefined, note", [((0, 1), "(1/30 undefined)"), ((9, 11), "(20/30 undefined)"),
                                             ((0, 0), "(0/30 undefined)")])
def test_hd95_shows_its_undefined_pairs_and_cv_summary_keeps_them_per_fold(tmp_path, monkeypatch, undefined,
                                                                           note) -> None:
    """HD95 averages over the pairs with a distance: a start that misses lesions has fewer of them and looked better
    in the table, which compared its mean with another start's over other images without a word."""
    reports = iter({"mean_dice": 0.5, "mean_iou": 0.4, "mean_hd95": 10.0 + k, "hd95_undefined": u, "n": 15,
                    "class_names": ["background", "lesion"]} for k, u in enumerate(undefined))
    monkeypatch.setattr(crossval, "check_run_inputs", lambda *args: None)
    monkeypatch.setattr(crossval, "run_fold", lambda *args, **kwargs: next(reports))
    monkeypatch.setattr(crossval, "write_split", lambda *args: tmp_path / "split.json")
    monkeypatch.setattr(crossval, "check_split", lambda *args: None)
    monkeypatch.setattr(crossval, "locate_bundle_root", lambda name: tmp_path)
    protocol = Protocol("toy", ["background", "lesion"], [{"train": [], "validation": [], "test": []}] * 2)
    record = crossval.cross_validate(protocol, tmp_path / "cv", ["random"], None, task="segment")
    row = next(line for line in record["table"].splitlines() if line.startswith("| random"))
    assert row.endswith(f"| 10.5 ± 0.7 {note} |"), row
    stats = json.loads((tmp_path / "cv" / "cv_summary.json").read_text())["summary"]["random"]["mean_hd95"]
    assert stats["hd95_undefined"] == list(undefined) and stats["pairs"] == [15, 15]


def tracked_fold(split_file, out, overrides, bundle=None, tracking=None) -> dict:
    """run_fold's stand-in that tracks as a bundle run does (the trainer's handler starts or continues the run
    recorded in ``models``, and a checkpoint is saved) without training; its test report is written."""
    from ignite.engine import Engine

    from monai_ext.apps.bundle_support import as_flag
    from monai_ext.handlers.checkpointing import MLFLOW_RUN_RECORD
    from monai_ext.handlers.tracking import ProjectMLFlowHandler, RunHolder
    from monai_ext.io.atomic import atomic_write_text

    if tracking:
        holder = RunHolder(record_file=str(out / "models" / MLFLOW_RUN_RECORD),
                           resume=as_flag(overrides.get("resume", False), "resume"))
        handler = ProjectMLFlowHandler(run_holder=holder, tracking_uri=overrides["tracking_uri"],
                                       experiment_name=overrides["experiment_name"], run_name=overrides["run_name"],
                                       record_run=True)
        handler.start(Engine(lambda engine, batch: None))
        atomic_write_text(out / "models" / "checkpoint_iteration=4.pt", "weights")  # a new file, as every save
        handler.close()
    report = {"macro_f1": 0.5, "accuracy": 0.75, "balanced_accuracy": 0.5, "auc": None, "n": 4, "per_class": {}}
    atomic_write_text(out / "eval" / "test_report.json", json.dumps(report))
    return report


def _cross_validate(out: Path, uri: str, **overrides) -> dict:
    protocol = Protocol("toy", ["a", "b"], [{"train": [], "validation": [], "test": []}] * 2)
    return crossval.cross_validate(protocol, out, ["random"], None, overrides=overrides,
                                   tracking="mlflow_tracking.yaml", tracking_uri=uri)


def _runs(uri: str) -> tuple[list, list]:
    """(parent runs, fold runs) of the toy protocol's experiment, oldest first."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("cv_toy").experiment_id],
                              order_by=["attributes.start_time ASC"])
    return ([r for r in runs if "mlflow.parentRunId" not in r.data.tags],
            [r for r in runs if "mlflow.parentRunId" in r.data.tags])


@pytest.fixture
def fake_folds(tmp_path, monkeypatch):
    """Cross-validation without training: folds tracked by :func:`tracked_fold`, splits not checked."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_PARENT_RUN_ID", raising=False)
    monkeypatch.setattr(crossval, "check_run_inputs", lambda *args: None)
    monkeypatch.setattr(crossval, "write_split", lambda *args: tmp_path / "split.json")
    monkeypatch.setattr(crossval, "check_split", lambda *args: None)
    monkeypatch.setattr(crossval, "run_fold", tracked_fold)


@pytest.mark.parametrize("second, parents", [
    ("resume", 1),             # the recorded parent is reopened and summarises the continued folds
    ("parent_deleted", 2),     # not in the store any more: a new one, which the continued folds join
    ("rerun", 2),              # no --resume: a new cross-validation, new parent and fold runs
])
def test_a_resumed_cross_validation_keeps_its_summary_with_its_fold_runs(second, parents, fake_folds, tmp_path,
                                                                         caplog) -> None:
    """Each --resume true made a new parent run without children; the continued folds stayed under the first
    parent, whose mean/std no longer described them."""
    from mlflow.tracking import MlflowClient

    out, uri = tmp_path / "cv", f"sqlite:///{tmp_path}/mlruns.db"
    _cross_validate(out, uri)
    first = json.loads((out / PARENT_RUN_RECORD).read_text())["run_id"]
    if second == "parent_deleted":
        MlflowClient(uri).delete_run(first)
    with caplog.at_level("INFO", logger="monai_ext"):
        _cross_validate(out, uri, **({} if second == "rerun" else {"resume": True}))
    parent_runs, fold_runs = _runs(uri)
    current = json.loads((out / PARENT_RUN_RECORD).read_text())["run_id"]
    assert len(parent_runs) + (second == "parent_deleted") == parents and parent_runs[-1].info.run_id == current
    assert (current == first) is (second == "resume")
    assert ("is not in this tracking store" in caplog.text) is (second == "parent_deleted")
    children = [r for r in fold_runs if r.data.tags["mlflow.parentRunId"] == current]
    assert sorted(r.info.run_name for r in children) == ["random_fold0", "random_fold1"]
    assert parent_runs[-1].info.status == "FINISHED" and "random_macro_f1_mean" in parent_runs[-1].data.metrics
    assert all(r.info.status == "FINISHED" for r in children)
    assert len(fold_runs) == (4 if second == "rerun" else 2)  # a resume continues the fold runs


def test_a_fold_run_gets_its_test_scores_and_report(fake_folds, tmp_path) -> None:
    """The test is an untracked bundle run: the fold run held only the validation figures."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    _cross_validate(tmp_path / "cv", uri)
    client = MlflowClient(uri)
    for run in _runs(uri)[1]:
        # the report's numbers; an undefined one (null) and its tables are not scores
        assert run.data.metrics == {"test_macro_f1": 0.5, "test_accuracy": 0.75, "test_balanced_accuracy": 0.5,
                                    "test_n": 4.0}
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["test_report.json"]


@pytest.mark.slow
def test_a_server_lost_mid_cross_validation_leaves_the_later_folds_untracked(fake_folds, tmp_path, monkeypatch,
                                                                             caplog) -> None:
    """The next fold's handler refused the unreachable server and ended the whole cross-validation, and closing the
    parent run waited out MLflow's retries and raised its error: now one warning, the later folds train untracked,
    the summary is written, and no call waits on the server."""
    from tests.handlers.test_tracking_lost_server import live_mlflow_server, record_requests, within_limits

    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    stopped, tracked = [False], []
    after_stop = record_requests(monkeypatch, stopped)
    (tmp_path / "server").mkdir()
    with live_mlflow_server(tmp_path / "server") as server:

        def fold_then_stop(split_file, out, overrides, bundle=None, tracking=None) -> dict:
            tracked.append(tracking is not None)
            report = tracked_fold(split_file, out, overrides, bundle, tracking)
            if not stopped[0]:
                server.stop()
                stopped[0] = True
            return report

        monkeypatch.setattr(crossval, "run_fold", fold_then_stop)
        with caplog.at_level("WARNING"):
            record = _cross_validate(tmp_path / "cv", server.url)
    assert tracked == [True, False] and record["summary"]["random"]["macro_f1"]["mean"] == 0.5
    assert (tmp_path / "cv" / "cv_summary.json").is_file()
    assert caplog.text.count("the cross-validation goes on without tracking") == 1
    assert len(after_stop) == 1 and all(within_limits(r) for r in after_stop), after_stop


def _report(macro_f1: float, supports: dict[str, int]) -> dict:
    return {"macro_f1": macro_f1, "accuracy": 0.5, "balanced_accuracy": 0.5, "auc": 0.6,
            "per_class": {name: {"support": n} for name, n in supports.items()}}


@pytest.mark.parametrize("supports, said", [
    ({"benign": 4, "malignant": 0}, "test macro_f1 n/a (class 'malignant' absent)"),
    ({"benign": 0, "malignant": 0, "normal": 3}, "test macro_f1 n/a (classes 'benign', 'malignant' absent)"),
    ({"benign": 4, "malignant": 2}, "test macro_f1 0.0000"),
])
def test_a_folds_line_says_a_class_average_is_undefined_where_its_test_part_lacks_a_class(tmp_path, monkeypatch,
                                                                                          capsys, supports,
                                                                                          said) -> None:
    """The fold's line printed "test macro_f1 0.0000" where the summary counted the fold's macro-F1 as undefined."""
    reports = iter([_report(0.0, supports)])
    monkeypatch.setattr(crossval, "check_run_inputs", lambda *args: None)
    monkeypatch.setattr(crossval, "run_fold", lambda *args, **kwargs: next(reports))
    monkeypatch.setattr(crossval, "write_split", lambda *args: tmp_path / "split.json")
    monkeypatch.setattr(crossval, "check_split", lambda *args: None)
    protocol = Protocol("toy", list(supports), [{"train": [], "validation": [], "test": []}])
    crossval.cross_validate(protocol, tmp_path / "cv", ["random"], None)
    assert f"[cross-validation] toy fold 0 random: {said}" in capsys.readouterr().out


@pytest.mark.parametrize("recorded, warned", [(True, [0]), (False, [])])
def test_a_start_checkpoint_trained_on_a_folds_test_images_is_warned_of(tmp_path, caplog, recorded, warned) -> None:
    """``ours=models/model.pt`` fine-tuned on a datalist of the same images: folds whose test part it trained on
    were scored as held out without a word. An older checkpoint (no record of its images) passes silently."""
    from monai_ext.networks import build_classifier
    from monai_ext.networks.checkpoints import save_model_checkpoint

    items = [{"image": str(tmp_path / "data" / f"{i}.png"), "label": i % 2} for i in range(8)]
    (tmp_path / "data").mkdir()
    for item in items:
        Path(item["image"]).write_bytes(b"")
    config = {"arch": "vit_tiny_patch16", "class_names": ["a", "b"], "datalist_file": str(tmp_path / "fold.json")}
    if recorded:
        config.update(datalist_sha256="0" * 64, trained_images=["data/0.png", "data/1.png", "data/2.png"])
    save_model_checkpoint(tmp_path / "model.pt", build_classifier("vit_tiny_patch16", 2, img_size=32), "classifier",
                          config)
    protocol = Protocol("toy", ["a", "b"], [{"train": items[2:], "validation": [], "test": items[:2]},
                                            {"train": items[:6], "validation": [], "test": items[6:]}])
    with caplog.at_level("WARNING"):
        found = crossval.warn_of_starts_trained_on_test_images(
            ["random", f"ours={tmp_path / 'model.pt'}"], None, protocol, [0, 1])
    assert found == ({"ours": warned} if warned else {})
    said = [r.getMessage() for r in caplog.records if "training or validation images" in r.getMessage()]
    if warned:
        assert len(said) == 1 and said[0].startswith("2 of 2 image(s) of toy test fold 0 (start ours) are training "
                                                     f"or validation images of {tmp_path / 'model.pt'}"), said
        assert "e.g. 0.png, 1.png" in said[0]
    else:
        assert said == []


def _mae_pretrained_on(path: Path, dataset_dir: Path | None) -> Path:
    """A tiny MAE checkpoint whose record says it was pretrained on ``dataset_dir`` (None: the synthetic default)."""
    from monai_ext.networks import build_mae
    from monai_ext.networks.checkpoints import save_model_checkpoint

    save_model_checkpoint(path, build_mae("mae_vit_tiny_patch16_dec128d2b", img_size=32, depth=1), "mae",
                          {"arch": "mae_vit_tiny_patch16_dec128d2b", "image_size": 32,
                           "dataset_dir": None if dataset_dir is None else str(dataset_dir)})
    return path


@pytest.mark.parametrize("pretrained_on, warned", [("archive", [0]), ("elsewhere", []), (None, [])])
def test_an_mae_pretrained_on_a_folder_holding_a_folds_test_images_is_warned_of(tmp_path, caplog, pretrained_on,
                                                                                warned) -> None:
    """The MAE start of a comparison pretrained (unlabelled) on a folder that holds fold 0's test images: the encoder
    saw them, yet its lead over the random start was reported as on unseen images without a word. The pretraining
    record names its folder; a folder elsewhere and the synthetic default pass silently."""
    import cv2
    import numpy as np

    for name in ("archive/site/a.png", "archive/site/b.jpg", "archive/site/notes.txt", "held/c.png", "elsewhere/d.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / name), np.zeros((8, 8), np.uint8)) if name.endswith(("png", "jpg")) else \
            (tmp_path / name).write_text("x")
    items = [{"image": str(tmp_path / name), "label": i % 2}
             for i, name in enumerate(["archive/site/a.png", "archive/site/b.jpg", "held/c.png", "archive/site/notes.txt"])]
    protocol = Protocol("toy", ["a", "b"], [{"train": items[2:], "validation": [], "test": items[:2]},
                                            {"train": items[:2], "validation": [], "test": items[2:]}])
    mae = _mae_pretrained_on(tmp_path / "mae.pt", None if pretrained_on is None else tmp_path / pretrained_on)
    with caplog.at_level("WARNING"):
        found = crossval.warn_of_starts_trained_on_test_images(["random", "pretrained"], str(mae), protocol, [0, 1])
    assert found == ({"pretrained": warned} if warned else {})
    said = [r.getMessage() for r in caplog.records if "pretrained on by" in r.getMessage()]
    if warned:  # fold 1's test part: an image outside the folder and a file pretraining does not read
        assert len(said) == 1 and said[0].startswith(f"2 of 2 image(s) of toy test fold 0 (start pretrained) were "
                                                     f"pretrained on by {mae}"), said
        assert "e.g. a.png, b.jpg" in said[0] and "--evaluation" in said[0]
    else:
        assert said == []


@pytest.mark.parametrize("evaluation", [False, True])
def test_an_mae_pretrained_on_a_corpus_is_warned_of_the_test_images_the_corpus_kept(tmp_path, caplog,
                                                                                   evaluation) -> None:
    """A prepare-corpus cache as the MAE's dataset_dir: test images among its kept frames are warned of; with
    --evaluation naming the test folder the corpus kept them out, and nothing is said."""
    import cv2

    from monai_ext.data.corpus import CorpusOptions, prepare_corpus
    from tests.data.corpus_builder import us_image

    names = ["root/site/a.png", "root/site/b.png", "root/site/c.png"]
    for i, name in enumerate(names):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / name), us_image(96, seed=i))
    (tmp_path / "test").mkdir()
    cv2.imwrite(str(tmp_path / "test" / "a.png"), us_image(96, seed=0))  # the test folder's copy of a.png
    prepare_corpus(tmp_path / "root", tmp_path / "cache", CorpusOptions(size=64),
                   evaluation_folders=[tmp_path / "test"] if evaluation else [])
    items = [{"image": str(tmp_path / name), "label": i % 2} for i, name in enumerate(names)]
    protocol = Protocol("toy", ["a", "b"], [{"train": items[1:], "validation": [], "test": items[:1]}])
    mae = _mae_pretrained_on(tmp_path / "mae.pt", tmp_path / "cache")
    with caplog.at_level("WARNING"):
        found = crossval.warn_of_starts_trained_on_test_images(["pretrained"], str(mae), protocol, [0])
    assert found == ({} if evaluation else {"pretrained": [0]})
    said = [r.getMessage() for r in caplog.records if "pretrained on by" in r.getMessage()]
    assert len(said) == (0 if evaluation else 1), said


def test_a_corpus_source_of_many_kept_frames_is_resolved_once(tmp_path, monkeypatch) -> None:
    """pretrained_on took the real path of a cine loop's file once per kept frame: 8 of 12 s for a cache of a
    million frames (1000 chunks of ten 100-frame loops), at every fold of every start."""
    import json

    import numpy as np

    from monai_ext.apps import bundle_support

    cache = tmp_path / "cache"
    (cache / "chunks").mkdir(parents=True)
    records = [{"source": f"site/loop{f}.avi", "frame": i} for f in range(2) for i in range(50)]
    (cache / "chunks" / "chunk_000000.json").write_text(json.dumps({"files": [], "records": records}))
    np.save(cache / "kept.npy", np.asarray([(0, r) for r in range(len(records))], dtype=np.int32))
    (cache / "plan.json").write_text(json.dumps({"root": str(tmp_path / "root")}))
    resolved = []
    real = bundle_support.os.path.realpath
    monkeypatch.setattr(bundle_support.os.path, "realpath", lambda path: resolved.append(path) or real(path))
    test = [str(tmp_path / "root" / "site" / "loop1.avi"), str(tmp_path / "other.png")]
    assert bundle_support.pretrained_on({"dataset_dir": str(cache)}, test) == test[:1]
    assert len(resolved) == 1 + 2 + len(test), len(resolved)  # the cache, the two loops, the images looked for


@pytest.mark.parametrize("task", ["classify", "segment"])
def test_the_pretrained_start_without_a_checkpoint_says_how_to_go_on(task) -> None:
    """cross-validate's default --methods start with 'pretrained': without --init_checkpoint the refusal named the
    missing checkpoint only, not the comparison that needs none."""
    with pytest.raises(ValueError, match=r"needs an init checkpoint \(--init_checkpoint FILE\).*--methods random,cnn"):
        crossval.method_overrides("pretrained", None, task)


def _toy_protocol(tmp_path: Path, label: int = 1) -> Protocol:
    """Two folds over three image files (existence is all a split's check reads); ``label`` relabels one image."""
    files = []
    for i in range(3):
        files.append(tmp_path / "images" / f"{i}.png")
        files[-1].parent.mkdir(exist_ok=True)
        files[-1].write_bytes(b"image")
    items = [{"image": str(f), "label": lab} for f, lab in zip(files, (0, label, 1))]
    split = {"train": items[:1], "validation": items[1:2], "test": items[2:]}
    return Protocol("toy", ["a", "b"], [split, split])


def finishing_fold(split_file, out, overrides=None, bundle=None, tracking=None) -> dict:
    """run_fold's stand-in for a finished fold: a best model and a trainer checkpoint kept, a test report."""
    (out / "models").mkdir(parents=True, exist_ok=True)
    (out / "models" / "model.pt").write_bytes(b"best model")
    (out / "models" / "checkpoint_iteration=4.pt").write_bytes(b"trainer")
    return {"macro_f1": 0.5, "accuracy": 0.75, "balanced_accuracy": 0.5, "auc": 0.6, "n": 1, "skipped": []}


@pytest.mark.parametrize("first, second, refused", [
    ({"methods": ["ours=A.pt"]}, {"methods": ["ours=B.pt"]}, "was trained from start checkpoint"),
    ({"linear_probe": "true"}, {}, "--linear_probe True and this run has --linear_probe False"),
    ({"epochs": 3}, {"epochs": 5}, "--epochs 3 and this run has --epochs 5"),
    ({}, {"base_lr": 0.01}, "--base_lr 0.001 and this run has --base_lr 0.01"),
    ({}, {"label_smoothing": 0.0}, "--label_smoothing 0.1 and this run has --label_smoothing 0.0"),
    ({}, {"label": 0}, "split changed since its checkpoint"),
    ({}, {}, None),
    ({"num_workers": 0}, {"num_workers": 2, "epochs": 50}, None),  # how it runs; 50 is the bundle's default
    ({"methods": ["ours=A.pt"]}, {"methods": ["ours=A2.pt"]}, None),  # the same weights under another name
    # defaults that are expressions (resolved as a run without the setting resolves them): given once, left out next
    ({"image_size": 224}, {}, None),
    ({}, {"data_seed": 42, "arch": "mae_vit_base_patch16_dec512d8b"}, None),
    ({"image_size": 128}, {}, "--image_size 128 and this run has --image_size 224"),
])
def test_a_resume_onto_a_fold_trained_otherwise_is_refused(first, second, refused, tmp_path, monkeypatch) -> None:
    """--resume true kept a finished fold's model.pt and tested it as this run's: another start's model, a linear
    probe as a fine-tune, other epochs or a changed split, reported without a word."""
    monkeypatch.setattr(crossval, "check_run_inputs", lambda *args: None)
    calls = []
    monkeypatch.setattr(crossval, "run_fold", lambda *args, **kw: calls.append(args[1]) or finishing_fold(*args))
    for name, content in (("A.pt", b"A"), ("A2.pt", b"A"), ("B.pt", b"B")):
        (tmp_path / name).write_bytes(content)

    def run(settings: dict, resume: bool) -> None:
        settings = dict(settings)
        methods = [m.replace("=", f"={tmp_path}/") for m in settings.pop("methods", ["random"])]
        protocol = _toy_protocol(tmp_path, settings.pop("label", 1))
        crossval.cross_validate(protocol, tmp_path / "cv", methods, None, [0],
                                {**settings, **({"resume": "true"} if resume else {})})

    run(first, resume=False)
    calls.clear()
    if refused is None:
        run(second, resume=True)
        assert len(calls) == 1
        return
    with pytest.raises(ValueError, match="rerun without --resume true") as raised:
        run(second, resume=True)
    assert refused in str(raised.value) and "fold 0" in str(raised.value)
    assert calls == [] and (tmp_path / "cv" / "cv_summary.json").exists()  # refused before anything was touched


@pytest.mark.parametrize("recorded, now, refused", [
    ({"datalist_sha256": "aaa", "linear_probe": False}, {"split": "bbb"}, "split changed"),
    ({"datalist_sha256": "aaa", "linear_probe": True}, {"split": "aaa"}, "--linear_probe True"),
    ({"datalist_sha256": "aaa", "linear_probe": False}, {"split": "aaa"}, None),
])
def test_a_fold_written_before_its_record_is_checked_against_its_model(recorded, now, refused, tmp_path) -> None:
    """A fold folder of an earlier version has no fold_settings.json: its model.pt's record (split hash, probe or
    not) is compared instead."""
    import torch

    (tmp_path / "models").mkdir()
    torch.save({"model": {}, "arch": {"kind": "classifier", "arch_args": {"linear_probe": recorded["linear_probe"]},
                                      "config": {"datalist_sha256": recorded["datalist_sha256"]}}},
               tmp_path / "models" / "model.pt")
    record = crossval.fold_record({"linear_probe": False, "epochs": 5}, now["split"], None)  # epochs: not recorded
    if refused is None:
        crossval.check_fold_resume(tmp_path, "random fold 2", record, {})
        return
    with pytest.raises(ValueError, match=f"random fold 2.*{refused}"):
        crossval.check_fold_resume(tmp_path, "random fold 2", record, {})


@pytest.mark.parametrize("error, reason", [
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), "RuntimeError: CUDA out of memory"),
    (MemoryError("cannot allocate"), "MemoryError: cannot allocate"),
])
def test_a_failing_fold_is_named_with_what_is_kept(error, reason, tmp_path, monkeypatch) -> None:
    """A fold's exception was a raw traceback naming neither the start nor the fold, nor that the folds before it
    were kept."""
    def fold(split_file, out, *args, **kwargs):
        if out.name == "fold1":
            raise error
        return finishing_fold(split_file, out)

    monkeypatch.setattr(crossval, "check_run_inputs", lambda *args: None)
    monkeypatch.setattr(crossval, "run_fold", fold)
    with pytest.raises(crossval.FoldFailed) as raised:
        crossval.cross_validate(_toy_protocol(tmp_path), tmp_path / "cv", ["random"], None)
    assert str(raised.value).startswith(f"random fold 1 failed: {reason}")
    assert str(raised.value).endswith("; done and kept: random fold 0; once the cause is dealt with, rerun with "
                                      "--resume true to continue")
    assert raised.value.__cause__ is error


def test_a_stop_signal_says_which_folds_are_kept_and_how_to_continue(tmp_path, monkeypatch, capsys) -> None:
    """SIGTERM (a queue's time limit) in a later fold said only the trainer's "start again"."""
    def fold(split_file, out, *args, **kwargs):
        if out.name == "fold1":
            raise StopSignal(15)
        return finishing_fold(split_file, out)

    monkeypatch.setattr(crossval, "check_run_inputs", lambda *args: None)
    monkeypatch.setattr(crossval, "run_fold", fold)
    with pytest.raises(StopSignal):
        crossval.cross_validate(_toy_protocol(tmp_path), tmp_path / "cv", ["random"], None)
    assert ("stopped by SIGTERM in random fold 1 (toy); done and kept: random fold 0; rerun the same command with "
            "--resume true to continue") in capsys.readouterr().err


@pytest.mark.parametrize("skipped, said", [(0, None), (1, "1 test image unreadable in fold 1"),
                                           (2, "2 test images unreadable in fold 1")])
def test_unreadable_test_images_show_in_the_line_the_table_and_the_summary(skipped, said, tmp_path, monkeypatch,
                                                                           capsys) -> None:
    """Test images left out as unreadable were only a warning in the log: the fold's scores are of fewer images."""
    def fold(split_file, out, *args, **kwargs):
        report = finishing_fold(split_file, out)
        lost = skipped if out.name == "fold1" else 0
        return {**report, "skipped": [{"image": f"{i}.png", "reason": "truncated"} for i in range(lost)]}

    monkeypatch.setattr(crossval, "check_run_inputs", lambda *args: None)
    monkeypatch.setattr(crossval, "run_fold", fold)
    record = crossval.cross_validate(_toy_protocol(tmp_path), tmp_path / "cv", ["random"], None)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[cross-validation]")]
    assert (said is not None and said in lines[1]) or (said is None and "unreadable" not in lines[1])
    assert (said in (tmp_path / "cv" / "cv_table.md").read_text()) if said else "unreadable" not in record["table"]
    counts = json.loads((tmp_path / "cv" / "cv_summary.json").read_text())["test_images"]["random"]
    assert counts == [{"fold": 0, "n": 1, "skipped": 0}, {"fold": 1, "n": 1, "skipped": skipped}]


@pytest.mark.parametrize("status", ["KILLED", "FAILED"])  # stopped; crashed (or stopped before 0.6.28)
def test_a_stopped_fold_run_is_tagged_as_superseded_by_its_resume(fake_folds, tmp_path, status) -> None:
    """After SIGTERM and --resume true the parent held a FAILED fold run beside the FINISHED one of the same fold,
    read as a fold that failed."""
    from mlflow.tracking import MlflowClient

    from monai_ext.handlers.checkpointing import MLFLOW_RUN_RECORD

    out, uri = tmp_path / "cv", f"sqlite:///{tmp_path}/mlruns.db"
    _cross_validate(out, uri)
    stopped = next(r for r in _runs(uri)[1] if r.info.run_name == "random_fold0")
    MlflowClient(uri).set_terminated(stopped.info.run_id, status=status)
    # stopped before its first checkpoint: nothing records the run, and the resume starts a new one
    (out / "random" / "fold0" / "models" / MLFLOW_RUN_RECORD).unlink()
    _cross_validate(out, uri, resume=True)
    runs = {r.info.run_id: r for r in _runs(uri)[1]}
    new = next(r for r in runs.values() if r.info.run_name == "random_fold0" and r.info.run_id != stopped.info.run_id)
    assert runs[stopped.info.run_id].data.tags.get("superseded_by") == new.info.run_id
    assert not any("superseded_by" in r.data.tags for r in runs.values() if r.info.run_id != stopped.info.run_id)


def test_a_fresh_run_stopped_before_training_leaves_the_earlier_run_s_checkpoints_listed(tmp_path, monkeypatch) -> None:
    """A fresh run (new settings) stopped before its trainer listed the folder's older checkpoints as another run's
    left its own record beside them: a resume then passed the check and continued the older run's checkpoint."""
    from monai_ext.handlers.checkpointing import earlier_checkpoints

    monkeypatch.setattr(crossval, "check_run_inputs", lambda *args: None)
    monkeypatch.setattr(crossval, "run_fold", finishing_fold)
    crossval.cross_validate(_toy_protocol(tmp_path), tmp_path / "cv", ["random"], None, [0], {"epochs": 3})

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(crossval, "run_fold", stopped)
    with pytest.raises(KeyboardInterrupt):
        crossval.cross_validate(_toy_protocol(tmp_path), tmp_path / "cv", ["random"], None, [0], {"epochs": 5})
    models = tmp_path / "cv" / "random" / "fold0" / "models"
    assert [p.name for p in earlier_checkpoints(models)] == ["checkpoint_iteration=4.pt"]  # no resume continues it



def test_an_mae_pretrained_on_a_folder_of_links_to_an_archive_is_warned_of_its_test_images(tmp_path, caplog) -> None:
    """A pretraining folder assembled from links (``pretrain/siteA -> /archive/siteA``): pretraining read the
    archive's pictures through them, while a protocol names them by their archive paths; nothing was found."""
    import cv2
    import numpy as np

    archive = tmp_path / "archive" / "siteA"
    archive.mkdir(parents=True)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(archive / name), np.zeros((8, 8), np.uint8))
    (tmp_path / "pretrain").mkdir()
    (tmp_path / "pretrain" / "siteA").symlink_to(archive, target_is_directory=True)
    items = [{"image": str(archive / name), "label": i} for i, name in enumerate(("a.png", "b.png"))]
    protocol = Protocol("toy", ["a", "b"], [{"train": items[1:], "validation": [], "test": items[:1]}])
    mae = _mae_pretrained_on(tmp_path / "mae.pt", tmp_path / "pretrain")
    with caplog.at_level("WARNING"):
        found = crossval.warn_of_starts_trained_on_test_images(["pretrained"], str(mae), protocol, [0])
    assert found == {"pretrained": [0]} and "1 of 1 image(s) of toy test fold 0" in caplog.text
