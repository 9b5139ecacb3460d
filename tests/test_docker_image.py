"""The Docker image's recipe, read statically (no Docker needed): a base pinned by digest, one ffmpeg,
a non-root user who cannot write the code, and a .dockerignore that keeps caches and secrets out at any
depth while letting every file the bot runs in."""

from __future__ import annotations

import re
from pathlib import Path

import pathspec
import pytest

ROOT = Path(__file__).resolve().parent.parent
DIGEST_RE = re.compile(r"^[\w.\-/]+(?::[\w.\-]+)?@sha256:[0-9a-f]{64}$")
COMPILERS = ("gcc", "g++", "clang", "build-essential", "make", "cc", "cpp")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined and comments dropped."""
    steps: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        keyword, _, args = pending.partition(" ")
        steps.append((keyword.upper(), args.strip()))
        pending = ""
    return steps


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, args in instructions():
        if keyword == "FROM":
            result.append([])
        result[-1].append((keyword, args))
    return result


def apt_packages(stage: list[tuple[str, str]]) -> list[str]:
    """The packages a stage's RUN lines install with apt-get."""
    found: list[str] = []
    for keyword, args in stage:
        if keyword != "RUN":
            continue
        for command in re.split(r"&&|;", args):
            words = command.split()
            if "apt-get" in words and "install" in words:
                found += [w for w in words[words.index("install") + 1 :] if not w.startswith("-")]
    return found


def test_every_base_image_is_pinned_by_digest() -> None:
    aliases: set[str] = set()
    for stage in stages():
        words = stage[0][1].split()
        image = words[0]
        if image not in aliases:  # FROM an earlier stage needs no digest
            assert DIGEST_RE.match(image), f"FROM {image}: pin the base by digest (name@sha256:…)"
            assert image.startswith("python:3.11-slim@"), image
        if len(words) == 3 and words[1].upper() == "AS":
            aliases.add(words[2])


def test_the_image_carries_exactly_one_ffmpeg() -> None:
    """The static build from the imageio-ffmpeg wheel: no ffmpeg from apt, a download or a second package."""
    for stage in stages():
        assert not [p for p in apt_packages(stage) if "ffmpeg" in p or p.startswith("libav")]
        for keyword, args in stage:
            assert "ffmpeg" not in args.lower(), f"{keyword} {args}: ffmpeg comes only from requirements.txt"
    installs = [args for stage in stages() for keyword, args in stage if keyword == "RUN" and "pip install" in args]
    assert len(installs) == 1 and "-r /build/requirements.txt" in installs[0], installs
    requirements = (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    ffmpegs = [line for line in requirements if "ffmpeg" in line.lower() and not line.startswith("#")]
    assert len(ffmpegs) == 1 and re.fullmatch(r"imageio-ffmpeg==[\d.]+", ffmpegs[0]), ffmpegs


def test_runtime_is_a_non_root_user_who_cannot_write_the_code() -> None:
    final = stages()[-1]
    users = [args for keyword, args in final if keyword == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0"), "the runtime stage must end as a non-root USER"
    runs = " ".join(args for keyword, args in final if keyword == "RUN")
    assert re.search(rf"useradd [^&;]*--uid 10001 [^&;]*\b{re.escape(users[-1])}\b", runs), "the user is uid 10001"
    # Code and config.toml arrive owned by root (no --chown), and only the data directory is handed over.
    for keyword, args in final:
        if keyword in ("COPY", "ADD"):
            assert "--chown" not in args, f"{keyword} {args}: the code stays root's"
    chowns = re.findall(r"chown (\S+) (\S+)", runs)
    assert chowns == [(f"{users[-1]}:{users[-1]}", "/app/data")], chowns
    assert ("VOLUME", '["/app/data"]') in final
    env = " ".join(args for keyword, args in final if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert not [p for p in apt_packages(final) if p in COMPILERS or p.startswith(("gcc-", "g++-"))]


def dockerignore() -> pathspec.PathSpec:
    """.dockerignore with Docker's semantics: every pattern is anchored at the context's root (a bare
    `__pycache__` matches only the top-level one), `**` spans directories, the last match wins."""
    lines = []
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = "/" + line.lstrip("!").strip().strip("/")
        lines.append(("!" if negate else "") + pattern)
    return pathspec.PathSpec.from_lines("gitignore", lines)


@pytest.mark.parametrize(
    "path",
    [
        "a/b/__pycache__/x.pyc",
        "__pycache__/bot.cpython-311.pyc",
        "cogs/__pycache__/generate.cpython-311.pyc",
        "cogs/generate.pyc",
        "sub/.env",
        ".env",
        ".env.local",
        "providers/kit/.env",
        "data/hailuo.db",
        "somewhere/else/state.db",
        "x/.pytest_cache/v/cache/nodeids",
        ".pytest_cache/README.md",
        "services/.mypy_cache/3.11/x.json",
        ".git/HEAD",
        ".venv/bin/python",
        "tests/test_media.py",
        "bench/images.py",
    ],
)
def test_dockerignore_excludes_at_any_depth(path: str) -> None:
    assert dockerignore().match_file(path), f"{path} would be sent to the Docker build"


def test_dockerignore_lets_in_every_file_the_bot_runs() -> None:
    spec = dockerignore()
    needed = ["bot.py", "config.toml", "requirements.txt", "cogs/generate.py", "media/ffmpeg.py"]
    needed += [p.name for p in ROOT.glob("*.py")]
    for package in ("cogs", "core", "media", "providers", "services", "storage", "locales"):
        needed += [
            str(p.relative_to(ROOT))
            for p in (ROOT / package).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        ]
    assert len(needed) > 50
    assert not [p for p in needed if spec.match_file(p)]
