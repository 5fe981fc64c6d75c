"""MLflow tracking of both bundles against a live ``mlflow server`` on 127.0.0.1 (SQLite backend)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.bundles.helpers import REPO, run_bundle, tiny_classify_overrides, tiny_pretrain_overrides
from tests.servers import refused_port, serve, start_mlflow_server
from tests.warm_python import run_python

mlflow = pytest.importorskip("mlflow")


@pytest.fixture(autouse=True)
def no_tracking_uri_left_behind(monkeypatch):
    """``mlflow.set_tracking_uri`` (the tests' reads of a store) also sets ``MLFLOW_TRACKING_URI`` in the
    environment, which outlived the test: a later bundle run in the worker would log to a stopped server or a
    deleted store. Cleared after each test; monkeypatch puts back a value the user had."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield
    mlflow.set_tracking_uri(None)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
pytestmark = pytest.mark.slow
PRETRAIN = "bundles/usf_mae_pretrain/configs"
CLASSIFY = "bundles/usf_mae_classify/configs"


def wait_for_health(uri: str, proc: subprocess.Popen) -> None:
    """Return once ``uri`` answers its health check; RuntimeError if the server exits first."""
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail("mlflow server did not start within 120 s")


@pytest.fixture(scope="module")
def server(module_tmp):
    root = module_tmp("mlflow_server")
    log = root / "server.log"

    def start(port: int) -> subprocess.Popen:
        return start_mlflow_server(root, port, log)

    def stop(proc: subprocess.Popen) -> None:
        proc.terminate()
        proc.wait(timeout=30)

    try:
        proc, uri = serve(start, wait_for_health, stop, log)
    except RuntimeError as error:
        pytest.fail(f"{error}\n{log.read_text(errors='replace')[-3000:]}")
    yield uri
    stop(proc)


def runs_of(uri: str, experiment: str):
    client = mlflow.tracking.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client, client.search_runs([exp.experiment_id], order_by=["attribute.start_time ASC"]) if exp else []


def artifact_paths(client, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def tracked(settings: str, uri: str, experiment: str) -> dict[str, object]:
    return {"tracking": f"{settings}/mlflow_tracking.yaml", "tracking_uri": uri, "experiment_name": experiment}


# MONAI's "+" keys append to the base config's list: NaN weights once the first iteration is done.
POISON_AFTER_ITERATION_1 = """
+initialize:
  - "$@train#trainer.add_event_handler(ignite.engine.Events.ITERATION_COMPLETED(once=1), lambda e: [p.data.fill_(float('nan')) for p in @network.parameters()])"
"""


def test_pretrain_run_is_tracked_and_a_crashed_run_is_marked_failed(server, tmp_path) -> None:
    """A run that stops on non-finite losses ends FAILED; the next run of the same experiment is a new run that
    records params, per-iteration metrics, the representation monitor's scores and artifacts (one experiment for
    both saves a bundle run)."""
    from monai_ext.data.folders import pretrain_datalists

    overrides = {**tiny_pretrain_overrides(tmp_path, tmp_path / "cache", epochs=2), **tracked(PRETRAIN, server, "pre")}
    # An overlay poisons the weights after the first step; the next loss is non-finite and the run stops.
    (tmp_path / "poison.yaml").write_text(POISON_AFTER_ITERATION_1)
    crash = {**overrides, "epochs": 1, "train#trainer#max_nonfinite_steps": 1}
    result = run_bundle([f"{PRETRAIN}/train.yaml", str(tmp_path / "poison.yaml")], crash, check=False)
    assert result.returncode != 0 and "non-finite" in result.stdout + result.stderr
    _, runs = runs_of(server, "pre")
    assert [r.info.status for r in runs] == ["FAILED"]
    shutil.rmtree(tmp_path / "models", ignore_errors=True)  # a fresh rerun, not a resume of the poisoned weights
    # a picture an earlier, longer run left in the same folder: not this run's, so not logged with it
    (tmp_path / "eval" / "reconstructions").mkdir(parents=True, exist_ok=True)
    (tmp_path / "eval" / "reconstructions" / "epoch_0009.png").write_bytes(b"an earlier run's grid")
    # The rerun also has the representation monitor: its scores (before training and after each epoch) reach MLflow,
    # and the run it makes the validator start first still gets the trainer's tags.
    monitored = {**overrides, "monitor_interval": 1, "monitor_per_class": 5}
    run_bundle([f"{PRETRAIN}/train.yaml"], monitored)
    client, runs = runs_of(server, "pre")
    assert [r.info.status for r in runs] == ["FAILED", "FINISHED"]
    run = runs[1]
    history = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1, 2] and all("monitor_knn_accuracy" in h for h in history)
    assert len(client.get_metric_history(run.info.run_id, "monitor_knn_accuracy")) == 3
    params, tags = run.data.params, run.data.tags
    assert params["arch"] == "mae_vit_tiny_patch16_dec128d2b" and params["recipe"] == "ultrasound"
    # the precision the run computed in, not the bf16 asked for by default (bf16 autocast runs on CUDA only)
    assert params["precision"] == ("bf16" if torch.cuda.is_available() else "fp32")
    split = pretrain_datalists(None, tmp_path / "cache", num_synthetic=24, val_fraction=0.25, seed=42)  # the run's
    assert len(params["dataset_hash"]) == 16
    assert params["dataset_sizes"] == f"{len(split['train'])},{len(split['validation'])}" == "17,7"
    assert tags["bundle"] == "usf_mae_pretrain" and tags["bundle_version"] and len(tags["git_commit"]) in (7, 40)
    train_loss = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in train_loss] == [1, 2, 3, 4]  # per iteration: 2 steps x 2 epochs
    # epoch 0: the evaluation of the initial weights that the monitor adds as its baseline
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [0, 1, 2]
    assert len(client.get_metric_history(run.info.run_id, "lr_group_0")) == 4
    files = artifact_paths(client, run.info.run_id)
    assert {"reconstructions/epoch_0001.png", "reconstructions/latest.png", "metrics.json", "model.pt",
            "reconstructions/representation_quality.png"} <= files
    assert "reconstructions/epoch_0009.png" not in files
    assert any(f.startswith("config_") and f.endswith(".json") for f in files)
    mlflow.set_tracking_uri(server)
    model = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model", dst_path=str(tmp_path))
    pred = model(__import__("torch").zeros(2, 3, 64, 64))
    assert tuple(pred.shape) == (2, 16, 768)
    # the pretraining's evaluate.yaml too: its own run, linked, with its metrics file and grid
    run_bundle([f"{PRETRAIN}/train.yaml", f"{PRETRAIN}/evaluate.yaml"], monitored)
    client, runs = runs_of(server, "pre")
    evaluation = runs[-1]
    assert evaluation.info.status == "FINISHED" and evaluation.data.tags["evaluated_run_id"] == run.info.run_id
    assert {"evaluate_metrics.json", "reconstructions/evaluate.png"} <= artifact_paths(client, evaluation.info.run_id)


