"""A database that cannot be opened or migrated ends `bot.py` with one line and exit code 2, promptly:
never a traceback, never a process left hanging on a database thread (a supervisor could not restart it)."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_entrypoint import run_bot

CONFIG = '[bot]\ndata_dir = "data"\n'
TOKEN = {"DISCORD_TOKEN": "not-used-the-database-fails-first"}


def assert_one_line_exit(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and " INFO " not in line]
    assert len(lines) == 1, result.stderr
    assert "could not open the database" in lines[0]
    for word in words:
        assert word in lines[0], lines[0]


def test_a_corrupt_database_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "hailuo.db").write_bytes(b"this is not a database, it was overwritten by something\n" * 200)
    assert_one_line_exit(run_bot(tmp_path, CONFIG, env=TOKEN), "not a database", "backup")


def test_a_lock_held_by_another_process_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    holder = sqlite3.connect(tmp_path / "data" / "hailuo.db", isolation_level=None)
    try:
        holder.execute("CREATE TABLE held (x)")
        holder.execute("BEGIN EXCLUSIVE")  # what a second copy of the bot mid-migration would hold
        assert_one_line_exit(run_bot(tmp_path, CONFIG, env=TOKEN), "locked", "second copy")
    finally:
        holder.close()


@contextlib.contextmanager
def read_only_mount(folder: Path) -> Iterator[None]:
    """A real read-only file system (a small tmpfs), where this machine lets the tests mount one."""
    folder.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command here")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(folder)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("this machine does not let the tests mount a file system")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_a_read_only_file_system_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with read_only_mount(tmp_path / "data"):
        assert_one_line_exit(run_bot(tmp_path, CONFIG, env=TOKEN), "writable")
