# Sourced by the scripts: create or reuse .venv (and .venv-label for MONAI Label) and install what the project needs
# (skipped when nothing changed).
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$REPO_ROOT/.venv}"
# MONAI Label's environment, apart from .venv: its pins (pydicom 2.x via pydicom-seg) conflict with the main one.
LABEL_VENV="${LABEL_VENV:-$REPO_ROOT/.venv-label}"
# relative to where the command ran: the scripts then cd into the repository, and a relative VENV/bin on PATH named
# nothing there, so "python" was whichever other one PATH held (tests failed on 'No module named torch')
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
case "$LABEL_VENV" in /*) ;; *) LABEL_VENV="$PWD/$LABEL_VENV" ;; esac
PYTHON_BIN="${PYTHON_BIN:-python3}"
# The oldest Python the project supports: pyproject.toml's requires-python (tests/scripts/test_venv_setup.py checks
# that the two agree).
MIN_PYTHON=3.10

# python_supported PY: true when PY runs and is at least MIN_PYTHON (written to run on Python 2 as well).
python_supported() {
  "$1" -c "import sys; sys.exit(sys.version_info[:2] < tuple(map(int, sys.argv[1].split('.'))))" "$MIN_PYTHON" \
    2>/dev/null
}

# make_venv DIR: a new environment in DIR (emptied first) made by PYTHON_BIN, with pip; else one line saying why
# and exit 1. Its checks are explicit: venv_is_stale runs as an if's condition, where set -e does not act, and a
# failed venv went on to "installing" into nothing.
make_venv() {
  local venv="$1" version
  if ! python_supported "$PYTHON_BIN"; then
    if version=$("$PYTHON_BIN" -c "import sys; print('%d.%d' % sys.version_info[:2])" 2>/dev/null); then
      echo "error: the project needs Python >= $MIN_PYTHON; PYTHON_BIN=$PYTHON_BIN is $version: set PYTHON_BIN to a" \
        "newer one (e.g. PYTHON_BIN=python3.12)" >&2
    else
      echo "error: PYTHON_BIN=$PYTHON_BIN does not run: set PYTHON_BIN to a Python >= $MIN_PYTHON" >&2
    fi
    exit 1
  fi
  echo "[setup] creating $venv"
  if ! "$PYTHON_BIN" -m venv --clear "$venv" || ! "$venv/bin/python" -c "import pip" 2>/dev/null; then
    echo "error: $PYTHON_BIN -m venv could not make $venv with pip (Debian and Ubuntu: install python3-venv)" >&2
    exit 1
  fi
}

# venv_is_stale DIR FILE...: creates DIR if missing; true when the FILEs changed since the last install, which then
# records their hash with mark_installed DIR FILE...
venv_is_stale() {
  local venv="$1" marker="$1/.monai_ext_installed" installed=false
  shift
  if [ -f "$marker" ] && [ "$(cat "$marker")" = "$(cat "$@" | sha256sum)" ]; then installed=true; fi
  # a new environment (--clear, and no install marker, or the old marker would skip the install) where its python
  # does not run (its interpreter gone after a pyenv or Homebrew upgrade: a dangling link) or is older than the
  # project supports (made by an old python3: every later run reused it), or where an install is due and it has no
  # pip (a venv cut off while it set pip up, or made without ensurepip): pip failed the same way at every run
  if ! python_supported "$venv/bin/python" || { ! $installed && ! "$venv/bin/python" -c "import pip" 2>/dev/null; }
  then
    make_venv "$venv"
    rm -f "$marker"
    return 0
  fi
  ! $installed
}

# hold_lock FD WHAT: wait for an exclusive lock on the file or folder WHAT open as FD; where flock(1) is missing
# (macOS) or refuses it, no lock, as before: only runs started at the same moment need it. NFS and SMB mounts
# emulate flock with a byte-range lock, which needs the file open for writing (flock(2)): on a folder, open for
# reading, it failed with "Bad file descriptor" and, under set -e, every run of every script on such a mount.
hold_lock() {
  if command -v flock > /dev/null 2>&1 && ! flock "$1" 2>/dev/null; then
    echo "[setup] warning: could not lock $2 (a network file system?): two first runs at once would both install" >&2
  fi
}

mark_installed() {
  local venv="$1"
  shift
  cat "$@" | sha256sum > "$venv/.monai_ext_installed"
}

# pip_install VENV ARGS...: pip install without pip's byte-compiling, which takes two thirds of the environment's
# install on one core (116 s of it, against 68 s with compile_venv after it on 2 cores).
pip_install() {
  local venv="$1"
  shift
  "$venv/bin/python" -m pip install -q --no-compile "$@"
}

# compile_venv VENV: byte-compile the environment's packages on every core, as pip would have on one. Python writes
# no bytecode of its own where PYTHONDONTWRITEBYTECODE is set, and would then compile torch and MONAI at every start.
# Files that are not Python 3 (templates, test data of some packages) fail to compile, as under pip: not an error.
compile_venv() {
  local site
  site="$("$1/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")"
  "$1/bin/python" -m compileall -q -j 0 "$site" > /dev/null || true
}

# torch first and pinned to 2.13.0 (the project's machines hold its CPU wheel locally). From PyPI on Linux that spec
# is the CUDA build (gigabytes); TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu takes the CPU build instead.
install_torch() {
  local index=()
  if [ -n "${TORCH_INDEX_URL:-}" ]; then index=(--index-url "$TORCH_INDEX_URL"); fi
  "$1/bin/python" -c "import torch" 2>/dev/null || pip_install "$1" ${index[@]+"${index[@]}"} "torch==2.13.0"
}

ensure_venv() {
  install_venv
  export PATH="$VENV/bin:$PATH"
  export PYTHONUNBUFFERED=1
}

# In a subshell holding a lock on the environment's folder (which venv --clear empties but keeps): the README's two
# commands started at once on a first run both installed into it, or one emptied it under the other's install; the
# second now waits, then finds the install done.
install_venv() (
  local files=("$REPO_ROOT/requirements.txt" "$REPO_ROOT/requirements-dev.txt" "$REPO_ROOT/pyproject.toml"
               "$REPO_ROOT/setup.py")
  mkdir -p "$VENV"
  exec 9<"$VENV"
  hold_lock 9 "$VENV"
  if venv_is_stale "$VENV" "${files[@]}"; then
    echo "[setup] installing requirements into $VENV (first run only)"
    install_torch "$VENV"
    pip_install "$VENV" -r "$REPO_ROOT/requirements.txt" -r "$REPO_ROOT/requirements-dev.txt"
    pip_install "$VENV" --no-deps -e "$REPO_ROOT"
    compile_venv "$VENV"
    mark_installed "$VENV" "${files[@]}"
  fi
)

# In a subshell holding a lock: parallel test workers (the label server tests, the pydicom 2.x parity test) may ask
# for it at the same time, and the second must wait for the first install, not start another into the same folder.
ensure_label_venv() (
  exec 9>"$LABEL_VENV.lock"
  hold_lock 9 "$LABEL_VENV.lock"
  local files=("$REPO_ROOT/requirements-label.txt" "$REPO_ROOT/pyproject.toml" "$REPO_ROOT/setup.py")
  if venv_is_stale "$LABEL_VENV" "${files[@]}"; then
    echo "[setup] installing MONAI Label into $LABEL_VENV (first run only, about 2 minutes)"
    install_torch "$LABEL_VENV"
    pip_install "$LABEL_VENV" -r "$REPO_ROOT/requirements-label.txt"
    # --no-deps: their metadata asks for torchvision, sam2, numpy<2 and jsonschema<4, none of which the
    # classifier app imports or needs; requirements-label.txt lists what they do import.
    pip_install "$LABEL_VENV" --no-deps "monailabel==0.8.5" "pydicom-seg==0.4.1"
    pip_install "$LABEL_VENV" --no-deps -e "$REPO_ROOT"
    compile_venv "$LABEL_VENV"
    mark_installed "$LABEL_VENV" "${files[@]}"
  fi
)

# run_shown LOG PATTERN COMMAND...: run COMMAND with its whole output appended to LOG and only the lines matching
# PATTERN shown; when it fails, shows the errors of its traceback chain (the first is the cause: MONAI's bundle
# runner wraps it in its own) and exits with COMMAND's status, naming LOG (a filter alone would hide the failure).
run_shown() {
  local log="$1" pattern="$2" status before=0
  shift 2
  # LOG keeps earlier runs (a rerun, a resumed run): only what this run appends is searched for its errors
  if [ -f "$log" ]; then before=$(wc -c < "$log"); fi
  set +e
  "$@" 2>&1 | tee -a "$log" | grep --line-buffered -E "$pattern"
  status=${PIPESTATUS[0]}
  set -e
  if [ "$status" != 0 ]; then
    tail -c +$((before + 1)) "$log" | grep -E "^[A-Za-z_.]*(Error|Exception|Interrupt)(: |$)" \
      | awk '!seen[$0]++' | head -n 4 >&2 || tail -c +$((before + 1)) "$log" | tail -n 5 >&2
    echo "failed (exit $status): ${*:1:5} ...; whole output in $log" >&2
    exit "$status"
  fi
}
