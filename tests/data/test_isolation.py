"""Files that kill their reader's process (a decoder's segfault, the out-of-memory killer): skipped by name, and the
run goes on or resumes; monai_ext/data/isolation.py and its use by prepare-corpus."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import pytest

from monai_ext.data.isolation import KILLED_READER, files_that_kill_their_reader
from tests.data.corpus_builder import us_image
from tests.warm_python import run_python

REPO = Path(__file__).resolve().parents[2]

#: Loaded at the start of every Python process of the run under test (its spawned workers too): reading a file
#: named killer.png kills the process, as a crashing decoder would.
KILLER_HOOK = """
import os, signal
import monai_ext.data.corpus as corpus

_read = corpus.process_file


def process_file(path, root, options):
    if path.name == "killer.png":
        os.kill(os.getpid(), signal.SIGKILL)
    return _read(path, root, options)


corpus.process_file = process_file
"""


def die_on_odd(argument: tuple[int, str]) -> int:
    """Notes its process id in the file ``argument[1]``, then dies (SIGKILL) on an odd number; a picklable function
    for a spawned process."""
    number, log = argument
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"{os.getpid()}\n")
    if number % 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return number


def refuse(argument: tuple[int, str]) -> int:
    raise ValueError(f"bad number {argument[0]}")


class Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("not picklable")


def refuse_unpicklably(argument: tuple[int, str]) -> int:
    raise Unpicklable(f"bad number {argument[0]}")


@pytest.mark.parametrize("names, killers", [
    (["a1", "b2", "c3"], ["a1", "c3"]),
    (["a2", "b4", "c6", "d7"], ["d7"]),
    (["a2", "b4"], []),
    (["a1", "b3", "c5"], ["a1", "b3", "c5"]),
])
def test_the_files_that_kill_their_reader_are_named_at_one_process_a_killer(names, killers, tmp_path) -> None:
    """Each file was read in a process of its own: a spawn (seconds of imports) per file of a suspect chunk."""
    log = tmp_path / "pids.txt"
    found = files_that_kill_their_reader(die_on_odd, names, lambda name: (int(name[1]), str(log)))
    assert found == dict.fromkeys(killers, KILLED_READER)
    pids = log.read_text().split()
    assert len(pids) == len(names)  # every file read once
    last_lived = names[-1] not in killers
    assert len(set(pids)) == len(killers) + last_lived  # a fresh process after each killer only


@pytest.mark.parametrize("reader", [refuse, refuse_unpicklably])
def test_an_exception_of_the_reader_is_the_callers_not_a_death(reader, tmp_path) -> None:
    with pytest.raises(Exception, match="bad number 4"):
        files_that_kill_their_reader(reader, ["a4"], lambda name: (int(name[1]), str(tmp_path / "log")))


def run_corpus(root: Path, out: Path, hook: Path | None, workers: int) -> subprocess.CompletedProcess:
    """``python -m monai_ext prepare-corpus`` in chunks of 2 files; with ``hook``, a fresh interpreter that loads the
    folder's sitecustomize.py (the warm interpreter's forks cannot)."""
    cmd = [sys.executable, "-m", "monai_ext", "prepare-corpus", str(root), "--out", str(out), "--size", "32",
           "--files_per_chunk", "2", "--workers", str(workers), "--dedup_threshold", "-1"]
    if hook is None:
        return run_python(cmd, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), str(REPO)])}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_file_that_kills_its_reader_is_skipped_by_name_and_the_rest_is_kept(tmp_path) -> None:
    """One such file killed a --workers 1 run outright, and every rerun met it again: the archive could never be
    ingested. (With a pool: the next test.)"""
    workers = 1
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(KILLER_HOOK)
    site = tmp_path / "root" / "site"
    site.mkdir(parents=True)
    for index in range(5):  # chunks of two: the killer shares its chunk with a good file
        cv2.imwrite(str(site / f"scan{index}.png"), us_image(96, seed=40 + index))
    cv2.imwrite(str(site / "killer.png"), us_image(96, seed=50))
    out = tmp_path / "cache"
    first = run_corpus(tmp_path / "root", out, tmp_path / "hook", workers)
    # the one process died with the file; the rerun reads its chunk file by file
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    first = run_corpus(tmp_path / "root", out, tmp_path / "hook", workers)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "5 of 5 frames kept" in first.stdout and "skipped files: 1" in first.stdout
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        assert sorted(row["source"] for row in csv.DictReader(f)) == [f"site/scan{i}.png" for i in range(5)]
    skipped = json.loads((out / "report.json").read_text())["skipped_files"]
    assert skipped == [{"source": "site/killer.png", "reason": f"site/killer.png: {KILLED_READER}"}]
    assert not list((out / "chunks").glob("*.started"))


@pytest.mark.slow
def test_chunks_read_again_for_changed_files_are_all_read_after_a_reader_dies(tmp_path) -> None:
    """A pool's reader killed by one file stopped the run with BrokenProcessPool, naming no file. And once the run
    went on, a chunk queued for its changed files (its old result still there) was dropped from the work and kept its
    old frames."""
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(KILLER_HOOK)
    site = tmp_path / "root" / "site"
    site.mkdir(parents=True)
    names = [f"scan{index}.png" for index in range(5)] + ["killer.png"]
    for index, name in enumerate(names):
        cv2.imwrite(str(site / name), us_image(96, seed=60 + index))
    out = tmp_path / "cache"
    assert run_corpus(tmp_path / "root", out, None, 1).returncode == 0  # the earlier run: its chunks' results

    def hashes() -> dict[str, str]:
        with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
            return {row["source"]: row["sha256"] for row in csv.DictReader(f)}

    before = hashes()
    for index, name in enumerate(names):  # every file re-exported in place
        cv2.imwrite(str(site / name), us_image(96, seed=80 + index))
    again = run_corpus(tmp_path / "root", out, tmp_path / "hook", 2)
    assert again.returncode == 0, again.stderr[-3000:]
    after = hashes()
    assert sorted(after) == [f"site/scan{i}.png" for i in range(5)]
    assert all(after[source] != before[source] for source in after)  # every changed file read again
    skipped = json.loads((out / "report.json").read_text())["skipped_files"]
    assert skipped == [{"source": "site/killer.png", "reason": f"site/killer.png: {KILLED_READER}"}]
    assert not list((out / "chunks").glob("*.started"))


class Stopped(BaseException):
    """What the test's stop signal raises (Ctrl-C's KeyboardInterrupt or a stop signal's StopSignal in a run)."""


