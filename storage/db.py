"""SQLite access (the default database): one writer connection behind a lock, one reader, numbered
migrations (storage/migrations/sqlite, tracked by `PRAGMA user_version`). It implements storage.sql's
`Database`; storage/postgres.py is the other implementation.

WAL mode lets the reader run while the writer commits. Every write goes through `transaction()`,
which takes the lock and opens `BEGIN IMMEDIATE`, so check-then-insert logic (quota reservations)
is atomic even if a second process shares the file. Callers must never await network I/O inside a
transaction.

A sick database (locked by another process past the busy timeout, disk full, read-only, corrupt) is
always a `StorageError`, never a bare sqlite3 error: callers tell "the database could not record this"
from "the job failed" by that type alone. Bugs (a constraint violated, bad SQL) stay sqlite3 errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

import aiosqlite

from core.errors import StorageError
from storage.sql import ConstraintError, Dialect, Params, Row

log = logging.getLogger(__name__)


def _migrations() -> list[tuple[int, str]]:
    """(version, sql) for every `NNN_name.sql` file, in order."""
    folder = resources.files("storage") / "migrations" / "sqlite"
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


# How long opening the database waits for a lock another process holds: a start that cannot get the
# database must say so in a second or two, not hang (a supervisor then restarts it).
OPEN_BUSY_TIMEOUT_MS = 1000


def is_storage_fault(exc: BaseException) -> bool:
    """The database could not do it (locked, full, read-only, I/O, corrupt), as opposed to a bug."""
    return isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError


async def _connect(path: Path, busy_timeout_ms: int) -> aiosqlite.Connection:
    conn = aiosqlite.connect(path, isolation_level=None)  # we issue BEGIN/COMMIT ourselves
    try:
        await conn
    except BaseException:
        # aiosqlite stops its thread after a failed connect without waiting for it; the thread's last
        # word then lands on a closed event loop (a traceback at exit). Let it finish while the loop runs.
        thread = getattr(conn, "_thread", None)
        if thread is not None:
            await asyncio.to_thread(thread.join, 2.0)
        raise
    try:
        conn.row_factory = aiosqlite.Row
        await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        await conn.execute("PRAGMA foreign_keys = ON")
        await conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL: a crash loses no commit
    except BaseException:
        await conn.close()  # its thread would otherwise keep the process alive
        raise
    return conn


class SqliteConnection:
    """storage.sql's `Connection` over the writer, inside its transaction. A violated constraint or
    trigger is a `ConstraintError` (the sqlite3 error is its cause)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.raw = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        try:
            cursor = await self.raw.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            raise ConstraintError(str(exc)) from exc
        return cursor.rowcount

    async def insert_returning_id(self, sql: str, params: Params = ()) -> int:
        try:
            cursor = await self.raw.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            raise ConstraintError(str(exc)) from exc
        return int(cursor.lastrowid or 0)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        return next(iter(await self.fetchall(sql, params)), None)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        try:
            return list(await self.raw.execute_fetchall(sql, params))
        except sqlite3.IntegrityError as exc:  # a write with RETURNING
            raise ConstraintError(str(exc)) from exc

    async def serialize(self, *scopes: str) -> None:
        """Nothing to do: every write transaction runs alone on the one writer, in BEGIN IMMEDIATE."""

    async def notify(self, channel: str, payload: str) -> None:
        """Nothing to do: one process uses a SQLite file, and it knows what it wrote."""


