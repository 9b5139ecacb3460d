"""Suite-wide options and the databases the storage tests run on.

`--slow` also runs the long runs (e.g. the long fault-injection run). `--database postgresql` runs every
end-to-end bot on PostgreSQL instead of its SQLite file (tests/e2e/conftest.py). `db_url` runs a test once on SQLite
and once on PostgreSQL: one PostgreSQL server per test session (started only when a test needs it, see
tests/pg_server.py), and a fresh database per test, copied from a migrated template."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from storage.postgres import PgDatabase
from tests.pg_server import PgServer, find_binaries, remove_leftovers

TEMPLATE = "hailuo_template"
_numbers = itertools.count(1)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", default=False, help="also run the long (slow) runs")
    parser.addoption(
        "--database",
        choices=["sqlite", "postgresql"],
        default="sqlite",
        help="the database the end-to-end bots run on (postgresql: a fresh database per test)",
    )


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bindir, source = find_binaries()
    if bindir is None:
        pytest.skip(f"PostgreSQL tests skipped: {source}")
    remove_leftovers(bindir)
    server = PgServer(bindir).start()
    try:
        asyncio.run(_migrate_template(server))
        yield server
    finally:
        server.remove()


async def _migrate_template(server: PgServer) -> None:
    async with await psycopg.AsyncConnection.connect(server.url(), autocommit=True) as conn:
        await conn.execute(f"CREATE DATABASE {TEMPLATE}")
    async with PgDatabase(server.url(TEMPLATE)):
        pass


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, migrated database of its own."""
    name = f"test_{next(_numbers)}"
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}".encode())
    try:
        yield pg_server.url(name)
    finally:
        with psycopg.connect(pg_server.url(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The test's database: a SQLite file in its tmp_path, or a PostgreSQL database of its own."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url
