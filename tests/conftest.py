"""Suite-wide fixtures."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


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
