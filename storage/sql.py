"""The database interface every repository uses, whichever database is behind it (storage/db.py: SQLite,
storage/postgres.py: PostgreSQL).

Repositories write their SQL once, in SQLite's spelling: `?` placeholders (or `:name` with a mapping), and
portable statements (`INSERT ... ON CONFLICT DO NOTHING`, `RETURNING`-free inserts through
`insert_returning_id`). The PostgreSQL side translates the placeholders. Where a statement must differ,
the repository keeps both forms side by side and picks one by `Database.dialect`.

Writes go through `transaction()`: committed when the block ends, rolled back on any error. Other processes on
the same database hear of a write through `Connection.notify` and `Database.listen` (PostgreSQL's NOTIFY and
LISTEN; SQLite has one process per file, so there is no one to tell). A database
that cannot do it (unreachable, locked past its timeout, full, read-only) raises `core.errors.StorageError`;
a violated constraint or trigger (a bug, or a second outcome for a job) raises `ConstraintError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol

Dialect = Literal["sqlite", "postgresql"]
Params = Sequence[object] | Mapping[str, object]


class ConstraintError(Exception):
    """A constraint or trigger refused the write (e.g. the ledger's append-only and one-outcome rules)."""


class Row(Protocol):
    """A result row: by position or by column name."""

    def __getitem__(self, key: int | str, /) -> Any: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Any]: ...


class Reader(Protocol):
    """What reads need: a database outside a transaction, or a connection inside one."""

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None: ...

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...


class Connection(Reader, Protocol):
    """One connection inside an open transaction."""

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        ...

    async def insert_returning_id(self, sql: str, params: Params = ()) -> int:
        """Run one INSERT of one row into a table with an `id` key; returns that id."""
        ...

    async def serialize(self, *scopes: str) -> None:
        """Until this transaction ends, no other transaction that serializes on any of these scopes runs
        (PostgreSQL: transaction-level advisory locks, taken in the order given; SQLite: nothing to do, its
        one writer already runs every write transaction alone). Callers pass scopes in one fixed order."""
        ...

    async def notify(self, channel: str, payload: str) -> None:
        """Tell the processes listening on `channel` (`Database.listen`) once this transaction commits
        (PostgreSQL: NOTIFY; SQLite: nothing, one process per file)."""
        ...


class Database(Reader, Protocol):
    dialect: Dialect

    async def open(self) -> Database:
        """Connect and migrate, or raise StorageError with one sentence naming the problem."""
        ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> Database: ...

    async def __aexit__(self, *exc: object) -> None: ...

    def transaction(self) -> AbstractAsyncContextManager[Connection]: ...

    def listen(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[str]]:
        """A connection of its own listening on `channel`: once entered, the payload of every later
        `notify` on it, committed, in commit order. Raises StorageError when that connection is lost (the
        caller listens again, and reads what it may have missed). SQLite: never yields."""
        ...