def stop_the_run_then_read_on(fifo: str) -> None:
    """Tells the run to stop (SIGUSR1 to the parent), then reads a file that never ends (a pipe nobody writes) as a
    long cine loop does; a picklable function for a spawned process."""
    os.kill(os.getppid(), signal.SIGUSR1)
    with open(fifo, "rb") as f:
        f.read()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="a named pipe stands for a file that is long to read")
def test_a_stop_ends_the_reader_at_once_not_after_its_file(tmp_path) -> None:
    """Stopped while a suspect chunk's file was read, the run waited for the reader to finish that file (minutes of
    a cine loop, past a scheduler's grace period), and the reader then died on the closed pipe with a traceback."""
    fifo = tmp_path / "long_cine.fifo"
    os.mkfifo(fifo)
    ended = threading.Event()

    def end_the_file() -> None:  # a guard only, so that the test fails rather than hangs where the stop waits
        ended.set()
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # no reader (ended): nothing to unblock
            pass

    def stop(signum, frame) -> None:
        raise Stopped

    previous = signal.signal(signal.SIGUSR1, stop)
    guard = threading.Timer(120, end_the_file)
    guard.daemon = True
    guard.start()
    try:
        with pytest.raises(Stopped):
            files_that_kill_their_reader(stop_the_run_then_read_on, ["long_cine.avi"], lambda name: str(fifo))
    finally:
        guard.cancel()
        signal.signal(signal.SIGUSR1, previous)
    assert not ended.is_set(), "the run stopped only once the reader's file ended"
