"""The tests' warm interpreter (``tests/warm_python.py``) gives what a fresh ``python -m`` process gives."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import warm_python
from tests.warm_python import run_python

# Prints what a run sees of its start-up, then ends as its first argument says.
PROBE = textwrap.dedent("""
    import os, sys, tempfile, threading
    import torch
    print("argv0", os.path.basename(sys.argv[0]), sys.argv[1:])
    print("main", __name__, getattr(__spec__, "name", None))  # a script has no spec
    first = sys.path[0]
    print("cwd", os.getcwd() == os.environ["EXPECTED_CWD"], first in ("", os.getcwd()),
          "" if first in ("", os.getcwd()) else os.path.basename(first))
    print("env", os.environ.get("PROBE_SETTING"), "NOT_GIVEN" in os.environ)
    print("tmp", tempfile.gettempdir() == os.environ["TMPDIR"])
    print("threads", torch.get_num_threads())
    print("monai_ext", "monai_ext" in sys.modules)
    import atexit, numpy
    atexit.register(lambda: print("at exit, __main__ is", os.path.basename(sys.modules["__main__"].__file__)))
    print("random", numpy.random.rand(), torch.rand(1).item(), file=sys.stderr)  # stderr: differs between runs
    threading.Thread(target=lambda: print("thread joined")).start()
    how = sys.argv[1]
    if how == "raise":
        raise RuntimeError("boom")
    if how == "exit":
        sys.exit(3)
    if how == "message":
        sys.exit("a message")
    if how == "interrupt":
        raise KeyboardInterrupt
    if how == "hang":
        import signal, time
        def stopped(number, frame):
            open(os.path.join(os.environ["TMPDIR"], "stopped_by"), "w").write(signal.Signals(number).name)
            sys.exit(143)
        signal.signal(signal.SIGTERM, stopped)
        print("started, then hangs")
        time.sleep(60)
""")


@pytest.fixture(scope="module")
def own_warm_interpreter() -> Iterator[None]:
    """A warm interpreter of this module's, started with a setting of the worker's that no run is given, and
    torch on two threads where the runs ask for one."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NOT_GIVEN", "the worker's")
        patch.setenv("OMP_NUM_THREADS", "2")
        patch.delenv("PYTHONUNBUFFERED", raising=False)  # the server makes its runs unbuffered itself
        patch.delenv("MONAI_EXT_TEST_FRESH_PYTHON", raising=False)
        patch.setattr(warm_python, "_server", None)
        yield
        if warm_python._server is not None:
            warm_python._server.close()


@pytest.fixture
def probe_env(own_warm_interpreter, tmp_path) -> dict[str, str]:
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "probe_module.py").write_text(PROBE)
    (tmp_path / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "NOT_GIVEN"}
    return {**env, "PYTHONPATH": str(tmp_path / "modules"), "PROBE_SETTING": "given", "OMP_NUM_THREADS": "1",
            "TMPDIR": str(tmp_path / "tmp"), "EXPECTED_CWD": str(tmp_path)}


