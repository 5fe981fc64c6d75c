"""The MLflow parent run of a cross-validation (``monai_ext.apps.cv_tracking``): how it ends, where a local store
keeps its files, and a server lost between folds. Its resume and the fold runs' test scores are tested through the
runner in tests/apps/test_crossval.py."""

from __future__ import annotations

import os

import pytest

from monai_ext.apps.cv_tracking import ParentRun


@pytest.mark.parametrize("store, stopped, status", [("answers", False, "FAILED"), ("fails", False, "FAILED"),
                                                    ("answers", True, "KILLED"), ("fails", True, "KILLED")])
def test_parent_run_fail_ends_the_run_and_unsets_the_parent_id(store, stopped, status, monkeypatch, caplog) -> None:
    """A store failing as the run is closed was raised over the fold's own error (MLflow's, after minutes); a run
    the user stopped ends KILLED, as its fold runs do, not FAILED."""
    from mlflow.exceptions import MlflowException

    calls = []

    class Client:
        def set_terminated(self, run_id, status) -> None:
            calls.append((run_id, status))
            if store == "fails":
                raise MlflowException("API request to http://127.0.0.1:9/api/2.0/mlflow/runs/update failed")

    parent = object.__new__(ParentRun)
    parent.client, parent.run_id, parent.offline, parent.unreachable = Client(), "abc", False, False
    monkeypatch.setenv("MLFLOW_PARENT_RUN_ID", "abc")
    with caplog.at_level("WARNING"):
        parent.fail(stopped=stopped)
    assert calls == [("abc", status)] and "MLFLOW_PARENT_RUN_ID" not in os.environ
    assert (f"could not be ended as {status}" in caplog.text) is (store == "fails")


def test_a_local_store_keeps_the_parent_runs_artifacts_beside_its_database(tmp_path, monkeypatch) -> None:
    """No server: the store is ``OUT/mlruns.db``, and the artifacts of the parent run (and of the fold runs, which
    share its experiment) go to ``OUT/mlruns``, as a bundle run's do; MLflow put them in ``./mlruns`` of whichever
    folder the command ran in."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    elsewhere = tmp_path / "where_the_user_ran_it"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = tmp_path / "cv"
    out.mkdir()
    (out / "cv_table.md").write_text("| method |")
    parent = ParentRun("toy", out, None)
    try:
        parent.finish({"random": {"macro_f1": {"mean": 0.5, "std": 0.1}}}, [out / "cv_table.md"])
    finally:
        os.environ.pop("MLFLOW_PARENT_RUN_ID", None)
    assert (out / "mlruns.db").is_file() and [p.name for p in (out / "mlruns").rglob("cv_table.md")] == ["cv_table.md"]
    assert not list(elsewhere.iterdir())


@pytest.mark.parametrize("store, reachable", [("server_gone", False), ("sqlite", True)])
def test_a_server_gone_before_a_fold_leaves_it_and_the_parents_end_untracked(store, reachable, tmp_path,
                                                                             caplog) -> None:
    """The fold's handler refused the unreachable server and ended the whole cross-validation; now the parent
    says so once, the fold trains untracked, and the parent's summary and end do not try the server again."""
    from tests.servers import refused_port

    calls = []

    class Client:
        def __getattr__(self, name):
            return lambda *args, **kwargs: calls.append(name)

    parent = object.__new__(ParentRun)
    parent.client, parent.run_id, parent.offline, parent.unreachable = Client(), "abc", False, False
    with refused_port() as port, caplog.at_level("WARNING"):
        parent.uri = f"http://127.0.0.1:{port}" if store == "server_gone" else f"sqlite:///{tmp_path}/m.db"
        assert parent.reachable() is reachable and parent.reachable() is reachable
        parent.finish({"random": {"macro_f1": {"mean": 0.5, "std": 0.1}}}, [tmp_path / "cv_table.md"])
    assert caplog.text.count("goes on without tracking") == (0 if reachable else 1)
    assert calls == (["log_metric", "log_metric", "log_artifact", "set_terminated"] if reachable else [])
