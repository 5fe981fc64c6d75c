# Sourced by the scripts: create or reuse .venv and install what the project needs (skipped when nothing changed).
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$REPO_ROOT/.venv}"
PYTHON_BIN="${PYTHON_BIN:-python3}"

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV"
    "$PYTHON_BIN" -m venv "$VENV"
  fi
  local stamp="$VENV/.monai_ext_installed"
  local want
  want="$(cat "$REPO_ROOT/requirements.txt" "$REPO_ROOT/requirements-dev.txt" "$REPO_ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "[setup] installing requirements into $VENV (first run only)"
    # torch first and pinned: 2.13.0 is the CPU wheel available offline; any other spec would download a CUDA build.
    "$VENV/bin/python" -c "import torch" 2>/dev/null || "$VENV/bin/python" -m pip install -q "torch==2.13.0"
    "$VENV/bin/python" -m pip install -q -r "$REPO_ROOT/requirements.txt" -r "$REPO_ROOT/requirements-dev.txt"
    "$VENV/bin/python" -m pip install -q --no-deps -e "$REPO_ROOT"
    echo "$want" > "$stamp"
  fi
  export PATH="$VENV/bin:$PATH"
  export PYTHONUNBUFFERED=1
}

# MONAI Label's environment, apart from .venv: its pins (pydicom 2.x via pydicom-seg) conflict with the main one.
LABEL_VENV="${LABEL_VENV:-$REPO_ROOT/.venv-label}"

ensure_label_venv() {
  if [ ! -x "$LABEL_VENV/bin/python" ]; then
    echo "[setup] creating $LABEL_VENV"
    "$PYTHON_BIN" -m venv "$LABEL_VENV"
  fi
  local stamp="$LABEL_VENV/.monai_ext_installed"
  local want
  want="$(cat "$REPO_ROOT/requirements-label.txt" "$REPO_ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "[setup] installing MONAI Label into $LABEL_VENV (first run only, about 2 minutes)"
    "$LABEL_VENV/bin/python" -c "import torch" 2>/dev/null || "$LABEL_VENV/bin/python" -m pip install -q "torch==2.13.0"
    "$LABEL_VENV/bin/python" -m pip install -q -r "$REPO_ROOT/requirements-label.txt"
    # --no-deps: their metadata asks for torchvision, sam2, numpy<2 and jsonschema<4, none of which the
    # classifier app imports or needs; requirements-label.txt lists what they do import.
    "$LABEL_VENV/bin/python" -m pip install -q --no-deps "monailabel==0.8.5" "pydicom-seg==0.4.1"
    "$LABEL_VENV/bin/python" -m pip install -q --no-deps -e "$REPO_ROOT"
    echo "$want" > "$stamp"
  fi
}
