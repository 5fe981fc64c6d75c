"""The MLflow parent run of a cross-validation (:class:`ParentRun`): one parent per cross-validation, recorded in its
results folder so that a resume reopens it, with a nested run per (start, fold) that also gets the fold's test scores,
and the mean/std summary; a store that fails or a server that goes away turns tracking off with one warning, and the
cross-validation goes on.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from monai_ext.io.atomic import atomic_write_text
from monai_ext.io.errors import one_line

logger = logging.getLogger(__name__)


#: The record of a cross-validation's MLflow parent run, in its results folder: ``--resume true`` reopens that run.
PARENT_RUN_RECORD = "mlflow_parent.json"


class ParentRun:
    """The MLflow parent run of a cross-validation; fold runs attach to it through MLFLOW_PARENT_RUN_ID.

    Its id is recorded in ``out/mlflow_parent.json``. A resumed cross-validation reopens the recorded run where the
    tracking store still holds it (a new parent, said in a warning, where it does not): a new parent on each resume
    held none of the continued fold runs, which stayed under the first, whose mean/std no longer described them.

    Its calls make few quick tries (:func:`~monai_ext.handlers.tracking.http_limits`). Once the store fails, the
    parent goes offline with one warning: later folds train untracked (:meth:`reachable`), and the summary is left
    to ``cv_summary.json``; a lost server ended the whole cross-validation at the next fold.

    Args:
        name: the protocol's name (the experiment is ``cv_<name>``).
        out: the results folder (its SQLite store where no URI is given, and the record).
        tracking_uri: MLflow server or store (default MLFLOW_TRACKING_URI, else ``out/mlruns.db``).
        resume: reopen the parent run recorded in ``out``.
    """

    def __init__(self, name: str, out: Path, tracking_uri: str | None, resume: bool = False) -> None:
        from mlflow.tracking import MlflowClient
        from monai.utils import path_to_sqlite_uri

        from monai_ext.handlers.tracking import (
            check_tracking_server,
            git_commit,
            http_limits,
            sqlite_artifact_location,
        )

        self.uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or path_to_sqlite_uri(str(out / "mlruns.db"))
        check_tracking_server(self.uri)
        self.experiment = f"cv_{name}"
        self.client = MlflowClient(self.uri)
        self.record_file = out / PARENT_RUN_RECORD
        self.offline = False  # the store failed: nothing more is logged
        self.unreachable = False  # ... because the server did not answer: the run's end is not tried either
        with http_limits():
            found = self.client.get_experiment_by_name(self.experiment)
            # the fold runs log into this experiment, so its artifact location is theirs too
            self.experiment_id = found.experiment_id if found else self.client.create_experiment(
                self.experiment, artifact_location=sqlite_artifact_location(self.uri))
            self.run_id = (self.recorded_run() if resume else None) or self.client.create_run(
                self.experiment_id, run_name=f"cv_{name}", tags={"git_commit": git_commit()}).info.run_id
        atomic_write_text(self.record_file, json.dumps({"run_id": self.run_id}) + "\n")
        os.environ["MLFLOW_PARENT_RUN_ID"] = self.run_id

    def recorded_run(self) -> str | None:
        """Reopen the parent run of ``record_file`` and return its id; None (said) where there is no record, or
        its run is not an active run of this store's experiment."""
        from mlflow.exceptions import MlflowException

        if not self.record_file.is_file():
            logger.info("MLflow: no parent run recorded in %s; the resumed folds go under a new parent run",
                        self.record_file.parent)
            return None
        try:
            run_id = str(json.loads(self.record_file.read_text(encoding="utf-8"))["run_id"])
            run = self.client.get_run(run_id)
            if run.info.experiment_id != self.experiment_id or run.info.lifecycle_stage != "active":
                raise ValueError(f"run {run_id} is deleted or of another experiment")
        # unreadable, of another layout, or not in this store
        except (OSError, ValueError, KeyError, TypeError, MlflowException) as e:
            logger.warning("MLflow: the parent run recorded in %s is not in this tracking store (%s); the resumed "
                           "folds go under a new parent run", self.record_file, one_line(str(e))[:300])
            return None
        self.client.update_run(run_id, status="RUNNING")
        resumes = int(run.data.tags.get("resumes", "0")) + 1
        self.client.set_tag(run_id, "resumes", str(resumes))
        logger.info("MLflow: continuing parent run %s (resume %d)", run_id, resumes)
        return run_id

    def reachable(self) -> bool:
        """Whether the next fold is to be tracked: the store has not failed, and a server answers its health
        check (asked once, without MLflow's retries); a server that does not turns tracking off, with a warning."""
        from monai_ext.handlers.tracking import check_tracking_server

        if not self.offline:
            try:
                check_tracking_server(self.uri)
            except ValueError as e:
                self._go_offline("reach the server before the next fold", e, unreachable=True)
        return not self.offline

    def log_fold_test(self, run_name: str, report: Mapping[str, Any], report_file: Path) -> None:
        """Log a fold's test scores (its report's numbers, as ``test_<name>``) and ``report_file`` into the fold's
        run (the latest run named ``run_name`` under this parent): the test is a bundle run of its own, untracked,
        and the fold run held only validation figures."""
        self._call("log the fold's test scores", self._log_fold_test, run_name, report, report_file)

    def _log_fold_test(self, run_name: str, report: Mapping[str, Any], report_file: Path) -> None:
        from mlflow.entities import Metric

        runs = self.client.search_runs(
            [self.experiment_id], order_by=["attributes.start_time DESC"],
            filter_string=f"tags.`mlflow.parentRunId` = '{self.run_id}' and attributes.run_name = '{run_name}'")
        # a fold stopped (SIGTERM) and resumed has its stopped run KILLED (FAILED before 0.6.28, or after a crash)
        # beside the new one: say which replaced it, so that the parent's child is not read as a fold that failed
        for abandoned in runs[1:]:
            if abandoned.info.status in ("FAILED", "KILLED") and "superseded_by" not in abandoned.data.tags:
                self.client.set_tag(abandoned.info.run_id, "superseded_by", runs[0].info.run_id)
        if not runs:  # a resume with nothing left to train reopens no run, so it was not put under a new parent
            logger.info("MLflow: no run %s under parent run %s; its test scores are in %s", run_name, self.run_id,
                        report_file)
            return
        now = int(time.time() * 1000)
        # null (a metric the fold leaves undefined) and the report's tables are not scores to log
        scores = [Metric(f"test_{key}", float(value), now, 0) for key, value in report.items()
                  if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)]
        if scores:
            self.client.log_batch(runs[0].info.run_id, metrics=scores)
        if report_file.is_file():
            self.client.log_artifact(runs[0].info.run_id, str(report_file))

    def finish(self, summary: Mapping[str, Any], artifacts: Sequence[Path]) -> None:
        """Log the mean/std of every start and metric and the summary files, and end the run as FINISHED."""
        for method, metrics in summary.items():
            for metric, stats in metrics.items():
                for name in ("mean", "std"):  # an undefined one (no fold, or one) is left out, not logged as NaN
                    if np.isfinite(stats[name]):
                        self._call("log the summary", self.client.log_metric, self.run_id, f"{method}_{metric}_{name}",
                                   stats[name])
        for path in artifacts:
            self._call("log the summary files", self.client.log_artifact, self.run_id, str(path))
        self._end("FINISHED")
        os.environ.pop("MLFLOW_PARENT_RUN_ID", None)

    def fail(self, stopped: bool = False) -> None:
        """Close the run as FAILED (a fold raised), or KILLED where the user ``stopped`` it (a stop signal, Ctrl-C;
        as the fold runs end, so that a search for FAILED runs finds the crashes); a store that fails then is warned
        of, so that the fold's own error is the one raised."""
        os.environ.pop("MLFLOW_PARENT_RUN_ID", None)
        self._end("KILLED" if stopped else "FAILED")

    def _call(self, what: str, call: Any, *args: Any) -> None:
        """``call(*args)`` under the request limits, unless the store failed before; a failure now turns tracking
        off (:meth:`_go_offline`)."""
        from monai_ext.handlers.tracking import http_limits, is_unreachable, tracking_errors

        if self.offline:
            return
        try:
            with http_limits():
                call(*args)
        except tracking_errors() as e:
            self._go_offline(what, e, is_unreachable(e))

    def _go_offline(self, what: str, error: BaseException, unreachable: bool) -> None:
        self.offline, self.unreachable = True, unreachable
        logger.warning("MLflow: could not %s (%s); the cross-validation goes on without tracking (its results are in "
                       "cv_summary.json), parent run %s is left as the store has it", what, one_line(str(error))[:300],
                       self.run_id)

    def _end(self, status: str) -> None:
        """End the run as ``status``; tried after a store error (it may have passed), not after a server that did
        not answer (each try would wait out the retries again)."""
        from monai_ext.handlers.tracking import http_limits, tracking_errors

        if self.unreachable:
            return
        try:
            with http_limits():
                self.client.set_terminated(self.run_id, status=status)
        except tracking_errors() as e:
            logger.warning("MLflow: parent run %s could not be ended as %s (%s); the store shows it RUNNING",
                           self.run_id, status, one_line(str(e))[:300])
