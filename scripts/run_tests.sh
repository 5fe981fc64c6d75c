#!/usr/bin/env bash
# The test suite: creates or reuses .venv, installs what it needs, lints (ruff, rules pinned in pyproject.toml),
# then runs pytest on two processes.
# Extra arguments go to pytest, e.g. scripts/run_tests.sh tests/networks -k checkpoint (a targeted run skips the lint).
source "$(dirname "$0")/_venv.sh"
ensure_venv
cd "$REPO_ROOT"
if [ "$#" -eq 0 ]; then python -m ruff check --quiet .; fi
# The suite holds up to about 1.5 GB of checkpoints and caches at once; on a fuller disk torch.save fails deep inside
# dozens of tests, so the reason is said first.
free_mb=$(df -Pm "${TMPDIR:-/tmp}" 2>/dev/null | awk 'NR == 2 {print $4}') || free_mb=""
if [[ "$free_mb" =~ ^[0-9]+$ ]] && [ "$free_mb" -lt 2048 ]; then
  echo "[tests] warning: ${free_mb} MB free under ${TMPDIR:-/tmp}; the suite needs about 2 GB of temporary space" >&2
fi
python -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadfile -q "$@"
