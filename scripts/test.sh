#!/usr/bin/env bash
# One command: set everything up, lint, and run the test suite. Extra arguments go to pytest
# (for example --slow for the long runs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh requirements-dev.txt
.venv/bin/ruff check .
.venv/bin/ruff format --check --quiet .
exec .venv/bin/python -m pytest "$@"
