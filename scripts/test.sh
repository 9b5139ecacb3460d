#!/usr/bin/env bash
# One command: set everything up, lint, check types and layering, and run the test suite. Extra arguments
# go to pytest (for example --slow for the long runs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh requirements-dev.txt
.venv/bin/ruff check .
.venv/bin/ruff format --check --quiet .
.venv/bin/mypy --no-error-summary
layers=$(.venv/bin/lint-imports --no-cache 2>&1) || { echo "$layers"; exit 1; }
exec .venv/bin/python -m pytest "$@"
