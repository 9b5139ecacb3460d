"""PostgreSQL access: storage.sql's `Database` on psycopg 3 (async) with a psycopg_pool connection pool.

psycopg 3 rather than asyncpg because procrastinate, the job engine the bot moves to next, runs on
psycopg 3: one driver, one pool configuration, one set of error classes.

Repositories write SQL in SQLite's spelling; `translate` turns `?` into `%s` and `:name` into `%(name)s`
(and a literal `%` into `%%`). Every transaction runs on a pooled connection in autocommit mode with an
explicit BEGIN (psycopg's `transaction()`), READ COMMITTED; what must not interleave (a quota check and
its reservation, a contest's counts) serializes on transaction-level advisory locks
(`Connection.serialize`), released by the COMMIT or ROLLBACK. SERIALIZABLE with a retry was tried too
and measured slower once several processes reserve at once (README "Storage: SQLite or PostgreSQL").

Processes sharing the database tell each other of a write with NOTIFY (`PgConnection.notify`, sent when its
transaction commits) and hear it on a connection of their own (`PgDatabase.listen`), checked with a
`SELECT 1` whenever it has been quiet for a while, since a dead connection hears nothing.

Migrations (storage/migrations/postgresql, numbered like SQLite's: version N is the same schema) are
recorded in `schema_version`; the migrating connection holds a session advisory lock, so several
processes starting at once migrate exactly once.

A sick database (refused or lost connection, the server shutting down, disk full, read-only, no pooled
connection within the timeout) is a `StorageError`; a violated constraint or trigger a `ConstraintError`;
other errors (bad SQL) stay psycopg errors. No message carries the URL's password.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import psycopg
import psycopg.errors
from psycopg.rows import RowMaker
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from core.errors import StorageError
from storage.sql import ConstraintError, Dialect, Params, Row
from storage.urls import redact_url, url_password

log = logging.getLogger(__name__)

# pg_advisory_lock key held while migrating (any constant: "hailuo" in ASCII).
MIGRATION_LOCK = 0x6861696C756F


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("storage") / "migrations" / "postgresql"
    found = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:3].isdigit():
            found.append((int(name[:3]), entry.read_text(encoding="utf-8")))
    return sorted(found)


class PgRow(tuple[Any, ...]):
    """A row readable by position and by column name, like sqlite3.Row."""

    names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return super().__getitem__(self.names[key])
        return super().__getitem__(key)

    def keys(self) -> list[str]:
        return list(self.names)


def pg_row(cursor: psycopg.AsyncCursor[Any]) -> RowMaker[PgRow]:
    names = {column.name: index for index, column in enumerate(cursor.description or ())}

    def make(values: Sequence[Any]) -> PgRow:
        row = PgRow(values)
        row.names = names
        return row

    return make


_QUOTED = re.compile(r"('(?:[^']|'')*')")
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@functools.lru_cache(maxsize=512)
def translate(sql: str, named: bool) -> bytes:
    """SQLite's placeholders in psycopg's spelling; quoted literals are left alone. Bytes: what psycopg
    takes as a query built at run time."""
    parts = _QUOTED.split(sql)
    for index in range(0, len(parts), 2):  # the even parts are outside quotes
        text = parts[index].replace("%", "%%")
        parts[index] = _NAMED.sub(r"%(\1)s", text) if named else text.replace("?", "%s")
    return "".join(parts).encode()


def _query(sql: str, params: Params) -> tuple[bytes, Params]:
    return translate(sql, isinstance(params, Mapping)), params


def is_storage_fault(exc: BaseException) -> bool:
    """The database could not do it, as opposed to a bug: psycopg's OperationalError covers a refused or
    lost connection, the server shutting down (57P01), disk full (53100), I/O errors and a pool timeout;
    a read-only server (a standby, default_transaction_read_only) is 25006."""
    return isinstance(exc, psycopg.OperationalError | psycopg.errors.ReadOnlySqlTransaction)


class PgConnection:
    """storage.sql's `Connection` over one pooled connection, inside its transaction."""

    def __init__(self, conn: psycopg.AsyncConnection[PgRow]) -> None:
        self.raw = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        try:
            cursor = await self.raw.execute(*_query(sql, params))
        except psycopg.IntegrityError as exc:
            raise ConstraintError(str(exc)) from exc
        return cursor.rowcount

    async def insert_returning_id(self, sql: str, params: Params = ()) -> int:
        rows = await self.fetchall(f"{sql} RETURNING id", params)
        return int(rows[0][0])

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        return next(iter(await self.fetchall(sql, params)), None)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        try:
            cursor = await self.raw.execute(*_query(sql, params))
        except psycopg.IntegrityError as exc:
            raise ConstraintError(str(exc)) from exc
        return list(await cursor.fetchall())

    async def serialize(self, *scopes: str) -> None:
        """Transaction-level advisory locks on these scopes, taken left to right in one statement."""
        if scopes:
            locks = ", ".join("pg_advisory_xact_lock(hashtextextended(%s, 0))" for _ in scopes)
            await self.raw.execute(f"SELECT {locks}".encode(), scopes)

    async def notify(self, channel: str, payload: str) -> None:
        """NOTIFY, delivered to the listeners when this transaction commits (and not at all if it rolls back)."""
        await self.raw.execute(b"SELECT pg_notify(%s, %s)", (channel, payload))