def fresh(args: list[str], cwd, env, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "probe_module", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("how", ["end", "raise", "exit", "message", "interrupt"])
def test_a_warm_run_gives_what_a_fresh_interpreter_gives(how, tmp_path, probe_env) -> None:
    expected = fresh([how], tmp_path, probe_env, 120)
    warm = run_python([sys.executable, "-m", "probe_module", how], cwd=tmp_path, env=probe_env, timeout=120)
    assert warm.returncode == expected.returncode == {"end": 0, "raise": 1, "exit": 3, "message": 1,
                                                      "interrupt": -2}[how]
    assert warm.stdout == expected.stdout
    assert "argv0 probe_module.py" in warm.stdout and "env given False" in warm.stdout
    assert "cwd True True" in warm.stdout and "tmp True" in warm.stdout and "threads 1" in warm.stdout
    assert "monai_ext False" in warm.stdout and "thread joined" in warm.stdout
    assert "at exit, __main__ is probe_module.py" in warm.stdout
    # the same traceback (or message) on stderr, less the lines of runpy's frames that differ
    def last_line(text: str) -> str:
        lines = [line for line in text.splitlines() if line.strip() and not line.startswith("random")]
        return lines[-1] if lines else ""
    assert last_line(warm.stderr) == last_line(expected.stderr)


@pytest.mark.parametrize("how", ["end", "raise"])
def test_a_warm_script_run_gives_what_a_fresh_interpreter_gives(how, tmp_path, probe_env) -> None:
    """``python SCRIPT``: the script's folder first on ``sys.path``, its path as ``argv[0]``, no module spec."""
    command = [sys.executable, str(tmp_path / "modules" / "probe_module.py"), how]
    expected = subprocess.run(command, cwd=tmp_path, env=probe_env, capture_output=True, text=True, timeout=120)
    warm = run_python(command, cwd=tmp_path, env=probe_env, timeout=120)
    assert warm.returncode == expected.returncode == {"end": 0, "raise": 1}[how]
    assert warm.stdout == expected.stdout
    assert "main __main__ None" in warm.stdout and "cwd True False modules" in warm.stdout
    # Python takes a script's __file__ from __main__ once it has run: the exit handler fails in both
    assert "has no attribute '__file__'" in warm.stderr and "has no attribute '__file__'" in expected.stderr
    def without_random(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("random")]
    assert without_random(warm.stderr)[-1] == without_random(expected.stderr)[-1]


def test_a_missing_script_is_said_as_python_says_it(tmp_path, probe_env) -> None:
    command = [sys.executable, str(tmp_path / "missing.py")]
    expected = subprocess.run(command, cwd=tmp_path, env=probe_env, capture_output=True, text=True, timeout=120)
    warm = run_python(command, cwd=tmp_path, env=probe_env, timeout=120)
    assert warm.returncode == expected.returncode == 2
    assert warm.stderr.split(": ", 1)[1] == expected.stderr.split(": ", 1)[1]  # less the interpreter's path


@pytest.mark.parametrize("grace", [None, 30])
def test_a_warm_run_past_its_timeout_is_stopped_as_asked(tmp_path, probe_env, grace) -> None:
    """Killed at once, as subprocess kills it; or, with a grace, sent SIGTERM first (a launcher stops its workers)."""
    with pytest.raises(subprocess.TimeoutExpired):
        run_python([sys.executable, "-m", "probe_module", "hang"], cwd=tmp_path, env=probe_env, timeout=5,
                   grace=grace)
    said = (tmp_path / "tmp" / "stopped_by").read_text() if (tmp_path / "tmp" / "stopped_by").exists() else None
    assert said == ("SIGTERM" if grace else None)


def test_a_warm_run_past_its_timeout_is_killed_and_raises(tmp_path, probe_env) -> None:
    with pytest.raises(subprocess.TimeoutExpired) as stopped:
        run_python([sys.executable, "-m", "probe_module", "hang"], cwd=tmp_path, env=probe_env, timeout=10)
    assert "started, then hangs" in stopped.value.stdout  # unbuffered: what it printed before the kill is kept
    again = run_python([sys.executable, "-m", "probe_module", "end"], cwd=tmp_path, env=probe_env, timeout=120)  # the server goes on
    assert again.returncode == 0
    assert not list(Path(tempfile.gettempdir()).glob(f"warm_python_{os.getpid()}.*"))  # capture files removed


def test_warm_runs_start_from_fresh_random_states(tmp_path, probe_env) -> None:
    """Forks copy the server's numpy and torch generators: two runs drew the same numbers, which could hide a
    missing seed in tests that compare two runs."""
    draws = [run_python([sys.executable, "-m", "probe_module", "end"], cwd=tmp_path, env=probe_env, timeout=120)
             for _ in range(2)]
    lines = [next(line for line in d.stderr.splitlines() if line.startswith("random")) for d in draws]
    assert lines[0].split()[1] != lines[1].split()[1] and lines[0].split()[2] != lines[1].split()[2]


def test_a_missing_working_folder_raises_as_subprocess_raises(tmp_path, probe_env) -> None:
    with pytest.raises(FileNotFoundError):
        fresh(["end"], tmp_path / "missing", probe_env, 120)
    with pytest.raises(FileNotFoundError):
        run_python([sys.executable, "-m", "probe_module", "end"], cwd=tmp_path / "missing", env=probe_env, timeout=120)
