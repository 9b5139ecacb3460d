"""SQLite access: one writer connection behind a lock, one reader, numbered migrations.

WAL mode lets the reader run while the writer commits. Every write goes through `transaction()`,
which takes the lock and opens `BEGIN IMMEDIATE`, so check-then-insert logic (quota reservations)
is atomic even if a second process shares the file. Callers must never await network I/O inside a
transaction.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

import aiosqlite

from core.errors import StorageError

log = logging.getLogger(__name__)


def _migrations() -> list[tuple[int, str]]:
    """(version, sql) for every `NNN_name.sql` file, in order."""
    folder = resources.files("storage") / "migrations"
    found = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:3].isdigit():
            found.append((int(name[:3]), entry.read_text(encoding="utf-8")))
    return sorted(found)


def _statements(sql: str) -> list[str]:
    """Split a migration into statements without executescript (which would COMMIT first)."""
    statements, current = [], ""
    for line in sql.splitlines(keepends=True):
        if not current and (not line.strip() or line.lstrip().startswith("--")):
            continue
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        raise ValueError(f"incomplete SQL statement in migration: {current[:60]!r}")
    return statements


async def _connect(path: Path, busy_timeout_ms: int) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)  # we issue BEGIN/COMMIT ourselves
    conn.row_factory = aiosqlite.Row
    await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    await conn.execute("PRAGMA foreign_keys = ON")
    await conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL: a crash loses no commit
    return conn


class Database:
    def __init__(self, path: Path, *, busy_timeout_ms: int = 5000) -> None:
        self.path = path
        # How long a write waits for a lock held by another process before failing cleanly.
        self.busy_timeout_ms = busy_timeout_ms
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

    async def open(self) -> Database:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = await _connect(self.path, self.busy_timeout_ms)
        await self._writer.execute("PRAGMA journal_mode = WAL")
        await self._migrate()
        self._reader = await _connect(self.path, self.busy_timeout_ms)
        return self

    async def close(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    async def __aenter__(self) -> Database:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _migrate(self) -> None:
        assert self._writer is not None
        async with self._writer.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        current = row[0] if row else 0
        for version, sql in _migrations():
            if version <= current:
                continue
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(sql):
                    await self._writer.execute(statement)
                await self._writer.execute(f"PRAGMA user_version = {version}")
                await self._writer.execute("COMMIT")
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
            log.info("database migrated to version %d", version)

    async def set_busy_timeout(self, milliseconds: int) -> None:
        self.busy_timeout_ms = milliseconds
        for conn in (self._writer, self._reader):
            if conn is not None:
                await conn.execute(f"PRAGMA busy_timeout = {int(milliseconds)}")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """The single writer, in an IMMEDIATE transaction; rolled back on any error."""
        if self._writer is None:
            raise StorageError("database is not open")
        async with self._write_lock:
            conn = self._writer
            try:
                await conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StorageError(f"database unavailable: {exc}") from exc
            try:
                yield conn
                await conn.execute("COMMIT")
            except BaseException as exc:
                await conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError):
                    raise StorageError(f"database write failed: {exc}") from exc
                raise

    @property
    def reader(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise StorageError("database is not open")
        return self._reader

    # Reads run, fetch and close in one call on the database thread. With separate execute/fetch
    # steps, concurrent readers interleave and some statement is nearly always open on the reader,
    # which pins it to an old snapshot: it would not see rows the writer just committed.
    async def fetchone(self, sql: str, params: tuple[object, ...] = ()) -> aiosqlite.Row | None:
        rows = await self.reader.execute_fetchall(sql, params)
        return next(iter(rows), None)

    async def fetchall(self, sql: str, params: tuple[object, ...] = ()) -> list[aiosqlite.Row]:
        return list(await self.reader.execute_fetchall(sql, params))
