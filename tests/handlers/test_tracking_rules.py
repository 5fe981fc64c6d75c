"""The MLflow handler's own rules, on a local SQLite store and a one-iteration ignite engine (no bundle runs): which
store it logs to, what it does when the store fails mid-run, which model it logs, which params it writes."""

from __future__ import annotations

import http.server
import logging
import re
import threading
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote, urlparse

import pytest
import torch
from ignite.engine import Engine, Events

mlflow = pytest.importorskip("mlflow")

from monai_ext.handlers.checkpointing import MLFLOW_RUN_RECORD, TrainingCheckpointer  # noqa: E402
from monai_ext.handlers.tracking import (  # noqa: E402 - after the skip: the module needs MLflow
    ProjectMLFlowHandler,
    RunHolder,
    check_tracking_server,
    param_key,
    sqlite_artifact_location,
)
from monai_ext.io.atomic import atomic_torch_save  # noqa: E402
from monai_ext.io.signals import StopSignal  # noqa: E402


def _store(folder: Path) -> str:
    from monai.utils import path_to_sqlite_uri

    folder.mkdir(parents=True, exist_ok=True)
    return path_to_sqlite_uri(str(folder / "mlruns.db"))


def _handler(uri: str, **kwargs) -> ProjectMLFlowHandler:
    return ProjectMLFlowHandler(run_holder=kwargs.pop("run_holder", RunHolder()), tracking_uri=uri,
                                experiment_name="rules", **kwargs)


def _trainer() -> Engine:
    """An engine that looks like a trainer to the handler (an ``optimizer``) and returns a loss."""
    engine = Engine(lambda e, batch: {"loss": torch.tensor(0.5)})
    engine.optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    return engine


def _runs(uri: str) -> list:
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("rules")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def test_the_given_tracking_uri_wins_over_the_environment_variable(tmp_path, monkeypatch) -> None:
    """MONAI's handler prefers MLFLOW_TRACKING_URI: a shell profile's team server got a run meant for a local store."""
    env_store, given = _store(tmp_path / "env"), _store(tmp_path / "given")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env_store)
    handler = _handler(given, iteration_log=False, epoch_log=False)
    handler.attach(engine := _trainer())
    engine.run([0], max_epochs=1)
    assert len(_runs(given)) == 1 and _runs(env_store) == []


def test_a_store_under_a_folder_with_spaces_keeps_its_artifacts_beside_it(tmp_path) -> None:
    """The URI's path is percent-encoded; taken as it was, artifacts went to a sibling folder named "my%20run"."""
    folder = tmp_path / "my run #1" / "eval"
    location = sqlite_artifact_location(_store(folder))
    assert Path(unquote(urlparse(location).path)) == folder / "mlruns"
    assert _handler(_store(folder)).artifact_location == location


@pytest.mark.parametrize("uri, said", [
    ("mlruns", "is a path, not a URI: MLflow 3 keeps runs in a database or on a server; give "
               "sqlite:///{cwd}/mlruns/mlruns.db"),
    ("./runs", "is a path, not a URI: MLflow 3 keeps runs in a database or on a server; give "
               "sqlite:///{cwd}/runs/mlruns.db"),
    ("/tmp/x/mlruns.db", "is a path, not a URI: for a SQLite database there give sqlite:////tmp/x/mlruns.db"),
    ("runs/store.sqlite", "is a path, not a URI: for a SQLite database there give sqlite:///{cwd}/runs/store.sqlite"),
    ("file:/tmp/mlruns", "is a file: URI: MLflow 3 keeps runs in a database or on a server; give "
                         "sqlite:////tmp/mlruns/mlruns.db or http://"),
    # the URI to type, encoded: it said sqlite:///<folder>/mlruns.db
    ("file:///tmp/my%20runs/donn%C3%A9es", "is a file: URI: MLflow 3 keeps runs in a database or on a server; give "
                                           "sqlite:////tmp/my%20runs/donn%C3%A9es/mlruns.db or http://"),
    ("file:runs", "is a file: URI: MLflow 3 keeps runs in a database or on a server; give "
                  "sqlite:///{cwd}/runs/mlruns.db or http://"),
])
def test_a_path_as_tracking_uri_is_refused_in_our_words(uri, said, tmp_path, monkeypatch) -> None:
    """A database file's path was refused as "a folder"; the message now gives the URI to type, absolute."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=re.escape(f"tracking_uri '{uri}' {said.format(cwd=tmp_path.as_posix())}")):
        _handler(uri)


class _AuthServer(http.server.BaseHTTPRequestHandler):
    """/health behind basic authentication (user "u", password "p"), as a reverse proxy in front of MLflow has it."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        import base64

        expected = "Basic " + base64.b64encode(b"u:p").decode()
        self.send_response(200 if self.headers.get("Authorization") == expected else 401)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def auth_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AuthServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_server_check_asks_with_the_users_credentials(auth_server, monkeypatch) -> None:
    """A server MLflow can use (behind a proxy that wants a password) was refused as unreachable."""
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    with pytest.raises(ValueError, match=r"refused the credentials \(HTTP 401\); set MLFLOW_TRACKING_USERNAME"):
        check_tracking_server(auth_server)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "u")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "p")
    check_tracking_server(auth_server)