def test_classify_run_is_tracked(server, tmp_path) -> None:
    overrides = {**tiny_classify_overrides(tmp_path, tmp_path / "cache"), **tracked(CLASSIFY, server, "clf")}
    run_bundle([f"{CLASSIFY}/train.yaml"], overrides)
    client, runs = runs_of(server, "clf")
    run = runs[-1]
    assert run.info.status == "FINISHED"
    for name in ("val_macro_f1", "accuracy", "auc", "balanced_accuracy"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, name)] == [1, 2], name
    files = artifact_paths(client, run.info.run_id)
    assert {"validation_confusion_matrix.png", "validation_roc.png", "validation_report.json", "metrics.json",
            "model.pt"} <= files
    mlflow.set_tracking_uri(server)
    loaded = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model", dst_path=str(tmp_path))
    probs = loaded.predict(np.zeros((2, 3, 64, 64), np.float32))
    assert np.asarray(probs).shape == (2, 2)
    # a torch.export graph: torch alone loads it, and the flavor's list says so (MLflow's own inference of the list
    # reloads the model in a subprocess and adds numpy, pandas and tqdm)
    requirements = Path(mlflow.pyfunc.get_model_dependencies(f"runs:/{run.info.run_id}/model")).read_text().split()
    assert {r.split("==")[0] for r in requirements} == {"mlflow", "torch", "cloudpickle"}
    assert list(tmp_path.rglob("model.pt2")), "the downloaded model is not a torch.export archive"
    assert not any("bus_" in v or "/" in v and v.endswith(".png") for v in run.data.params.values())
    # evaluate.yaml with the same settings: a run of its own, ended, linked to the training run it scores (it was
    # left RUNNING, with no link, tags or files)
    run_bundle([f"{CLASSIFY}/train.yaml", f"{CLASSIFY}/evaluate.yaml"], overrides)
    client, runs = runs_of(server, "clf")
    evaluation = runs[-1]
    assert evaluation.info.status == "FINISHED" and evaluation.data.tags["evaluated_run_id"] == run.info.run_id
    assert evaluation.data.tags["eval_split"] == "test" and evaluation.data.tags["bundle"] == "usf_mae_classify"
    assert "test_macro_f1" in evaluation.data.metrics and len(evaluation.data.params["dataset_hash"]) == 16
    files = artifact_paths(client, evaluation.info.run_id)
    assert {"test_report.json", "test_confusion_matrix.png", "test_roc.png"} <= files
    assert client.get_run(run.info.run_id).data.metrics == run.data.metrics  # the training run is left as it was


