"""MONAI Label's entry file (apps/label/main.py): MONAI Label's own loader finds the app class in it, also in a copy
outside the package, and the launcher makes that copy in the app folder MONAI Label starts from, with the app
folder's own logging config (no temporary file per start)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.apps.label.conftest import REPO


def test_the_launcher_copies_main_into_the_app_folder() -> None:
    script = (REPO / "scripts" / "run_label_server.sh").read_text()
    assert 'cp "$REPO_ROOT/monai_ext/apps/label/main.py" "$APP_DIR/main.py"' in script


@pytest.mark.slow
def test_monai_labels_loader_finds_the_app_class_in_a_copy_of_main(label_env, tmp_path) -> None:
    """MONAI Label loads ``<app>/main.py`` as a module and takes the class whose base is MONAILabelApp."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "main.py").write_bytes((REPO / "monai_ext" / "apps" / "label" / "main.py").read_bytes())
    found = label_env.run("""
import json, sys
from monailabel.utils.others.class_utils import get_class_of_subclass_from_file
from monai_ext.apps.label.app import UltrasoundClassifierApp
found = get_class_of_subclass_from_file("main", sys.argv[1], "MONAILabelApp")
print(json.dumps({"found": getattr(found, "__name__", None), "same": found is UltrasoundClassifierApp}))
""", str(app_dir / "main.py"))
    assert found == {"found": "UltrasoundClassifierApp", "same": True}


@pytest.mark.slow
def test_a_start_leaves_no_logging_config_in_the_temporary_folder(label_python, tmp_path) -> None:
    """Each start left a tmp*.json logging config in /tmp (MONAI Label writes one where no --log_config is given):
    the launcher passes the app folder's own, which sends MONAI Label's log to ``<app>/logs/app.log`` as before."""
    temporary, app_dir, studies = tmp_path / "tmp", tmp_path / "app dir", tmp_path / "studies"
    temporary.mkdir()
    studies.mkdir()
    env = {**os.environ, "TMPDIR": str(temporary), "LABEL_APP_DIR": str(app_dir),
           "LABEL_VENV": str(label_python.parent.parent)}
    result = subprocess.run(["bash", str(REPO / "scripts" / "run_label_server.sh"), str(studies), "--dryrun"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in temporary.iterdir()) == []
    config = json.loads((app_dir / "logging.json").read_text())
    assert config["handlers"]["file_handler"]["filename"] == str(app_dir / "logs" / "app.log")
