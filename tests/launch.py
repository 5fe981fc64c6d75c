"""Running a launcher (torchrun) from a test, bounded in time, without leaving its workers behind."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Sequence
from typing import Any

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