def test_a_linear_probe_fit_is_tracked_as_a_run(tmp_path, monkeypatch) -> None:
    """``--linear_probe true`` runs no engine, so the engines' handlers never started a run: the fit was not
    tracked at all, without a word. Its scores, report and model now make a run (default local store)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    overrides = {**tiny_classify_overrides(tmp_path, tmp_path / "cache"), "linear_probe": True,
                 "tracking": f"{CLASSIFY}/mlflow_tracking.yaml", "experiment_name": "probe"}
    run_bundle([f"{CLASSIFY}/train.yaml"], overrides)
    client, runs = runs_of(f"sqlite:///{tmp_path}/eval/mlruns.db", "probe")
    assert [r.info.status for r in runs] == ["FINISHED"]
    run = runs[0]
    report = json.loads((tmp_path / "eval" / "probe_report.json").read_text())
    assert run.data.metrics["linear_validation_macro_f1"] == pytest.approx(report["linear_validation"]["macro_f1"])
    assert run.data.metrics["C"] == pytest.approx(report["C"]) and run.data.tags["linear_probe"] == "true"
    assert {"probe_report.json", "model.pt"} <= artifact_paths(client, run.info.run_id)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/eval/mlruns.db")
    loaded = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model", dst_path=str(tmp_path / "loaded"))
    assert np.asarray(loaded.predict(np.zeros((2, 3, 64, 64), np.float32))).shape == (2, 2)


def test_a_resumed_training_continues_its_mlflow_run_in_the_default_local_store(tmp_path, monkeypatch) -> None:
    """``--resume true`` goes on in the MLflow run that wrote the checkpoints: one run whose loss curve continues
    from the saved step and whose params stay the first run's. No server given: the store is SQLite in
    ``output_dir`` (the other tests here log to a live server)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    overrides = {**tiny_pretrain_overrides(tmp_path, tmp_path / "cache", epochs=1),
                 "tracking": f"{PRETRAIN}/mlflow_tracking.yaml", "experiment_name": "res"}
    run_bundle([f"{PRETRAIN}/train.yaml"], overrides)
    run_bundle([f"{PRETRAIN}/train.yaml"], {**overrides, "epochs": 2, "resume": True})
    store = f"sqlite:///{tmp_path}/eval/mlruns.db"
    assert (tmp_path / "eval" / "mlruns.db").is_file()
    client, runs = runs_of(store, "res")
    assert [(r.info.status, r.data.tags.get("resumes")) for r in runs] == [("FINISHED", "1")]
    run_id = runs[0].info.run_id
    assert json.loads((tmp_path / "models" / "mlflow_run.json").read_text()) == {"run_id": run_id,
                                                                                "earlier_checkpoints": {}}
    assert [m.step for m in client.get_metric_history(run_id, "train_loss")] == [1, 2, 3, 4]  # 2 steps x 2 epochs
    assert [m.step for m in client.get_metric_history(run_id, "val_loss")] == [1, 2]
    assert runs[0].data.params["epochs"] == "1"  # MLflow keeps a param's first value; the new config is an artifact
    # what the resume changed, and where it went on from (its steps after that point are logged a second time
    # when a crash came after the last checkpoint: MLflow cannot delete points)
    tags = runs[0].data.tags
    assert (tags["resume_1.epochs"], tags["resume_1.max_epochs"], tags["resume_1.from_iteration"]) == ("2", "2", "2")
    assert len([f for f in artifact_paths(client, run_id) if f.startswith("config_")]) == 2
    # a rerun without --resume is a new run: test_which_recorded_runs_a_resume_continues and, for the record's
    # removal, tests/handlers/test_checkpointing.py (a third bundle run here would cost 15 s)


