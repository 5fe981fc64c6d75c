# Sourced by the scripts: create or reuse .venv (and .venv-label for MONAI Label) and install what the project needs
# (skipped when nothing changed).
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$REPO_ROOT/.venv}"
# MONAI Label's environment, apart from .venv: its pins (pydicom 2.x via pydicom-seg) conflict with the main one.
LABEL_VENV="${LABEL_VENV:-$REPO_ROOT/.venv-label}"
PYTHON_BIN="${PYTHON_BIN:-python3}"

# venv_is_stale DIR FILE...: creates DIR if missing; true when the FILEs changed since the last install, which then
# records their hash with mark_installed DIR FILE...
venv_is_stale() {
  local venv="$1"
  shift
  # a python that does not run (its interpreter gone after a pyenv or Homebrew upgrade: a dangling link) means a
  # new environment: --clear, and no install marker, or the old marker would skip the install
  if ! "$venv/bin/python" -c "" 2>/dev/null; then
    echo "[setup] creating $venv"
    "$PYTHON_BIN" -m venv --clear "$venv"
    rm -f "$venv/.monai_ext_installed"
  fi
  [ ! -f "$venv/.monai_ext_installed" ] || [ "$(cat "$venv/.monai_ext_installed")" != "$(cat "$@" | sha256sum)" ]
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
  local files=("$REPO_ROOT/requirements.txt" "$REPO_ROOT/requirements-dev.txt" "$REPO_ROOT/pyproject.toml"
               "$REPO_ROOT/setup.py")
  if venv_is_stale "$VENV" "${files[@]}"; then
    echo "[setup] installing requirements into $VENV (first run only)"
    install_torch "$VENV"
    pip_install "$VENV" -r "$REPO_ROOT/requirements.txt" -r "$REPO_ROOT/requirements-dev.txt"
    pip_install "$VENV" --no-deps -e "$REPO_ROOT"
    compile_venv "$VENV"
    mark_installed "$VENV" "${files[@]}"
  fi
  export PATH="$VENV/bin:$PATH"
  export PYTHONUNBUFFERED=1
}

# In a subshell holding a lock: parallel test workers (the label server tests, the pydicom 2.x parity test) may ask
# for it at the same time, and the second must wait for the first install, not start another into the same folder.
ensure_label_venv() (
  exec 9>"$LABEL_VENV.lock"
  flock 9
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
