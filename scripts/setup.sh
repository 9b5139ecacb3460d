#!/usr/bin/env bash
# Creates .venv (once) and installs the pinned dependencies; re-running is cheap when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
want="${1:-requirements.txt}"
python="${PYTHON:-python3}"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "hailuo-bot needs Python 3.11 or newer (found $("$python" --version 2>&1))." >&2; exit 1; }
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.installed-$(cat requirements.txt "$want" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$want"
  touch "$stamp"
fi