def _fail_logging_after_start(handler: ProjectMLFlowHandler, engine: Engine, calls: list) -> None:
    """From the first iteration on, every write to the store fails as a stopped server makes it fail."""
    from mlflow.exceptions import MlflowException

    def down(*args, **kwargs):
        calls.append(args)
        raise MlflowException("API request to http://127.0.0.1:9/api/2.0/mlflow/runs/log-batch failed")

    @engine.on(Events.ITERATION_STARTED(once=1))
    def _stop_server(_: Engine) -> None:
        for name in ("log_batch", "log_artifact", "set_terminated", "set_tag", "get_run"):
            setattr(handler.client, name, down)


def test_a_store_failing_during_training_is_warned_of_once_and_the_training_finishes(tmp_path, caplog) -> None:
    handler = _handler(_store(tmp_path), iteration_log=True, epoch_log=True, output_transform=lambda out: out["loss"])
    engine, calls = _trainer(), []
    handler.attach(engine)
    _fail_logging_after_start(handler, engine, calls)
    with caplog.at_level(logging.WARNING, logger="monai_ext.handlers.tracking"):
        engine.run([0, 1], max_epochs=3)  # 6 iterations, 3 epochs: only the first failure is tried
    assert engine.state.epoch == 3 and len(calls) == 1 and handler.run_holder.offline
    said = [r.getMessage() for r in caplog.records if "without tracking" in r.getMessage()]
    assert len(said) == 1 and "log-batch failed" in said[0]


def test_a_training_error_is_the_one_raised_when_the_run_cannot_be_marked_failed(tmp_path) -> None:
    from mlflow.exceptions import MlflowException

    handler = _handler(_store(tmp_path), iteration_log=False, epoch_log=False)
    engine = _trainer()

    @engine.on(Events.ITERATION_COMPLETED)
    def _out_of_memory(_: Engine) -> None:
        def down(*args, **kwargs):
            raise MlflowException("API request to http://127.0.0.1:9/api/2.0/mlflow/runs/update failed")

        handler.client.set_terminated = down
        raise RuntimeError("CUDA out of memory")

    handler.attach(engine)
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        engine.run([0], max_epochs=1)


def _saver(tmp_path: Path, network: torch.nn.Module, epoch: int | None) -> SimpleNamespace:
    """A BestModelSaver's view: its file holds ``network``'s weights as they were at ``epoch``."""
    path = tmp_path / "model.pt"
    atomic_torch_save({"model": network.state_dict(), "epoch": epoch}, path)
    return SimpleNamespace(save_path=path, best_epoch=epoch, metric_name="val_macro_f1", best=0.75)


def test_the_logged_model_is_the_best_one_not_the_last_epochs(tmp_path) -> None:
    """The registry held the last epoch's weights while model.pt and the validation metrics described the best."""
    network = torch.nn.Linear(4, 2)
    handler = _handler(_store(tmp_path), network=network, best_model=_saver(tmp_path, network, epoch=1))
    best = {k: v.clone() for k, v in network.state_dict().items()}
    with torch.no_grad():
        network.weight.add_(1.0)  # training went on after the best epoch
    logged, source = handler.model_to_log()
    assert torch.equal(logged.weight, best["weight"]) and not torch.equal(network.weight, best["weight"])
    assert source == "best model, epoch 1 (val_macro_f1 0.75)" and logged is not network


