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


def run_sourced(body: str, **env: str) -> subprocess.CompletedProcess:
    """``body`` run by bash after sourcing scripts/_venv.sh, with ``env`` (PYTHON_BIN: this interpreter)."""
    return subprocess.run(["bash", "-c", f'source "{REPO}/scripts/_venv.sh"; {body}'],
                          env={"PYTHON_BIN": sys.executable, "PATH": "/usr/bin:/bin", **env},
                          capture_output=True, text=True, timeout=300)


def pretending_python(tmp_path: Path, version: tuple[int, int]) -> Path:
    """An executable that runs this interpreter with ``sys.version_info`` replaced by ``version`` (a sitecustomize
    on its path): an old Python, without needing one on the machine."""
    site = tmp_path / f"python{version[0]}.{version[1]}_site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(f"import sys\nsys.version_info = {(*version, 0, 'final', 0)!r}\n")
    program = tmp_path / f"python{version[0]}.{version[1]}"
    program.write_text(f'#!/bin/sh\nPYTHONPATH="{site}" exec "{sys.executable}" "$@"\n')
    program.chmod(0o755)
    return program


def test_the_oldest_python_the_scripts_accept_is_the_one_pyproject_requires() -> None:
    script = (REPO / "scripts" / "_venv.sh").read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'requires-python = ">=3.10"' in pyproject and "\nMIN_PYTHON=3.10\n" in script


def test_a_python_older_than_the_project_supports_is_refused_in_one_line_before_any_install(tmp_path) -> None:
    """PYTHON_BIN=python3 on a system whose python3 is 3.9 made .venv, and pip then failed on 'No matching
    distribution found for torch==2.13.0', a message that never says the Python is too old."""
    venv = tmp_path / "venv"
    old = pretending_python(tmp_path, (3, 9))
    result = run_sourced(f'if venv_is_stale "$VENV" "{REPO}/requirements.txt"; then echo INSTALL; fi',
                         VENV=str(venv), PYTHON_BIN=str(old))
    assert result.returncode == 1 and "INSTALL" not in result.stdout, result.stdout + result.stderr
    assert result.stderr == (f"error: the project needs Python >= 3.10; PYTHON_BIN={old} is 3.9: set PYTHON_BIN to "
                             "a newer one (e.g. PYTHON_BIN=python3.12)\n")
    assert not venv.exists()
    missing = run_sourced(f'venv_is_stale "$VENV" "{REPO}/requirements.txt"', VENV=str(venv),
                          PYTHON_BIN=str(tmp_path / "python3.99"))
    assert missing.returncode == 1
    assert missing.stderr == (f"error: PYTHON_BIN={tmp_path / 'python3.99'} does not run: set PYTHON_BIN to a "
                              "Python >= 3.10\n")


def test_an_environment_made_by_a_python_too_old_is_made_again_even_with_its_marker(tmp_path) -> None:
    """The .venv an old python3 made ran: it was reused at every later run, whatever PYTHON_BIN then named."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(pretending_python(tmp_path, (3, 9)))
    marker = subprocess.run(["bash", "-c", f'cat "{REPO}/requirements.txt" | sha256sum'], capture_output=True,
                            text=True, check=True).stdout
    (venv / ".monai_ext_installed").write_text(marker)
    result = is_stale(venv)
    assert result.returncode == 0 and f"[setup] creating {venv}" in result.stdout, result.stdout + result.stderr
    assert not (venv / "bin" / "python").resolve().name.startswith("python3.9")
    assert not (venv / ".monai_ext_installed").exists()


def test_an_environment_without_pip_is_made_again_when_an_install_is_due(tmp_path) -> None:
    """A venv cut off while it set pip up (or made by a Python without ensurepip) ran, had no install marker, and
    every run failed on 'No module named pip'. With its marker matching, it is reused: nothing needs pip then."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    marker = subprocess.run(["bash", "-c", f'cat "{REPO}/requirements.txt" | sha256sum'], capture_output=True,
                            text=True, check=True).stdout
    (venv / ".monai_ext_installed").write_text(marker)
    assert is_stale(venv).returncode == 1
    (venv / ".monai_ext_installed").unlink()  # an install is due
    result = is_stale(venv)
    assert result.returncode == 0 and f"[setup] creating {venv}" in result.stdout, result.stdout + result.stderr
    assert subprocess.run([str(venv / "bin" / "python"), "-c", "import pip"], timeout=60).returncode == 0


