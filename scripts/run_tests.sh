#!/usr/bin/env bash
# The test suite: creates or reuses .venv, installs what it needs, lints (ruff, rules pinned in pyproject.toml),
# then runs pytest on two processes.
# Extra arguments go to pytest, e.g. scripts/run_tests.sh tests/networks -k checkpoint (a targeted run skips the lint).
source "$(dirname "$0")/_venv.sh"
ensure_venv
cd "$REPO_ROOT"
label_build=""
if [ "$#" -eq 0 ]; then
  # A full run needs MONAI Label's environment too: built in the background once the main one is installed (both
  # install this checkout in editable mode, which writes its egg-info here), instead of inside a pytest worker that
  # then runs no test for two minutes. The tests that need it wait on its lock (scripts/_venv.sh) and, should this
  # build fail, try again themselves and say why; this build's output is in .venv-label.log.
  python -m ruff check --quiet .
  ensure_label_venv > "$REPO_ROOT/.venv-label.log" 2>&1 &
  label_build=$!
fi
# The suite holds up to about 1.5 GB of checkpoints and caches at once; on a fuller disk torch.save fails deep inside
# dozens of tests, so the reason is said first.
free_mb=$(df -Pm "${TMPDIR:-/tmp}" 2>/dev/null | awk 'NR == 2 {print $4}') || free_mb=""
if [[ "$free_mb" =~ ^[0-9]+$ ]] && [ "$free_mb" -lt 2048 ]; then
  echo "[tests] warning: ${free_mb} MB free under ${TMPDIR:-/tmp}; the suite needs about 2 GB of temporary space" >&2
fi
status=0
python -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadfile -q "$@" || status=$?
if [ -n "$label_build" ]; then wait "$label_build" || true; fi  # no install left running after the suite
exit "$status"
