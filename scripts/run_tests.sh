#!/usr/bin/env bash
# The test suite: creates or reuses .venv, installs what it needs, lints (ruff, rules pinned in pyproject.toml),
# then runs pytest on two processes.
# Extra arguments go to pytest, e.g. scripts/run_tests.sh tests/networks -k checkpoint (a targeted run skips the lint).
source "$(dirname "$0")/_venv.sh"
ensure_venv
cd "$REPO_ROOT"
if [ "$#" -eq 0 ]; then python -m ruff check --quiet .; fi
python -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadfile -q "$@"