class PgDatabase:
    dialect: Dialect = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 8,
        connect_timeout_s: float = 5.0,
        wait_timeout_s: float = 5.0,
        listen_check_s: float = 30.0,
    ) -> None:
        self.url = url
        self.pool_size = pool_size
        # How long opening waits for the server, and a write or read for a free pooled connection.
        self.connect_timeout_s = connect_timeout_s
        self.wait_timeout_s = wait_timeout_s
        # A listening connection quiet this long is checked with a round trip (`listen`).
        self.listen_check_s = listen_check_s
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[PgRow]] | None = None

    def _say(self, exc: BaseException) -> str:
        """An error's first line, without the URL's password."""
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0].strip()
        password = url_password(self.url)
        return text.replace(password, "***") if password else text

    async def open(self) -> PgDatabase:
        """Connect, migrate, open the pool; or raise StorageError with one sentence naming the problem."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, connect_timeout=max(1, round(self.connect_timeout_s))
            )
            async with conn:
                await _migrate(conn)
            pool: AsyncConnectionPool[psycopg.AsyncConnection[PgRow]] = AsyncConnectionPool(
                self.url,
                min_size=1,
                max_size=self.pool_size,
                kwargs={"autocommit": True, "row_factory": pg_row},
                # A connection the server dropped (a restart, an admin's pg_terminate_backend) is replaced
                # before use instead of failing the next write.
                check=AsyncConnectionPool.check_connection,
                timeout=self.wait_timeout_s,
                open=False,
                name="hailuo",
            )
            self._pool = pool
            await pool.open(wait=True, timeout=self.connect_timeout_s)
        except BaseException as exc:
            await self.close()
            if isinstance(exc, psycopg.Error | OSError):
                raise StorageError(f"could not open the database {redact_url(self.url)}: {self._say(exc)}") from None
            raise
        return self

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await pool.close()
            except psycopg.Error as exc:  # closing must not stop the rest of the shutdown
                log.warning("closing the database: %s", self._say(exc))

    async def __aenter__(self) -> PgDatabase:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _open_pool(self) -> AsyncConnectionPool[psycopg.AsyncConnection[PgRow]]:
        if self._pool is None:
            raise StorageError("database is not open")
        return self._pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgConnection]:
        """A pooled connection in a transaction: committed at the end, rolled back on any error."""
        pool = self._open_pool()
        try:
            async with pool.connection() as conn, conn.transaction():
                yield PgConnection(conn)
        except PoolTimeout as exc:
            raise StorageError("database unavailable: busy (no free connection)") from exc
        except (psycopg.Error, OSError) as exc:
            if is_storage_fault(exc) or isinstance(exc, OSError):
                raise StorageError(f"database write failed: {self._say(exc)}") from exc
            raise

    @asynccontextmanager
    async def listen(self, channel: str) -> AsyncIterator[AsyncIterator[str]]:
        """A connection of its own (never a pooled one, which others would use) LISTENing on `channel`."""
        if not channel.isidentifier():
            raise ValueError(f"not a channel name: {channel!r}")
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, connect_timeout=max(1, round(self.connect_timeout_s))
            )
        except (psycopg.Error, OSError) as exc:
            raise StorageError(f"could not listen on the database: {self._say(exc)}") from exc
        heard = self._heard(conn)
        try:
            try:
                await conn.execute(f"LISTEN {channel}".encode())
            except (psycopg.Error, OSError) as exc:
                raise StorageError(f"could not listen on the database: {self._say(exc)}") from exc
            yield heard
        finally:
            await heard.aclose()
            await conn.close()  # not `async with`: a lost connection has nothing to commit or roll back

    async def _heard(self, conn: psycopg.AsyncConnection[Any]) -> AsyncGenerator[str]:
        try:
            while True:
                async with contextlib.aclosing(conn.notifies(timeout=self.listen_check_s)) as notes:
                    async for note in notes:
                        yield note.payload
                async with asyncio.timeout(self.connect_timeout_s):
                    await conn.execute(b"SELECT 1")
        except (psycopg.Error, OSError, TimeoutError) as exc:
            raise StorageError(f"lost the connection listening on the database: {self._say(exc)}") from exc

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        return next(iter(await self.fetchall(sql, params)), None)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        pool = self._open_pool()
        try:
            async with pool.connection() as conn:
                cursor = await conn.execute(*_query(sql, params))
                return list(await cursor.fetchall())
        except PoolTimeout as exc:
            raise StorageError("database unavailable: busy (no free connection)") from exc
        except (psycopg.Error, OSError) as exc:
            if is_storage_fault(exc) or isinstance(exc, OSError):
                raise StorageError(f"database read failed: {self._say(exc)}") from exc
            raise


async def _migrate(conn: psycopg.AsyncConnection[Any]) -> None:
    """Apply the migrations this database has not seen, each in its own transaction, under a session
    advisory lock: a second process starting at the same time waits, then finds nothing left to do."""
    migrations = _migrations()
    await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        current = await _version(conn)
        if current is None:
            await conn.execute(
                "CREATE TABLE schema_version"
                " (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            current = 0
        for version, sql in migrations:
            if version <= current:
                continue
            async with conn.transaction():
                await conn.execute(sql.encode())  # several statements, no parameters
                await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
            log.info("database migrated to version %d", version)
    finally:
        if not conn.closed:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))


async def _version(conn: psycopg.AsyncConnection[Any]) -> int | None:
    """The schema's version, or None before the first migration. Read without writing anything, so an
    up-to-date database opens even when it is read-only (its writes then fail, as StorageError)."""
    cursor = await conn.execute("SELECT to_regclass('schema_version') IS NOT NULL")
    row = await cursor.fetchone()
    if not (row and row[0]):
        return None
    cursor = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
    row = await cursor.fetchone()
    return int(row[0]) if row else 0