def _recorded_run(tmp_path: Path, state: str) -> tuple[object, str, Path]:
    """A run in a local store, ended as a crash ends it, and the record a training would leave beside its
    checkpoints; ``state`` spoils one part of that."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns.db")
    experiment = client.create_experiment("usf_mae_pretrain")
    run_id = client.create_run(experiment).info.run_id
    client.set_terminated(run_id, status="FAILED")
    record = tmp_path / "models" / "mlflow_run.json"
    record.parent.mkdir()
    if state != "no_checkpoint":  # the one the run saved before it crashed
        (record.parent / "checkpoint_iteration=4.pt").write_bytes(b"weights")
    record.write_text({"garbled": "{run_id", "unknown_id": json.dumps({"run_id": "0" * 32})}.get(
        state, json.dumps({"run_id": run_id})))
    if state == "other_experiment":
        client.rename_experiment(experiment, "another")
        client.create_experiment("usf_mae_pretrain")
    if state == "deleted":
        client.delete_run(run_id)
    return client, run_id, record


@pytest.mark.parametrize("state, resume, continued", [
    ("crashed", True, True), ("crashed", False, False), ("garbled", True, False), ("unknown_id", True, False),
    ("other_experiment", True, False), ("deleted", True, False),
    ("no_checkpoint", True, False),  # --resume true with no checkpoint to resume starts training afresh
])
def test_which_recorded_runs_a_resume_continues(state, resume, continued, tmp_path, monkeypatch) -> None:
    """Only a resume of a checkpoint continues the recorded run, and only a live run of this store and experiment;
    otherwise a new run starts, and the trainer's handler records it for the next resume."""
    from ignite.engine import Engine

    from monai_ext.handlers.tracking import ProjectMLFlowHandler, RunHolder

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    client, run_id, record = _recorded_run(tmp_path, state)
    holder = RunHolder(record_file=str(record), resume=resume)
    handler = ProjectMLFlowHandler(run_holder=holder, tracking_uri=client.tracking_uri,
                                   experiment_name="usf_mae_pretrain", record_run=True)
    handler.start(Engine(lambda engine, batch: None))
    assert (holder.run_id == run_id) is continued
    recorded = json.loads(record.read_text())
    assert recorded["run_id"] == holder.run_id
    # a new run lists the checkpoint it found as another run's; a resume continues it
    assert list(recorded["earlier_checkpoints"]) == ([] if resume else ["checkpoint_iteration=4.pt"])
    run = client.get_run(holder.run_id)
    assert run.info.status == "RUNNING" and run.data.tags.get("resumes") == ("1" if continued else None)
    assert client.get_run(run_id).info.status == ("RUNNING" if continued else "FAILED")


def _start_tracked(client, folder: Path, resume: bool) -> str:
    """Start the trainer's tracking handler as a bundle run into ``folder`` would; the id of its MLflow run."""
    from ignite.engine import Engine

    from monai_ext.handlers.tracking import ProjectMLFlowHandler, RunHolder

    holder = RunHolder(record_file=str(folder / "mlflow_run.json"), resume=resume)
    handler = ProjectMLFlowHandler(run_holder=holder, tracking_uri=client.tracking_uri,
                                   experiment_name="usf_mae_pretrain", record_run=True)
    handler.start(Engine(lambda engine, batch: None))
    return holder.run_id


