#!/usr/bin/env bash
# The test suite: creates or reuses .venv, installs what it needs, lints (ruff, rules pinned in pyproject.toml),
# then runs pytest on two processes.
# Extra arguments go to pytest, e.g. scripts/run_tests.sh tests/networks -k checkpoint
source "$(dirname "$0")/_venv.sh"
ensure_venv
cd "$REPO_ROOT"
python -m ruff check --quiet .
python -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadfile -q "$@"
