"""A live ``mlflow server`` on 127.0.0.1 stopped in the middle of a tracked training: the training goes on at once,
untracked, instead of waiting out MLflow's retries (247 s for one call) on every call and again at the run's end."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from ignite.engine import Engine, Events

from tests.servers import serve, start_mlflow_server

mlflow = pytest.importorskip("mlflow")
pytestmark = pytest.mark.slow  # a server process of its own: it is stopped


class LiveServer:
    """An ``mlflow server`` process (and the uvicorn workers it starts) with its URL, to be stopped mid-test."""

    def __init__(self, process: subprocess.Popen, url: str) -> None:
        self.process, self.url = process, url

    def stop(self) -> None:
        """Stop the server and its workers (its own process group): the port refuses connections after."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        try:  # workers outliving the CLI
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextmanager
def live_mlflow_server(root: Path) -> Iterator[LiveServer]:
    """A fresh ``mlflow server`` (SQLite backend in ``root``) on a free loopback port, stopped when the block ends."""
    from tests.handlers.test_tracking import wait_for_health

    log = root / "server.log"

    def start(port: int) -> subprocess.Popen:  # a session of its own: stop() ends the workers with it
        return start_mlflow_server(root, port, log, start_new_session=True)

    process, url = serve(start, wait_for_health, lambda p: LiveServer(p, "").stop(), log)
    server = LiveServer(process, url)
    try:
        yield server
    finally:
        server.stop()


def record_requests(monkeypatch: pytest.MonkeyPatch, stopped: list[bool]) -> list[dict[str, Any]]:
    """Record every MLflow HTTP request (its URL, retries and timeout) made once ``stopped`` holds True. Such a
    request asking for more than :data:`~monai_ext.handlers.tracking.HTTP_LIMITS` is refused at once, as the stopped
    server refuses it after MLflow's minutes of retries, so that a test of those limits fails fast."""
    import requests
    from mlflow.utils import rest_utils

    from monai_ext.handlers.tracking import HTTP_LIMITS

    send, after_stop = rest_utils._get_http_response_with_retries, []

    def recorded(method, url, max_retries, backoff_factor, *args, **kwargs):
        if not stopped[0]:
            return send(method, url, max_retries, backoff_factor, *args, **kwargs)
        after_stop.append({"url": url, "max_retries": max_retries, "backoff_factor": backoff_factor,
                           "timeout": kwargs.get("timeout")})
        if (max_retries > int(HTTP_LIMITS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])
                or backoff_factor > int(HTTP_LIMITS["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"])):
            raise requests.exceptions.ConnectionError(f"{url}: refused (after {max_retries} retries, not waited)")
        return send(method, url, max_retries, backoff_factor, *args, **kwargs)

    monkeypatch.setattr(rest_utils, "_get_http_response_with_retries", recorded)
    return after_stop


def within_limits(request: dict[str, Any]) -> bool:
    from monai_ext.handlers.tracking import HTTP_LIMITS

    return (request["max_retries"] <= int(HTTP_LIMITS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])
            and request["timeout"] <= int(HTTP_LIMITS["MLFLOW_HTTP_REQUEST_TIMEOUT"]))


def test_a_server_stopped_mid_training_costs_one_quick_failed_call(tmp_path, monkeypatch, caplog) -> None:
    """One call to the stopped server took 247 s to fail (MLflow's 7 retries with backoff), and the run's end waited
    as long again: the first failed call now tries within the project's limits, and nothing else asks the server
    (the run's end neither). The training finishes every epoch. (One case: each server takes half a minute to start
    on a loaded machine; the limits and the skipped end are parametrized in test_tracking_rules.py.)"""
    from monai_ext.handlers.tracking import ProjectMLFlowHandler, RunHolder

    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    stopped = [False]
    after_stop = record_requests(monkeypatch, stopped)
    engine = Engine(lambda e, batch: {"loss": torch.tensor(0.5)})
    engine.optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with live_mlflow_server(tmp_path) as server:
        handler = ProjectMLFlowHandler(run_holder=RunHolder(), tracking_uri=server.url, experiment_name="lost",
                                       iteration_log=True, epoch_log=True, close_on_complete=True,
                                       output_transform=lambda out: out["loss"])
        handler.attach(engine)

        @engine.on(Events.ITERATION_STARTED(once=3))  # in the second epoch
        def _stop(_: Engine) -> None:
            server.stop()
            stopped[0] = True

        with caplog.at_level(logging.WARNING, logger="monai_ext.handlers.tracking"):
            engine.run([0, 1], max_epochs=3)
    assert engine.state.epoch == 3 and handler.run_holder.offline and handler.run_holder.unreachable
    # the failed call, and one probe at the run's end (the run read back, one try of at most 5 s): the server may be
    # back by then
    assert [r["url"].rsplit("/", 1)[-1] for r in after_stop] == ["log-batch", "get"], after_stop
    assert all(within_limits(r) for r in after_stop), after_stop
    assert (after_stop[1]["max_retries"], after_stop[1]["timeout"]) == (0, 5), after_stop
    said = [r.getMessage() for r in caplog.records if "without tracking" in r.getMessage()]
    assert len(said) == 1, said