@pytest.mark.parametrize("new_run_saved, continued", [
    (None, False),                         # killed before its first save: only the earlier run's checkpoint is there
    ("checkpoint_iteration=2.pt", True),   # saved one of its own beside the earlier run's
    ("checkpoint_iteration=4.pt", True),   # saved one of its own under the earlier run's name, replacing that file
])
def test_a_resume_continues_only_a_run_that_saved_a_checkpoint(new_run_saved, continued, tmp_path, monkeypatch) -> None:
    """A new run into a folder holding an earlier run's checkpoints records itself at its start; if it is killed
    before it saves, a resume loads the earlier run's checkpoint, and must not add those curves to the killed
    run's MLflow run."""
    from mlflow.tracking import MlflowClient

    from monai_ext.io.atomic import atomic_write_text

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns.db")
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "checkpoint_iteration=4.pt").write_bytes(b"the earlier run's checkpoint")
    new_run = _start_tracked(client, folder, resume=False)
    assert list(json.loads((folder / "mlflow_run.json").read_text())["earlier_checkpoints"]) == [
        "checkpoint_iteration=4.pt"]
    if new_run_saved:
        atomic_write_text(folder / new_run_saved, "the new run's checkpoint")  # a new file, as every save writes
    client.set_terminated(new_run, status="FAILED")  # as the crash handler ends it (a kill leaves it RUNNING)
    resumed_run = _start_tracked(client, folder, resume=True)
    assert (resumed_run == new_run) is continued
    record = json.loads((folder / "mlflow_run.json").read_text())
    assert record["run_id"] == resumed_run
    assert bool(record["earlier_checkpoints"]) is continued  # a continued run keeps its list; a new one continues all


@pytest.mark.parametrize("bundle", ["pretrain", "classify"])
def test_monai_stock_tracking_setting_records_params_metrics_and_artifacts(server, tmp_path, bundle: str) -> None:
    """`--tracking mlflow`, MONAI's own settings (its MLFlowHandler with from_engine(["loss"], first=True)), which
    crashed at the first iteration while the trainers' output was not decollated."""
    settings, tiny = {"pretrain": (PRETRAIN, tiny_pretrain_overrides), "classify": (CLASSIFY, tiny_classify_overrides)}[bundle]
    overrides = tiny(tmp_path, tmp_path / "cache", epochs=1)
    # MONAI builds the executed-config path by appending to output_dir's config text, which only works while
    # output_dir is its default expression: outputs are moved with bundle_root instead of output_dir here.
    overrides.pop("output_dir")
    overrides.update(bundle_root=str(tmp_path), tracking="mlflow", tracking_uri=server, experiment_name=f"stock_{bundle}")
    run_bundle([f"{settings}/train.yaml"], overrides)
    client, runs = runs_of(server, f"stock_{bundle}")
    assert [r.info.status for r in runs] == ["FINISHED"]
    run = runs[0]
    assert run.data.params["max_epochs"] == "1" and int(run.data.params["epoch_length"]) >= 1
    steps = int(run.data.params["epoch_length"])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == list(range(1, steps + 1))
    assert all(np.isfinite(m.value) for m in client.get_metric_history(run.info.run_id, "train_loss"))
    validation = {"pretrain": {"val_loss"}, "classify": {"val_macro_f1", "accuracy", "balanced_accuracy", "auc"}}
    assert validation[bundle] <= set(run.data.metrics)
    files = artifact_paths(client, run.info.run_id)
    assert [f for f in files if f.startswith("config_") and f.endswith(".json")], files