def test_a_python_that_makes_no_environment_with_pip_stops_in_one_line_without_installing(tmp_path) -> None:
    """Debian's python3 without python3-venv: venv failed, and the script went on to install into nothing, because
    set -e does not act inside a function called as an if's condition."""
    no_ensurepip = tmp_path / "python3"
    no_ensurepip.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@" --without-pip\n')
    no_ensurepip.chmod(0o755)
    venv = tmp_path / "venv"
    result = run_sourced(f'if venv_is_stale "$VENV" "{REPO}/requirements.txt"; then echo INSTALL; fi',
                         VENV=str(venv), PYTHON_BIN=str(no_ensurepip))
    assert result.returncode == 1 and "INSTALL" not in result.stdout, result.stdout + result.stderr
    assert result.stderr.endswith(f"error: {no_ensurepip} -m venv could not make {venv} with pip (Debian and Ubuntu: "
                                  "install python3-venv)\n")


def test_two_scripts_started_at_once_install_the_environment_once(tmp_path) -> None:
    """The README's two commands started together on a first run both installed into .venv at the same time."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    (Path(site) / "pip").mkdir()
    (Path(site) / "pip" / "__init__.py").write_text("")  # importable: the stub below installs nothing
    body = ('pip_install() { echo "$TAG pip $2"; sleep 1; }; compile_venv() { :; }; ensure_venv; '
            'echo "$TAG ready"')
    env = {"VENV": str(venv), "PYTHON_BIN": sys.executable, "PATH": "/usr/bin:/bin"}
    runs = [subprocess.Popen(["bash", "-c", f'source "{REPO}/scripts/_venv.sh"; {body}'], env={**env, "TAG": tag},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for tag in "AB"]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    said = "".join(out for out, _ in outputs)
    assert said.count("[setup] installing requirements") == 1, said
    assert said.count(" ready") == 2


def test_a_relative_venv_is_taken_from_where_the_command_ran(tmp_path) -> None:
    """VENV=env from another folder: the scripts cd into the repository, PATH's relative env/bin then named nothing,
    and "python" was whichever other one PATH held (the tests failed on 'No module named torch')."""
    venv = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    files = " ".join(f'"{REPO / name}"' for name in ("requirements.txt", "requirements-dev.txt", "pyproject.toml",
                                                     "setup.py"))
    (venv / ".monai_ext_installed").write_text(subprocess.run(["bash", "-c", f"cat {files} | sha256sum"],
                                                              capture_output=True, text=True, check=True).stdout)
    result = subprocess.run(["bash", "-c", f'source "{REPO}/scripts/_venv.sh"; ensure_venv; cd /; command -v python'],
                            cwd=tmp_path, env={"VENV": "env", "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(venv / "bin" / "python")


def test_a_lock_refused_as_on_a_network_file_system_is_warned_of_and_the_script_goes_on(tmp_path) -> None:
    """NFS and SMB emulate flock with a byte-range lock, which needs the file open for writing: on .venv, a folder
    open for reading, flock failed with "Bad file descriptor" and, under set -e, ended every run of every script."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    files = " ".join(f'"{REPO / name}"' for name in ("requirements.txt", "requirements-dev.txt", "pyproject.toml",
                                                     "setup.py"))
    (venv / ".monai_ext_installed").write_text(subprocess.run(["bash", "-c", f"cat {files} | sha256sum"],
                                                              capture_output=True, text=True, check=True).stdout)
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "flock").write_text('#!/bin/sh\necho "flock: $1: Bad file descriptor" >&2\nexit 1\n')
    (stubs / "flock").chmod(0o755)
    result = run_sourced("ensure_venv; echo ready", VENV=str(venv), PATH=f"{stubs}:/usr/bin:/bin")
    assert result.returncode == 0 and result.stdout.strip() == "ready", result.stdout + result.stderr
    assert result.stderr == (f"[setup] warning: could not lock {venv} (a network file system?): two first runs at "
                             "once would both install\n")
