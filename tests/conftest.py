"""Suite-wide fixtures."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch


def threads_per_worker() -> int:
    """The cores this process may use (its CPU affinity: a container's or a Slurm job's share, not the host's)
    shared out among pytest-xdist's workers, all of them on a run without xdist."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, cores // workers)


@pytest.fixture(scope="session", autouse=True)
def one_share_of_the_cores_per_worker() -> Iterator[int]:
    """Give each xdist worker, and the bundle runs, servers and scripts it starts, its share of the cores.

    torch and OpenMP otherwise take every core in each worker and in each subprocess: on CI's two cores the two
    workers and their children ran four or more busy threads, and oversubscribed OpenMP threads spin while they wait
    (a tiny bundle run took 13 s instead of 11 s beside another). Subprocesses inherit ``OMP_NUM_THREADS``;
    torchrun tests set it to 1 themselves, one per rank.
    """
    threads = threads_per_worker()
    patch = pytest.MonkeyPatch()
    patch.setenv("OMP_NUM_THREADS", str(threads))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    yield threads
    torch.set_num_threads(before)
    patch.undo()


@pytest.fixture(scope="session", autouse=True)
def temp_files_inside_basetemp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Send every temporary file of the run into pytest's own base folder, which pytest prunes.

    Subprocesses inherit ``TMPDIR``: torchrun's ``torchelastic_*`` folders, the uploads a live MONAI Label server
    keeps after refusing them and benchmark scratch folders would otherwise pile up in ``/tmp`` (hundreds of entries
    per full run on a developer's machine).
    """
    folder = tmp_path_factory.mktemp("tmp", numbered=False)
    patch = pytest.MonkeyPatch()
    patch.setenv("TMPDIR", str(folder))
    patch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    patch.undo()


@pytest.fixture(autouse=True)
def root_logging_as_before() -> Iterator[None]:
    """The root logger's level and handlers as before each test. A bundle run in the test's own process (the
    cross-validation and label-efficiency runners, the installed-package checks) applies the bundle's logging.conf,
    root at INFO with a console handler, and it outlived the test: a later test in the worker then saw INFO records
    it did not ask for (an assertion on no log failed only in the full run)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    for handler in [h for h in handlers if h not in root.handlers]:
        root.addHandler(handler)


@pytest.fixture(scope="module")
def module_tmp(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], Path]]:
    """``tmp_path_factory.mktemp`` for module-scoped fixtures, whose folders go when the module's tests are done.

    pytest removes a passing test's ``tmp_path`` (``tmp_path_retention_policy = "failed"``) but keeps every
    ``mktemp`` folder until the run ends: the trained bundles, caches and servers of all modules together came to
    7 GB per full run, enough to fill a CI disk. Folders stay when a test of the module failed, for inspection.
    """
    made: list[Path] = []
    failures_before = request.session.testsfailed

    def mktemp(name: str) -> Path:
        made.append(tmp_path_factory.mktemp(name))
        return made[-1]

    yield mktemp
    if request.session.testsfailed == failures_before:
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)


REPO = Path(__file__).resolve().parents[1]
# where scripts/_venv.sh builds MONAI Label's environment (it honours LABEL_VENV, so the tests must too)
LABEL_PYTHON = Path(os.environ.get("LABEL_VENV", REPO / ".venv-label")) / "bin" / "python"


@pytest.fixture(scope="session")
def label_python() -> Path:
    """MONAI Label's environment (pydicom 2.x), built as ``scripts/run_label_server.sh`` builds it when missing
    (about two minutes on a fresh machine; a lock makes a parallel worker that needs it too wait for one install)."""
    script = shlex.quote(str(REPO / "scripts" / "_venv.sh"))  # a clone under a folder with spaces
    subprocess.run(["bash", "-c", f"source {script} && ensure_label_venv"], check=True, timeout=1800)
    return LABEL_PYTHON


def pytest_configure(config: pytest.Config) -> None:
    """Under ``--dist loadfile``, hand the files out in the collection's order (:func:`pytest_collection_modifyitems`):
    pytest-xdist 3.8 reorders them by their number of tests, which put the slow files of one or two multi-process
    tests last, one worker running them while the other had nothing left to do."""
    config.option.loadscopereorder = False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The files that hold a ``slow`` test first, each file's tests in their order: under ``--dist loadfile`` the
    workers take files in this order, and a slow file taken last kept one worker busy for up to a minute and a half
    while the other had nothing left to do."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)
