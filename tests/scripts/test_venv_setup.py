"""scripts/_venv.sh: an environment whose Python is gone is made again and reinstalled, never reused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def is_stale(venv: Path) -> subprocess.CompletedProcess:
    """Run ``venv_is_stale VENV requirements.txt`` as the scripts do: exit 0 means install."""
    script = f'source "{REPO}/scripts/_venv.sh"; venv_is_stale "$VENV" "{REPO}/requirements.txt"'
    return subprocess.run(["bash", "-c", script], env={"VENV": str(venv), "PYTHON_BIN": sys.executable,
                                                       "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=300)


def test_an_environment_whose_python_is_gone_is_made_again_and_reinstalled(tmp_path) -> None:
    """A pyenv or Homebrew upgrade leaves .venv/bin/python a dangling link: venv without --clear kept it, the old
    install marker still matched, nothing was installed, and every run failed on 'No module named cv2'."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to("/nonexistent/python3.9")
    marker = subprocess.run(["bash", "-c", f'cat "{REPO}/requirements.txt" | sha256sum'], capture_output=True,
                            text=True, check=True).stdout
    (venv / ".monai_ext_installed").write_text(marker)  # as the last install recorded it
    result = is_stale(venv)
    assert result.returncode == 0, result.stdout + result.stderr  # stale: install again
    assert f"[setup] creating {venv}" in result.stdout
    assert subprocess.run([str(venv / "bin" / "python"), "-c", ""], timeout=60).returncode == 0
    assert not (venv / ".monai_ext_installed").exists()
    (venv / ".monai_ext_installed").write_text(marker)
    assert is_stale(venv).returncode == 1  # a working environment with a matching marker is reused


def test_compile_venv_compiles_every_package_and_passes_over_files_that_are_not_python_3(tmp_path) -> None:
    """pip installs with --no-compile (its byte-compiling on one core was two thirds of the install); compile_venv
    then compiles on every core. A file that is not Python 3 (some packages ship templates) failed the whole
    set-up under ``set -e``: pip passes over such files, and so must this."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c",
                                "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True, timeout=60).stdout.strip())
    (site / "good_pkg").mkdir()
    (site / "good_pkg" / "__init__.py").write_text("VALUE = 1\n")
    (site / "good_pkg" / "template.py").write_text("print 'python 2'\n")
    script = f'set -euo pipefail; source "{REPO}/scripts/_venv.sh"; compile_venv "$VENV"; echo compiled'
    result = subprocess.run(["bash", "-c", script], env={"VENV": str(venv), "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("compiled"), result.stdout + result.stderr
    assert [p.name for p in (site / "good_pkg" / "__pycache__").iterdir()] == [
        f"__init__.{sys.implementation.cache_tag}.pyc"]
