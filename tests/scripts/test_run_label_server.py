"""scripts/run_label_server.sh refuses a studies folder that is not there, before it sets anything up."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_a_studies_dir_that_is_no_existing_folder_is_refused_in_one_line(tmp_path, kind) -> None:
    """MONAI Label created a missing folder and served it empty: a typo looked like an empty worklist."""
    studies = tmp_path / "studeis"
    if kind == "file":
        studies.write_bytes(b"")
    label_venv, app_dir = tmp_path / "venv-label", tmp_path / "app"
    result = subprocess.run(["bash", str(REPO / "scripts" / "run_label_server.sh"), str(studies)], cwd=tmp_path,
                            env={**os.environ, "LABEL_VENV": str(label_venv), "LABEL_APP_DIR": str(app_dir)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        f"error: STUDIES_DIR {studies} is not an existing folder (MONAI Label would serve it empty)"]
    # refused before anything was set up: no environment installed, no app folder, no studies folder made
    assert not label_venv.exists() and not app_dir.exists() and (kind == "file" or not studies.exists())
