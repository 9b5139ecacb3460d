"""Storage-fault mode (SQLite): the database is sick too. Its write lock held by another process past the
bot's busy timeout, the data directory's disk full (a small tmpfs that a filler file fills up), and a
start on a read-only file system. The `_fault_<name>` methods are mixed into FaultRun."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import sqlite3
import subprocess
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tests.faults.database import DatabaseView, SqliteView
from tests.faults.figures import Figures
from tests.faults.plan import Fault
from tests.faults.processes import TERM_LIMIT_S, BotProcess, Cast, SingleBot

DATA_TMPFS_SIZE = "64m"  # the data directory's file system in storage-fault mode


class StorageFaults:
    """The storage faults, on the run's one bot process and its SQLite file (FaultRun's attributes)."""

    db: DatabaseView
    cast: Cast
    figures: Figures
    data_tmpfs: Path | None  # the data directory's own small file system (None: mounting was refused)
    _sick_database: asyncio.Lock  # one storage fault at a time: each must be seen for what it is
    if TYPE_CHECKING:

        def note(self, event: str) -> None: ...

        def spawn(self, work: Awaitable[None]) -> None: ...

    def _single(self) -> tuple[SingleBot, SqliteView]:
        assert isinstance(self.cast, SingleBot) and isinstance(self.db, SqliteView), "storage faults are SQLite's"
        return self.cast, self.db

    async def _fault_db_locked(self, step: Fault) -> bool:
        """Another process (a backup, a second copy of the bot) holds the database's write lock for longer
        than the bot's busy timeout: running jobs must wait and carry on, commands be told, nothing lost."""
        self.spawn(self._hold_write_lock(step.seconds))
        return True

    async def _hold_write_lock(self, seconds: float) -> None:
        async with self._sick_database:
            holder = sqlite3.connect(self._single()[1].path, isolation_level=None, timeout=30, check_same_thread=False)
            try:
                await asyncio.to_thread(holder.execute, "BEGIN IMMEDIATE")
                self.note(f"database write lock held for {seconds} s")
                await asyncio.sleep(seconds)
                holder.execute("ROLLBACK")
            finally:
                holder.close()
                self.note("database write lock released")

    async def _fault_disk_full(self, step: Fault) -> bool:
        """The data directory's disk fills up for a few seconds, then space is freed."""
        if self.data_tmpfs is None:
            return False
        self.spawn(self._fill_disk(self.data_tmpfs / "filler", step.seconds))
        return True

    async def _fill_disk(self, filler: Path, seconds: float) -> None:
        async with self._sick_database:
            try:
                await asyncio.to_thread(fill_until_full, filler)
                self.note(f"disk full for {seconds} s")
                await asyncio.sleep(seconds)
            finally:
                filler.unlink(missing_ok=True)
                self.note("disk space freed")

    async def _fault_read_only_start(self, step: Fault) -> bool:
        """The bot stops (SIGTERM) and is started on a read-only file system: it must say so in one line
        and exit with code 2 at once, not hang; once the file system is writable again it resumes its jobs."""
        if self.data_tmpfs is None:
            return False
        async with self._sick_database:
            await self._start_read_only(self._single()[0].bot, self.data_tmpfs)
        await self._single()[0].start()
        return True

    async def _start_read_only(self, bot: BotProcess, data: Path) -> None:
        bot.terminate()
        if (code := await bot.wait_exit(timeout=TERM_LIMIT_S + 20)) != 0:
            self.figures.start_failures.append(f"SIGTERM before a read-only start: exit code {code}")
        remount(data, "ro")
        try:
            started = time.monotonic()
            await bot.start()
            # Not hanging is the promise: an exit within the wait, with code 2 and the one line. How fast is a
            # figure (the note below), not a check: a busy machine starts Python slowly.
            code = await bot.wait_exit(timeout=30)
            took = time.monotonic() - started
            said = [line for line in bot.log_lines()[-5:] if "could not open the database" in line]
            if code != 2 or not said:
                self.figures.start_failures.append(
                    f"read-only start: exit code {code} after {took:.1f} s, said {said or 'nothing'}"
                )
            self.note(f"read-only start ended with exit code {code} after {took:.1f} s")
        finally:
            remount(data, "rw")


# ----- a data directory on its own file system ---------------------------------------------------------------


def mount_tmpfs(folder: Path, size: str) -> Path | None:
    """Mount a small tmpfs on `folder`, or None where this machine does not let the tests mount one (the
    disk and read-only faults are then reported as having had no target)."""
    folder.mkdir(parents=True, exist_ok=True)
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    return folder if made.returncode == 0 else None


def remount(folder: Path, mode: Literal["ro", "rw"]) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(folder)], check=True, capture_output=True)


def unmount(folder: Path) -> None:
    subprocess.run(["umount", "--lazy", str(folder)], check=False, capture_output=True)


def fill_until_full(filler: Path) -> None:
    """Write zeros until the file system refuses more (ENOSPC)."""
    chunk = bytes(1024 * 1024)
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(chunk)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        while chunk := chunk[: len(chunk) // 2]:  # and the last crumbs, so not even a page is left
            with contextlib.suppress(OSError):
                handle.write(chunk)
