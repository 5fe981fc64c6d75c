"""ServedModel: the infer tasks' model, reloaded exactly when the served checkpoint is replaced."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from monai_ext.apps.label.served import ServedModel
from monai_ext.io.atomic import atomic_write_bytes


class CountingLoader:
    """Returns the file's bytes as the 'model' and counts the loads."""

    def __init__(self) -> None:
        self.loads: list[Path] = []
        self._lock = threading.Lock()

    def __call__(self, path: Path) -> bytes:
        with self._lock:
            self.loads.append(path)
        return path.read_bytes()


@pytest.fixture
def served(tmp_path):
    path = tmp_path / "model" / "model.pt"
    atomic_write_bytes(path, b"v1")
    return path


def test_the_same_file_is_loaded_once(served) -> None:
    loader = CountingLoader()
    model = ServedModel(loader, lambda: served)
    assert [model.current() for _ in range(3)] == [b"v1"] * 3
    assert loader.loads == [served]


def test_an_atomically_published_file_is_loaded_by_the_next_call_even_within_one_clock_tick(served) -> None:
    loader = CountingLoader()
    model = ServedModel(loader, lambda: served)
    assert model.current() == b"v1"
    mtime = served.stat().st_mtime_ns
    for version in (b"v2", b"v3"):
        atomic_write_bytes(served, version)
        os.utime(served, ns=(mtime, mtime))  # the clock did not tick: only the new inode tells
        assert model.current() == version
    assert len(loader.loads) == 3


def test_switching_to_another_file_reloads_and_a_missing_file_reaches_the_loader(served, tmp_path) -> None:
    other = tmp_path / "base.pt"
    atomic_write_bytes(other, b"base")
    current = {"path": served}
    model = ServedModel(CountingLoader(), lambda: current["path"])
    assert model.current() == b"v1"
    current["path"] = other
    assert model.current() == b"base"
    current["path"] = tmp_path / "missing.pt"
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        model.current()


def test_concurrent_requests_after_a_publish_load_it_once(served) -> None:
    loader = CountingLoader()
    model = ServedModel(loader, lambda: served)
    model.current()
    atomic_write_bytes(served, b"v2")
    barrier, results = threading.Barrier(8), []

    def request() -> None:
        barrier.wait()
        results.append(model.current())

    threads = [threading.Thread(target=request) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [b"v2"] * 8 and len(loader.loads) == 2
