"""Running a launcher (torchrun) from a test, bounded in time, without leaving its workers behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.warm_python import run_python

WARM_RANK = Path(__file__).with_name("warm_rank.py")

#: Seconds a launcher gets to stop its workers after SIGTERM before it is killed. More than torchrun's own 30 s: it
#: SIGKILLs the workers that have not stopped 30 s after its SIGTERM (a worker blocked in a collective never runs the
#: trainer's Python SIGTERM handler). Killed at the same 30 s, torchrun left them running, orphaned and holding its
#: output pipes, and ``communicate`` waited for them until the process group's 30-minute timeout.
GRACE_S = 45


def run_bounded(cmd: Sequence[str], *, timeout: float, check: bool = False,
                **popen_kwargs: Any) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)``, but a timeout stops the workers too.

    ``subprocess.run`` answers a timeout with SIGKILL to the process it started. torchrun starts its workers in
    sessions of their own, so they outlive a killed launcher and wait in a collective for up to the process group's
    30-minute timeout, on a CI machine of two cores. SIGTERM first lets torchrun stop them; a launcher that does not
    stop within :data:`GRACE_S` is killed.

    Raises:
        subprocess.TimeoutExpired: after the launcher has stopped, with what it printed.
        subprocess.CalledProcessError: ``check`` and a non-zero exit.
    """
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen_kwargs) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            try:
                out, err = proc.communicate(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            raise subprocess.TimeoutExpired(cmd, timeout, output=out, stderr=err) from None
    result = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    if check:
        result.check_returncode()
    return result


def run_torchrun(target: Sequence[str | int | os.PathLike], *, processes: int, env: Mapping[str, str], timeout: float,
                 cwd: str | os.PathLike | None = None, check: bool = False,
                 fresh: bool = False) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=PROCESSES TARGET...``, where ``TARGET`` is ``[SCRIPT, *ARGS]`` or
    ``["-m", MODULE, *ARGS]``; output captured as text.

    By default the launcher runs in a fork of the worker's warm interpreter and its ranks are forks of it
    (:mod:`tests.warm_rank`): the same elastic agent, rendezvous, process group and exit codes, without each rank's
    imports. ``fresh`` (or ``MONAI_EXT_TEST_FRESH_PYTHON=1``) starts the real ``python -m torch.distributed.run``
    with fresh interpreters, as a user's command does: the tests of what the launcher and a fresh rank do with
    signals, kills and uncaught errors, and one run of each bundle, ask for it.

    Raises:
        subprocess.TimeoutExpired: past ``timeout`` seconds, after the launcher and its ranks have stopped.
        subprocess.CalledProcessError: ``check`` and a non-zero exit.
    """
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    target = [str(part) if isinstance(part, int) else os.fspath(part) for part in target]
    if fresh or os.environ.get("MONAI_EXT_TEST_FRESH_PYTHON") == "1":
        return run_bounded([*launcher, *target], timeout=timeout, check=check, cwd=cwd, env=dict(env))
    # past the timeout, SIGTERM first as run_bounded sends it: the agent stops its ranks (SIGKILL after its own 30 s)
    return run_python([*launcher, "--run-path", "--start-method", "fork", str(WARM_RANK), *target], cwd=cwd,
                      env=env, timeout=timeout, check=check, grace=GRACE_S)
