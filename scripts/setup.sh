#!/usr/bin/env bash
# Creates .venv (once) and installs the pinned dependencies; re-running is cheap when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
want="${1:-requirements.txt}"
python="${PYTHON:-python3}"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "hailuo-bot needs Python 3.11 or newer (found $("$python" --version 2>&1))." >&2; exit 1; }
[ -x .venv/bin/python ] || "$python" -m venv .venv
# A CJK font for the preview renderer's title cards (Chinese prompts); from Debian's packages when this
# machine lets us install them, else a note: previews still work, with boxes for Chinese characters.
cjk_font() { [ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || [ -e /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ]; }
if ! cjk_font; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -q fonts-wqy-microhei >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q fonts-wqy-microhei >/dev/null 2>&1; } || true
  fi
  cjk_font || echo "note: no CJK font found; install fonts-wqy-microhei (Debian/Ubuntu) for Chinese text in previews." >&2
fi
stamp=".venv/.installed-$(cat requirements.txt "$want" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$want"
  touch "$stamp"
fi