def test_without_a_best_model_the_network_is_logged_and_the_tag_says_so(tmp_path, caplog) -> None:
    network = torch.nn.Linear(4, 2)
    handler = _handler(_store(tmp_path), network=network, best_model=SimpleNamespace(
        save_path=tmp_path / "absent.pt", best_epoch=None, metric_name="val_loss", best=None))
    with caplog.at_level(logging.WARNING, logger="monai_ext.handlers.tracking"):
        logged, source = handler.model_to_log()
    assert logged is network and source == "the network at the end of training"
    assert any("no best model was saved" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("key, expected", [
    ("train#trainer#max_epochs", "train.trainer.max_epochs"),
    ("class_weights.benign (BI-RADS 3)", "class_weights.benign _BI-RADS 3_"),
    ("paths.a/../b:c", "paths.a_.._b_c"),
    ("x" * 300, "x" * 250),
])
def test_param_keys_are_made_ones_mlflow_takes(key, expected) -> None:
    from mlflow.utils.validation import _validate_param_name

    assert param_key(key) == expected
    _validate_param_name(param_key(key))  # raises on a key MLflow refuses


def test_an_evaluator_starting_the_run_first_does_not_log_its_epochs_as_the_runs(tmp_path) -> None:
    """The representation monitor's baseline starts the run on the validator: its max_epochs 1 was the run's."""
    uri, holder = _store(tmp_path), RunHolder()
    validator = Engine(lambda e, batch: None)
    _handler(uri, run_holder=holder, iteration_log=False, epoch_log=False, close_on_complete=False).attach(validator)
    validator.run([0], max_epochs=1)
    trainer_handler = _handler(uri, run_holder=holder, iteration_log=False, epoch_log=False)
    trainer_handler.attach(trainer := _trainer())
    trainer.run([0, 1, 2], max_epochs=4)
    params = _runs(uri)[0].data.params
    assert params["max_epochs"] == "4" and params["epoch_length"] == "3"


def test_settings_given_resolved_are_logged_as_values_not_expressions(tmp_path) -> None:
    """The executed config holds ``num_classes: $len(@class_names)``: a param no search of runs can use."""
    import json

    (tmp_path / "config_20261125_000000.json").write_text(json.dumps(
        {"num_classes": "$len(@class_names)", "class_names": "$@split['class_names']", "epochs": 3,
         "save_execute_config": "$@output_dir + '/config_20261125_000000.json'"}))
    handler = _handler(_store(tmp_path / "store"), iteration_log=False, epoch_log=False, config_dir=str(tmp_path),
                       resolved_params={"num_classes": 3, "class_names": ["benign", "malignant", "normal"]})
    handler.attach(engine := _trainer())
    engine.run([0], max_epochs=1)
    params = _runs(_store(tmp_path / "store"))[0].data.params
    assert (params["num_classes"], params["class_names"]) == ("3", "benign,malignant,normal")
    assert params["epochs"] == "3"  # the others as the config has them
    assert "save_execute_config" not in params  # MONAI's per-run file name: a resume tagged it as a changed setting


def test_resume_is_no_setting_a_resume_changes() -> None:
    """``resume`` is true in every resume of a run started without it: tagged "resume 1 changed resume"."""
    from monai_ext.handlers.tracking import flatten_config

    assert flatten_config({"resume": True, "epochs": 3}) == {"epochs": "3"}


def test_a_folder_in_the_environment_does_not_refuse_a_given_store(tmp_path, monkeypatch) -> None:
    """MONAI's handler checks MLFLOW_TRACKING_URI first: a folder there refused the store the user typed."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "./mlruns")
    given = _store(tmp_path)
    assert _handler(given).client.tracking_uri == given
    assert __import__("os").environ["MLFLOW_TRACKING_URI"] == "./mlruns"  # put back


def test_after_a_store_error_the_run_is_still_ended_once_the_store_answers(tmp_path) -> None:
    """One failed write switched tracking off and the run was never ended: the store showed it RUNNING for ever."""
    from mlflow.exceptions import MlflowException

    uri = _store(tmp_path)
    handler = _handler(uri, iteration_log=True, epoch_log=False, output_transform=lambda out: out["loss"],
                       close_on_complete=True)
    engine, working = _trainer(), handler.client.log_batch

    def once_down(*args, **kwargs):
        handler.client.log_batch = working  # the server is back after this one failure
        raise MlflowException("API request to http://127.0.0.1:9/api/2.0/mlflow/runs/log-batch failed (503)")

    engine.add_event_handler(Events.ITERATION_STARTED(once=1),
                             lambda _: setattr(handler.client, "log_batch", once_down))
    handler.attach(engine)
    engine.run([0, 1], max_epochs=1)
    (run,) = _runs(uri)
    assert handler.run_holder.failure is not None and run.info.status == "FINISHED"
    assert run.data.tags["tracking_incomplete"].startswith("2 logging call(s) lost")  # what the gap is


def _connection_refused() -> Exception:
    """The error MLflow raises for a stopped server: its own, with the HTTP layer's as context."""
    import requests
    from mlflow.exceptions import MlflowException

    try:
        raise requests.exceptions.ConnectionError("[Errno 111] Connection refused")
    except requests.exceptions.ConnectionError as e:
        try:
            raise MlflowException(f"API request to http://127.0.0.1:9/api/2.0/mlflow/runs/log-batch failed: {e}")
        except MlflowException as wrapped:
            return wrapped


@pytest.mark.parametrize("failure, ended", [("refused", False), ("503", True)])
def test_after_a_server_that_did_not_answer_the_runs_end_is_not_tried(failure, ended, tmp_path) -> None:
    """A stopped server: each call waited out its retries, the run's end (and a crash's FAILED) too; the end is tried
    only once the quick probe (the run read back) answers. An answer that was an error (503) to a write may pass,
    and the store answers the probe, so the end is tried then."""
    from mlflow.exceptions import MlflowException

    handler = _handler(_store(tmp_path), iteration_log=True, epoch_log=False, output_transform=lambda out: out["loss"],
                       close_on_complete=True)
    engine, ends = _trainer(), []
    error = _connection_refused() if failure == "refused" else MlflowException("runs/log-batch failed (HTTP 503)")

    def down(*args, **kwargs):
        raise error

    engine.add_event_handler(Events.ITERATION_STARTED(once=1), lambda _: setattr(handler.client, "log_batch", down))
    if failure == "refused":  # the whole server gone: the probe is refused too
        engine.add_event_handler(Events.ITERATION_STARTED(once=1), lambda _: setattr(handler.client, "get_run", down))
    ending = handler.client.set_terminated
    handler.client.set_terminated = lambda *args, **kwargs: (ends.append(args), ending(*args, **kwargs))
    handler.attach(engine)
    engine.run([0, 1], max_epochs=2)
    assert engine.state.epoch == 2 and handler.run_holder.failure is not None
    assert handler.run_holder.unreachable is not ended and bool(ends) is ended


@pytest.mark.parametrize("given", [{}, {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5"},
                                   {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "9", "MLFLOW_HTTP_REQUEST_TIMEOUT": "9"}])
def test_tracking_calls_try_a_server_briefly_unless_the_user_says_otherwise(given, monkeypatch) -> None:
    """MLflow's own limits (7 retries with a doubling backoff) held a training 247 s on one call to a stopped
    server; the project's apply to its own calls only, and a value the user set wins."""
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT

    from monai_ext.handlers.tracking import HTTP_LIMITS, http_limits

    for name in HTTP_LIMITS:
        monkeypatch.delenv(name, raising=False)
    for name, value in given.items():
        monkeypatch.setenv(name, value)
    before = {name: __import__("os").environ.get(name) for name in HTTP_LIMITS}
    with http_limits():
        inside = (MLFLOW_HTTP_REQUEST_MAX_RETRIES.get(), MLFLOW_HTTP_REQUEST_TIMEOUT.get())
    expected = {**HTTP_LIMITS, **given}
    assert inside == (int(expected["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]), int(expected["MLFLOW_HTTP_REQUEST_TIMEOUT"]))
    assert {name: __import__("os").environ.get(name) for name in HTTP_LIMITS} == before  # put back


@pytest.mark.parametrize("first_parent, parent, expected", [
    ("first", "second", "second"),  # the cross-validation's recorded parent was deleted: a new one holds the fold
    ("first", "first", "first"),    # reopened parent: nothing to change
    (None, "second", "second"),
    ("first", None, "first"),       # a bundle run resumed on its own keeps the parent it had
])
def test_a_continued_run_goes_under_the_current_parent(first_parent, parent, expected, tmp_path, monkeypatch) -> None:
    """A resumed cross-validation's fold continued its run under the first parent, away from the summary."""
    monkeypatch.delenv("MLFLOW_PARENT_RUN_ID", raising=False)
    uri, folder = _store(tmp_path), tmp_path / "models"
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("rules")
    tags = {"mlflow.parentRunId": first_parent} if first_parent else {}
    run_id = client.create_run(experiment, tags=tags).info.run_id
    client.set_terminated(run_id, status="FAILED")
    folder.mkdir()
    (folder / MLFLOW_RUN_RECORD).write_text(__import__("json").dumps({"run_id": run_id}))
    (folder / "checkpoint_iteration=4.pt").write_bytes(b"weights")  # the one the run saved before it crashed
    holder = RunHolder(parent_run_id=parent, record_file=str(folder / MLFLOW_RUN_RECORD), resume=True)
    _handler(uri, run_holder=holder).start(Engine(lambda e, batch: None))
    assert holder.run_id == run_id
    assert client.get_run(run_id).data.tags.get("mlflow.parentRunId") == expected


def test_an_artifact_that_cannot_be_read_is_named_and_the_others_are_logged(tmp_path, caplog) -> None:
    uri = _store(tmp_path / "store")
    handler = _handler(uri, artifact_paths=[str(tmp_path / "gone.png"), str(tmp_path / "kept.json")])
    (tmp_path / "kept.json").write_text("{}")
    (tmp_path / "gone.png").write_bytes(b"png")  # written by this run, then removed before the upload
    experiment = handler.client.create_experiment("files", artifact_location=(tmp_path / "mlruns").as_uri())
    run_id = handler.client.create_run(experiment).info.run_id
    logged = handler.client.log_artifact

    def upload(run, path, artifact_path=None):
        if path.endswith("gone.png"):
            raise FileNotFoundError(2, "No such file or directory", path)
        logged(run, path, artifact_path=artifact_path)

    handler.client.log_artifact = upload
    with caplog.at_level(logging.WARNING, logger="monai_ext.handlers.tracking"):
        handler.log_new_artifacts(run_id)
    assert [a.path for a in handler.client.list_artifacts(run_id)] == ["kept.json"]
    assert any("gone.png was not logged" in r.getMessage() for r in caplog.records)


def _sqlite(path: Path) -> str:
    return f"sqlite:///{path.as_posix()}"


@pytest.mark.parametrize("case, message", [
    ("parent_is_a_file", "the database's folder cannot be made, {file} is a file"),
    ("database_is_a_folder", "names a folder, not a database file: give sqlite:///{folder}/mlruns.db"),
    ("unwritable_folder", "cannot write the database in /proc"),
])
def test_a_sqlite_store_that_cannot_be_written_is_refused_at_once_naming_the_path(case, message, tmp_path) -> None:
    """MLflow retried for about two minutes, then ended with 250 lines ending in 'unable to open database file',
    naming no path."""
    from monai_ext.handlers.tracking import check_tracking_uri

    file, folder = tmp_path / "notes.txt", tmp_path / "runs"
    file.write_text("not a folder")
    folder.mkdir()
    uri = {"parent_is_a_file": _sqlite(file / "mlruns.db"), "database_is_a_folder": _sqlite(folder),
           "unwritable_folder": "sqlite:////proc/mlruns.db"}[case]
    with pytest.raises(ValueError, match=re.escape(message.format(file=file, folder=folder.as_posix()))):
        check_tracking_uri(uri)


def test_a_sqlite_store_in_folders_still_to_be_made_is_accepted(tmp_path) -> None:
    from monai_ext.handlers.tracking import check_tracking_uri

    check_tracking_uri(_sqlite(tmp_path / "new" / "deeper" / "mlruns.db"))  # MLflow makes the folders
    assert not (tmp_path / "new").exists()  # and the check makes nothing


def test_a_new_run_is_named_by_its_start_time_not_by_the_seeded_global_random(tmp_path) -> None:
    """With no name, MLflow drew one from Python's global random, which the bundles seed: every run of a bundle was
    called 'capable-auk-759'."""
    import random

    uri = _store(tmp_path)
    names = []
    for _ in range(2):
        random.seed(42)
        handler = _handler(uri, iteration_log=False, epoch_log=False)
        handler.attach(engine := _trainer())
        engine.run([0], max_epochs=1)
        names.append(mlflow.MlflowClient(uri).get_run(handler.run_holder.run_id).info.run_name)
    assert all(re.fullmatch(r"run_\d{8}_\d{6}", name) for name in names), names


def _tracked_training(uri: str, folder: Path, batches: int, epochs: int, resume: bool) -> None:
    """A tracked training as a bundle runs one: the trainer's MLflow handler attached as the trainer is built, its
    checkpointer (into ``folder``) after it; every iteration's loss and lr logged."""
    trainer = _trainer()
    holder = RunHolder(record_file=str(folder / MLFLOW_RUN_RECORD), resume=resume)
    _handler(uri, run_holder=holder, record_run=True, epoch_log=False, tag_name="train_loss",
             output_transform=lambda out: out["loss"], close_on_complete=True).attach(trainer)
    TrainingCheckpointer(folder, {"trainer": trainer}, resume=resume).attach(trainer)
    trainer.run(list(range(batches)), max_epochs=epochs)


@pytest.mark.parametrize("attempts", [
    [(4, 2), (2, 4)],          # a larger batch on resume: epochs of 2 iterations, the trainer renumbered from 8 to 4
    [(2, 2), (4, 4)],          # a smaller one: renumbered from 4 to 8
    [(4, 2), (2, 3), (2, 4)],  # the renumbered run resumed again with its own batch size: the offset is kept
    [(3, 1), (3, 2)],          # the same epochs: nothing renumbered
])
def test_a_resume_with_another_batch_size_logs_its_iterations_after_the_earlier_ones(attempts, tmp_path) -> None:
    """Each attempt (iterations an epoch, epochs) resumes the one before: the run's loss and lr curves go on one
    step an iteration after the earlier attempts' points. Another batch size renumbers the trainer's iterations, and
    the resumed points were logged over the first attempt's (a gap after them with a smaller batch)."""
    uri, folder = _store(tmp_path / "store"), tmp_path / "models"
    folder.mkdir()
    trained = [0]  # iterations trained by the end of each attempt
    for i, (batches, epochs) in enumerate(attempts):
        _tracked_training(uri, folder, batches, epochs, resume=i > 0)
        trained.append(trained[-1] + batches * (epochs - (attempts[i - 1][1] if i else 0)))
    (run,) = _runs(uri)
    client = mlflow.MlflowClient(uri)
    for metric in ("train_loss", "lr_group_0"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, metric)] == list(range(1, trained[-1] + 1))
    resumes = len(attempts) - 1
    assert run.data.tags["resumes"] == str(resumes)
    assert run.data.tags[f"resume_{resumes}.from_iteration"] == str(trained[-2])  # in the curves' steps


@pytest.mark.parametrize("epochs, trains", [
    (2, False),  # the saved epochs again: nothing to train
    (1, False),  # fewer: nothing either
    (3, True),   # more: the run is continued
])
def test_a_resume_with_nothing_left_to_train_leaves_its_run_as_it_was(epochs, trains, tmp_path) -> None:
    """A resume at or past its ``--epochs`` trains nothing: it reopened the finished run, counted a resume, logged the
    files and the model again (a new version of a registered one) and ended it anew."""
    uri, folder = _store(tmp_path / "store"), tmp_path / "models"
    folder.mkdir()
    _tracked_training(uri, folder, batches=2, epochs=2, resume=False)
    (before,) = _runs(uri)
    _tracked_training(uri, folder, batches=2, epochs=epochs, resume=True)
    (after,) = _runs(uri)  # and no new run either
    assert after.info.status == "FINISHED"
    if trains:
        assert after.data.tags["resumes"] == "1" and after.info.end_time > before.info.end_time
    else:
        assert (after.info.end_time, after.data.tags, after.data.metrics) == (
            before.info.end_time, before.data.tags, before.data.metrics)


@pytest.mark.parametrize("error, status", [
    (RuntimeError("CUDA out of memory"), "FAILED"),
    (StopSignal(15), "KILLED"),        # a queue's time limit, docker stop
    (KeyboardInterrupt(), "KILLED"),   # Ctrl-C
])
def test_a_stopped_training_ends_its_run_killed_and_a_crashed_one_failed(error, status, tmp_path, caplog) -> None:
    """A stop signal or Ctrl-C ended the run FAILED, so a search for failed runs listed every stopped job; Ctrl-C's
    line also ended in "FAILED: " with nothing after it."""
    handler = _handler(_store(tmp_path), iteration_log=False, epoch_log=False)
    engine = _trainer()
    handler.attach(engine)

    @engine.on(Events.ITERATION_COMPLETED)
    def _stop(_: Engine) -> None:
        raise error

    with caplog.at_level(logging.WARNING, logger="monai_ext.handlers.tracking"), pytest.raises(type(error)):
        engine.run([0], max_epochs=1)
    assert mlflow.MlflowClient(handler.client.tracking_uri).get_run(handler.run_holder.run_id).info.status == status
    said = [r.getMessage() for r in caplog.records if "ended as" in r.getMessage()]
    assert len(said) == 1 and said[0].endswith(f"ended as {status}: {str(error) or type(error).__name__}")


def _hashed(key: str, name: str) -> str:
    """A renamed metric's key: ``key`` (cut to fit), ``_`` and 8 hex digits of the original name's SHA-256."""
    import hashlib

    suffix = "_" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return key[: 250 - len(suffix)] + suffix


@pytest.mark.parametrize("name, key", [
    ("auc_benign (BI-RADS 3)", _hashed("auc_benign _BI-RADS 3_", "auc_benign (BI-RADS 3)")),
    ("train/loss", "train/loss"),   # a normalised path: kept
    ("/loss", _hashed("_loss", "/loss")), ("a//b", _hashed("a__b", "a//b")), ("..", _hashed("_", "..")),
    ("val_dice", "val_dice"), ("x" * 300, _hashed("x" * 250, "x" * 300)),
])
def test_metric_names_are_made_ones_mlflow_takes(name, key) -> None:
    from mlflow.utils.validation import _validate_metric_name

    from monai_ext.handlers.tracking import metric_key

    assert metric_key(name) == key
    _validate_metric_name(key)


@pytest.mark.parametrize("names", [("recall_lesion <10 mm", "recall_lesion >10 mm"), ("auc_HER2+", "auc_HER2?"),
                                   ("val_" + "x" * 246 + "_auc", "val_" + "x" * 246 + "_f1"),
                                   ("auc_a b", "auc_a/b/")])
def test_names_that_differ_only_where_mlflow_refuses_keep_series_of_their_own(names) -> None:
    """Renamed alike, two metrics shared one series and one value was lost without an error."""
    from monai_ext.handlers.tracking import metric_key

    assert len({metric_key(name) for name in names}) == 2


def test_a_metric_name_mlflow_refuses_is_logged_under_one_it_takes(tmp_path, caplog) -> None:
    """One metric name MLflow refuses failed the epoch's whole batch and turned tracking off for the rest of the
    training, as a stopped server does, with a warning that blamed the store."""
    handler = _handler(_store(tmp_path), iteration_log=False, epoch_log=True)
    engine = Engine(lambda e, batch: None)
    handler.attach(engine)
    name = "auc_benign (BI-RADS 3)"
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: e.state.metrics.update({name: 0.5, "n": 2}))
    with caplog.at_level(logging.WARNING, logger="monai_ext.handlers.tracking"):
        engine.run([0], max_epochs=2)
    client = mlflow.MlflowClient(handler.client.tracking_uri)
    for key in (_hashed("auc_benign _BI-RADS 3_", name), "n"):
        assert [m.step for m in client.get_metric_history(handler.run_holder.run_id, key)] == [1, 2]
    assert not handler.run_holder.offline
    assert sum(f"{name!r} is logged as" in r.getMessage() for r in caplog.records) == 1  # once, not each epoch


@pytest.mark.parametrize("written_by_the_run", [True, False])
def test_an_evaluation_is_a_run_of_its_own_linked_to_the_training_that_wrote_the_checkpoint(written_by_the_run,
                                                                                            tmp_path) -> None:
    """evaluate.yaml's run was left RUNNING for good (no trainer ends it), and nothing said which training it scored.
    A checkpoint older than the run recorded beside it (a later training stopped before its first best model) is
    not that run's."""
    import os

    uri, folder = _store(tmp_path / "store"), tmp_path / "models"
    folder.mkdir()
    _tracked_training(uri, folder, batches=2, epochs=1, resume=False)
    (training,) = _runs(uri)
    checkpoint = folder / "model.pt"
    checkpoint.write_bytes(b"the best model")
    if not written_by_the_run:
        os.utime(checkpoint, (0, 0))
    # as evaluate.yaml builds it: the run holder of the checkpoint folder, here even with --resume true
    holder = RunHolder(record_file=str(folder / MLFLOW_RUN_RECORD), resume=True)
    handler = _handler(uri, run_holder=holder, evaluated_checkpoint=str(checkpoint), iteration_log=False)
    evaluator = Engine(lambda e, batch: None)
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda e: e.state.metrics.update({"test_macro_f1": 0.5}))
    handler.attach(evaluator)
    evaluator.run([0], max_epochs=1)
    runs = {run.info.run_id: run for run in _runs(uri)}
    evaluation = runs.pop(handler.run_holder.run_id)
    after = runs[training.info.run_id]
    assert list(runs) == [training.info.run_id]
    assert (after.info.status, after.data.tags, after.data.metrics) == (  # not reopened or changed
        training.info.status, training.data.tags, training.data.metrics)
    assert evaluation.info.status == "FINISHED" and evaluation.data.metrics == {"test_macro_f1": 0.5}
    assert evaluation.data.tags["evaluated_checkpoint"] == str(checkpoint)
    assert evaluation.data.tags.get("evaluated_run_id") == (training.info.run_id if written_by_the_run else None)


@pytest.mark.parametrize("interval, logged", [
    (0.0, [1, 2, 5, 6]),  # tried again at the next call: the curves go on after the outage
    (3600.0, [1, 2]),     # not before the run's end: its files are logged and it is ended all the same
])
def test_a_server_back_after_an_outage_gets_the_rest_of_the_run(interval, logged, tmp_path, monkeypatch) -> None:
    """A server that refused connections for two iterations lost the rest of the training: every later value, the
    run's files and model, and its end (left RUNNING for good), though it answered again a moment later."""
    from monai_ext.handlers import tracking

    down = [False]
    monkeypatch.setattr(tracking, "RETRY_INTERVAL_S", interval, raising=False)
    (tmp_path / "metrics.json").write_text("[]")
    handler = _handler(_store(tmp_path), iteration_log=True, epoch_log=False, output_transform=lambda out: out["loss"],
                       tag_name="train_loss", close_on_complete=True, artifact_paths=[str(tmp_path / "metrics.json")],
                       resumed=True)
    working, read = handler.client.log_batch, handler.client.get_run

    def log_batch(*args, **kwargs):
        if down[0]:
            raise _connection_refused()
        return working(*args, **kwargs)

    def get_run(*args, **kwargs):  # the probe of a store that failed
        if down[0]:
            raise _connection_refused()
        return read(*args, **kwargs)

    handler.client.log_batch, handler.client.get_run = log_batch, get_run
    engine = _trainer()
    engine.add_event_handler(Events.ITERATION_STARTED, lambda e: down.__setitem__(0, e.state.iteration in (3, 4)))
    handler.attach(engine)
    engine.run([0, 1], max_epochs=3)
    client = mlflow.MlflowClient(handler.client.tracking_uri)
    run = client.get_run(handler.run_holder.run_id)
    assert run.info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["metrics.json"]  # the end logged its files
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == logged
    assert run.data.tags["tracking_incomplete"].startswith(f"{6 - len(logged)} logging call(s) lost; first: could not")


def test_a_store_that_failed_is_probed_quickly_before_any_call_waits_on_it(tmp_path, monkeypatch) -> None:
    """A half-working server (its /health answering, its database locked) passed the old health check, and each
    next call then held the training for a normal call's retries (3 x 60 s), every five minutes. The probe is the
    run read back, one try of at most 5 s whatever the environment sets; while it fails, no logging call is made."""
    import os

    from monai_ext.handlers import tracking

    monkeypatch.setattr(tracking, "RETRY_INTERVAL_S", 0.0, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")
    handler = _handler(_store(tmp_path), iteration_log=True, epoch_log=False, output_transform=lambda out: out["loss"])
    writes, probes = [], []

    def log_batch(*args, **kwargs):
        writes.append(args)
        raise _connection_refused()

    def get_run(*args, **kwargs):
        probes.append((os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"], os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"]))
        raise _connection_refused()  # a locked database: the read hangs until its timeout

    engine = _trainer()
    engine.add_event_handler(Events.ITERATION_STARTED(once=1), lambda _: setattr(handler.client, "log_batch", log_batch))
    engine.add_event_handler(Events.ITERATION_STARTED(once=1), lambda _: setattr(handler.client, "get_run", get_run))
    handler.attach(engine)
    engine.run([0, 1], max_epochs=3)
    assert len(writes) == 1  # the call that failed; none after it while the probe fails
    assert probes and set(probes) == {("0", "5")}
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "9"  # the user's setting put back