def test_unreachable_server_fails_before_training(tmp_path) -> None:
    with refused_port() as port:
        uri = f"http://127.0.0.1:{port}"
        overrides = {**tiny_pretrain_overrides(tmp_path, tmp_path / "cache", epochs=1), **tracked(PRETRAIN, uri, "x")}
        # MLflow's client retries an unreachable server for minutes; the bundle must check first and stop at once
        # (a generous limit: subprocess.TimeoutExpired fails the test only if it waited on the retries).
        result = run_bundle([f"{PRETRAIN}/train.yaml"], overrides, check=False, timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode != 0 and f"MLflow tracking server '{uri}' is unreachable" in log
    assert not (tmp_path / "models").exists()  # nothing trained


def test_cross_validation_logs_nested_runs(server, tmp_path) -> None:
    cmd = [sys.executable, "-m", "monai_ext", "cross-validate", "synthetic", str(tmp_path / "cv"), "--methods",
           "random", "--folds", "0", "--cache_dir", str(tmp_path / "cache"), "--per_class", "12",
           "--arch", "mae_vit_tiny_patch16_dec128d2b", "--image_size", "64", "--epochs", "1", "--batch_size", "8",
           "--num_workers", "0", "--tracking", f"{CLASSIFY}/mlflow_tracking.yaml", "--tracking_uri", server]
    result = run_python(cmd, cwd=REPO, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    client, runs = runs_of(server, "cv_lesions_binary_12_seed0")
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id]
    assert len(parent) == 1 and [r.info.run_name for r in children] == ["random_fold0"]
    assert "random_macro_f1_mean" in parent[0].data.metrics
    assert {"cv_table.md", "cv_summary.json"} <= artifact_paths(client, parent[0].info.run_id)
    # the fold's test, an untracked bundle run of its own, in the fold's run (through the server's artifact proxy)
    assert {"test_macro_f1", "test_auc"} <= set(children[0].data.metrics)
    assert "test_report.json" in artifact_paths(client, children[0].info.run_id)


@pytest.mark.parametrize("unset", ["null", "None", "none"])
def test_run_name_and_registered_model_left_unset_on_the_command_line(unset, tmp_path) -> None:
    """``--run_name null`` arrives as text: MLflow would name the run "null" and register a model named "null"."""
    from monai_ext.handlers.tracking import ProjectMLFlowHandler, RunHolder

    handler = ProjectMLFlowHandler(run_holder=RunHolder(), tracking_uri=f"sqlite:///{tmp_path}/mlruns.db",
                                   run_name=unset, registered_model_name=unset)
    assert handler.run_name is None and handler.registered_model_name is None


@pytest.mark.parametrize("resumed, expected", [
    (False, {"reconstructions/epoch_0001.png", "reconstructions/latest.png", "reconstructions/sub/new.png",
             "model.pt"}),
    (True, {"reconstructions/epoch_0001.png", "reconstructions/latest.png", "reconstructions/sub/new.png",
            "reconstructions/epoch_0009.png", "model.pt", "validation_roc.png"}),
])
def test_only_this_runs_files_are_logged_unless_it_resumes(resumed, expected, tmp_path, monkeypatch) -> None:
    """A rerun into the same output folder finds the earlier run's pictures there (epoch_0009.png of a longer run,
    an ROC curve this run does not draw): they are not this run's unless it resumes that run."""
    from monai_ext.handlers.tracking import ProjectMLFlowHandler, RunHolder
    from monai_ext.io.atomic import atomic_write_bytes

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # mlflow.set_tracking_uri of another test sets it
    grids = tmp_path / "reconstructions"
    for old in (grids / "epoch_0009.png", grids / "latest.png", tmp_path / "validation_roc.png", tmp_path / "model.pt"):
        atomic_write_bytes(old, b"earlier run")
    handler = ProjectMLFlowHandler(run_holder=RunHolder(), tracking_uri=f"sqlite:///{tmp_path}/mlruns.db",
                                   artifact_paths=[str(grids), str(tmp_path / "validation_roc.png"),
                                                   str(tmp_path / "model.pt"), str(tmp_path / "absent.json")],
                                   resumed=resumed)
    # this run: a new grid, a new file in a sub-folder, and rewrites of latest.png and model.pt (same size, as
    # atomic replacements: a new file where the timestamp alone might not tell)
    for new in (grids / "epoch_0001.png", grids / "sub" / "new.png", grids / "latest.png", tmp_path / "model.pt"):
        atomic_write_bytes(new, b"this run!!!" if new.name in ("latest.png", "model.pt") else b"this run")
    experiment = handler.client.create_experiment("stale", artifact_location=(tmp_path / "mlruns").as_uri())
    run_id = handler.client.create_run(experiment).info.run_id
    handler.log_new_artifacts(run_id)
    assert artifact_paths(handler.client, run_id) == expected


def test_the_pt2_format_is_asked_for_only_where_mlflow_has_it(monkeypatch) -> None:
    """MLflow before ``serialization_format`` (early 2026) hands unknown keywords on to ``torch.save``: a tracked
    run would fail at its very end, after every epoch. Those versions keep their pickled model and inferred list."""
    import mlflow.pytorch

    from monai_ext.handlers.tracking import pt2_model_options

    options = pt2_model_options()  # the installed MLflow has it
    assert options["serialization_format"] == "pt2" and any(r.startswith("torch") for r in options["pip_requirements"])

    def log_model_before_pt2(pytorch_model, artifact_path=None, conda_env=None, **kwargs):  # its signature then
        raise AssertionError("not called")

    monkeypatch.setattr(mlflow.pytorch, "log_model", log_model_before_pt2)
    assert pt2_model_options() == {}
