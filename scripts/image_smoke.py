"""Checks a built image from the inside, as its runtime user. Not part of the image (scripts/ is in
.dockerignore): pipe it in.

    docker run --rm -i hailuo-bot python - < scripts/image_smoke.py

Exits non-zero on the first failed check; prints one line per check.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
import pkgutil
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

APP = Path("/app")


def check(name: str, ok: bool, detail: object = "") -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + str(detail) if detail != '' else ''}")
    if not ok:
        sys.exit(1)


def writable(path: Path) -> bool:
    """Whether this user can change `path` (a file: open it for appending; a directory: create in it)."""
    try:
        if path.is_dir():
            with tempfile.NamedTemporaryFile(dir=path):
                return True
        with path.open("ab"):
            return True
    except OSError:
        return False


def ffmpegs() -> set[Path]:
    """Every executable file named ffmpeg* outside /proc and /sys, symlinks resolved."""
    found = set()
    for top in ("/usr", "/opt", "/app", "/home", "/bin", "/sbin", "/lib", "/etc", "/srv", "/var"):
        for folder, _, files in os.walk(top):
            for name in files:
                path = Path(folder, name).resolve()
                if name.startswith("ffmpeg") and path.is_file() and os.access(path, os.X_OK):
                    found.add(path)
    return found


def main() -> None:
    sys.path.insert(0, str(APP))
    os.chdir(APP)
    check("runs as uid 10001", os.getuid() == 10001, os.getuid())
    check("no .pyc written", os.environ.get("PYTHONDONTWRITEBYTECODE") == "1")
    for path in (APP, APP / "bot.py", APP / "config.toml", APP / "cogs", APP / "cogs" / "generate.py"):
        check(f"{path} is read-only", not writable(path))
    check("/opt/venv is read-only", not writable(Path(sys.prefix)) and not writable(Path(os.__file__).parent))
    check("/app/data is writable", writable(APP / "data"))
    check("no compiler", not [c for c in ("gcc", "cc", "g++", "make", "clang") if shutil.which(c)])
    check("no pip in the runtime venv", importlib.util.find_spec("pip") is None)

    from media import ffmpeg

    found = sorted(ffmpegs())
    check("exactly one ffmpeg binary", len(found) == 1, [str(p) for p in found])
    check("media.ffmpeg finds it", Path(ffmpeg.ffmpeg_path()) == found[0], ffmpeg.ffmpeg_path())

    async def encode() -> ffmpeg.VideoInfo:
        with tempfile.TemporaryDirectory() as tmp:
            clip = Path(tmp) / "clip.mp4"
            await ffmpeg.run_ffmpeg(
                ["-y", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=s=320x240:r=24:d=1",
                 "-f", "lavfi", "-i", "sine=d=1", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
                 "-shortest", str(clip)],
                time_limit_s=60,
            )  # fmt: skip
            await ffmpeg.last_frame(clip, Path(tmp) / "last.png")
            return await ffmpeg.probe(clip)

    info = asyncio.run(encode())
    check("ffmpeg encodes H.264/AAC and reads it back", info.has_audio and (info.width, info.height) == (320, 240))

    modules = ["bot", "app", "cli", "settings", "webhooks", "webhook_guard", "logsafe"]
    for package in ("core", "media", "providers", "services", "storage", "cogs"):
        modules += [m.name for m in pkgutil.walk_packages([str(APP / package)], prefix=f"{package}.")]
    for name in modules:
        importlib.import_module(name)
    check("every module imports", True, f"{len(modules)} modules")

    from services import spend

    png = spend.render_png([spend.SpendRow(key="a", label="a", jobs=1, total_micros=1_500_000)], "spend")
    check("the admin chart draws (matplotlib, Agg)", png.startswith(b"\x89PNG"), f"{len(png)} bytes")

    from providers import preview_render

    font = preview_render.load_font(24)
    check("the CJK font is found", "wqy" in str(getattr(font, "path", "")).lower(), getattr(font, "path", font))
    from services import i18n

    check("the zh-CN catalogue loads (Babel)", i18n.translations("zh-CN") is not None)

    out = subprocess.run([sys.executable, "bot.py", "--help"], capture_output=True, text=True, timeout=60)
    check("bot.py --help", out.returncode == 0 and "usage" in out.stdout, out.returncode)
    env = {k: v for k, v in os.environ.items() if k != "DISCORD_TOKEN"}
    out = subprocess.run([sys.executable, "bot.py"], capture_output=True, text=True, timeout=60, env=env)
    check("bot.py without a token stops with a message", out.returncode != 0, out.stderr.strip()[:200])


main()