class SqliteDatabase:
    dialect: Dialect = "sqlite"

    def __init__(self, path: Path, *, busy_timeout_ms: int = 5000) -> None:
        self.path = path
        # How long a write waits for a lock held by another process before failing cleanly.
        self.busy_timeout_ms = busy_timeout_ms
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

    async def open(self) -> SqliteDatabase:
        """Open and migrate, or raise StorageError with a sentence naming the problem. Nothing is left
        open on failure: an aiosqlite connection's thread would keep the process from exiting."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = await _connect(self.path, OPEN_BUSY_TIMEOUT_MS)
            await self._writer.execute("PRAGMA journal_mode = WAL")
            await self._migrate()
            self._reader = await _connect(self.path, self.busy_timeout_ms)
            await self._writer.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        except BaseException as exc:
            await self.close()
            if isinstance(exc, OSError | sqlite3.Error):
                raise StorageError(f"could not open the database {self.path}: {_open_problem(exc)}") from exc
            raise
        return self

    async def close(self) -> None:
        connections, self._reader, self._writer = (self._reader, self._writer), None, None
        for conn in connections:
            if conn is not None:
                try:
                    await conn.close()
                except sqlite3.Error as exc:  # closing must not stop the rest of the shutdown
                    log.warning("closing the database: %s", exc)

    async def __aenter__(self) -> SqliteDatabase:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _migrate(self) -> None:
        assert self._writer is not None
        async with self._writer.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        current = row[0] if row else 0
        # A migration may rebuild a table others reference (SQLite's way to change a constraint): foreign keys
        # are off while it runs (the pragma cannot change inside a transaction), and checked before it commits.
        await self._writer.execute("PRAGMA foreign_keys = OFF")
        try:
            for version, sql in _migrations():
                if version <= current:
                    continue
                await self._writer.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _statements(sql):
                        await self._writer.execute(statement)
                    async with self._writer.execute("PRAGMA foreign_key_check") as cursor:
                        broken = list(await cursor.fetchall())
                    if broken:
                        raise sqlite3.IntegrityError(f"migration {version} breaks foreign keys: {list(broken[0])}")
                    await self._writer.execute(f"PRAGMA user_version = {version}")
                    await self._writer.execute("COMMIT")
                except BaseException:
                    await _rollback(self._writer)
                    raise
                log.info("database migrated to version %d", version)
        finally:
            await self._writer.execute("PRAGMA foreign_keys = ON")

    async def set_busy_timeout(self, milliseconds: int) -> None:
        self.busy_timeout_ms = milliseconds
        for conn in (self._writer, self._reader):
            if conn is not None:
                await conn.execute(f"PRAGMA busy_timeout = {int(milliseconds)}")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteConnection]:
        """The single writer, in an IMMEDIATE transaction; rolled back on any error.

        Waiting for the writer counts against the busy timeout too: when another process holds the
        file's lock, every queued write would otherwise wait its own full timeout in turn, and the last
        of a hundred would hear "busy" minutes later. So no write waits more than twice the timeout."""
        if self._writer is None:
            raise StorageError("database is not open")
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns an acquire that completed as
            # the caller was cancelled and drops the cancellation, so a stopped job would run on.
            async with asyncio.timeout(self.busy_timeout_ms / 1000):
                await self._write_lock.acquire()
        except TimeoutError:
            raise StorageError("database unavailable: busy (other writes have been waiting for it)") from None
        try:
            conn = self._writer
            if conn is None:  # closed while this write waited (the bot is stopping)
                raise StorageError("database is not open")
            try:
                await _begin(conn)
            except (sqlite3.Error, ValueError) as exc:
                if is_storage_fault(exc) or self._closed_under(exc):
                    raise StorageError(f"database unavailable: {exc}") from exc
                raise
            try:
                yield SqliteConnection(conn)
                await conn.execute("COMMIT")
            except BaseException as exc:
                if self._closed_under(exc):
                    raise StorageError("database is not open (closed during the write)") from exc
                await _rollback(conn)
                if is_storage_fault(exc):
                    raise StorageError(f"database write failed: {exc}") from exc
                raise
        finally:
            self._write_lock.release()

    @asynccontextmanager
    async def listen(self, channel: str) -> AsyncIterator[AsyncIterator[str]]:
        """No other process writes this file: a listener that hears nothing, ever."""
        yield _silence()

    def _closed_under(self, exc: BaseException) -> bool:
        """The bot stopped and closed the database while this call waited on it: aiosqlite then raises
        ValueError ("no active connection") or sqlite3's "closed database" ProgrammingError."""
        return self._writer is None and isinstance(exc, ValueError | sqlite3.ProgrammingError)

    @property
    def reader(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise StorageError("database is not open")
        return self._reader

    # Reads run, fetch and close in one call on the database thread. With separate execute/fetch
    # steps, concurrent readers interleave and some statement is nearly always open on the reader,
    # which pins it to an old snapshot: it would not see rows the writer just committed.
    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        return next(iter(await self.fetchall(sql, params)), None)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        try:
            return list(await self.reader.execute_fetchall(sql, params))
        except (sqlite3.Error, ValueError) as exc:
            if is_storage_fault(exc) or self._closed_under(exc):
                raise StorageError(f"database read failed: {exc}") from exc
            raise


async def _silence() -> AsyncIterator[str]:
    await asyncio.get_running_loop().create_future()  # waits until cancelled
    yield ""  # pragma: no cover - never reached; makes this an async generator


async def _begin(conn: aiosqlite.Connection) -> None:
    """BEGIN IMMEDIATE, which may wait out the busy timeout on the database thread. When the caller is
    cancelled meanwhile (a stop), that BEGIN still runs to its end there: wait for it and undo it, or the
    writer would be left inside a transaction and every later write refused."""
    begin = asyncio.ensure_future(conn.execute("BEGIN IMMEDIATE"))
    try:
        await asyncio.shield(begin)
    except asyncio.CancelledError:
        with contextlib.suppress(sqlite3.Error):
            await begin
        await _rollback(conn)
        raise


async def _rollback(conn: aiosqlite.Connection) -> None:
    """Roll back what is still open. SQLite has often rolled back by itself already (a full disk, an
    I/O error): a ROLLBACK then fails with "no transaction is active" and would hide the real error."""
    if not conn.in_transaction:
        return
    try:
        await conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        log.warning("rollback failed: %s", exc)


def _open_problem(exc: BaseException) -> str:
    """What went wrong opening the database, in words an operator can act on."""
    text = str(exc)
    if isinstance(exc, sqlite3.Error):
        lowered = text.lower()
        if "locked" in lowered or "busy" in lowered:
            return f"{text} (another process holds it: is a second copy of the bot running?)"
        if "not a database" in lowered or "malformed" in lowered:
            return f"{text} (the file is damaged: restore it from a backup or move it away)"
        if "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered:
            return f"{text} (check that bot.data_dir is on a writable disk)"
    elif isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} (check bot.data_dir)"
    return text
