#!/usr/bin/env bash
# One command: set everything up and run the bot (preview provider when no provider key is set).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh requirements.txt
exec .venv/bin/python bot.py "$@"
