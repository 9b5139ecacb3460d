"""PostgreSQL only: migrating (once, under a lock), the money rules across processes (several stores, each
with its own pool, as several bot processes would be), and faults (a stopped server, a read-only
database, a URL with a password) as StorageError in one sentence."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from core.errors import QuotaExceeded, StorageError
from core.jobs import JobRecord, JobStatus, NewJob
from services.quotas import Limits, check_fits
from storage.jobs import SqlJobStore
from storage.postgres import PgDatabase, _migrations, translate
from storage.sql import ConstraintError
from tests.pg_server import PREFIX, PgServer, find_binaries, remove_leftovers

NOW = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)
PRICE = 280_000


def new_job(user_id: int = 1, guild_id: int | None = 10) -> NewJob:
    return NewJob(
        user_id=user_id, guild_id=guild_id, channel_id=20, interaction_id=None, command="video", mode="t2v",
        quality="standard", duration=6, optimize_prompt=True, model="hailuo-2.3", prompt="a cat",
        input_image=None, provider="wavespeed", cost_micros=PRICE,
    )  # fmt: skip


def empty_database(pg_server: PgServer, name: str) -> str:
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}".encode())
    return pg_server.url(name)


def drop_database(pg_server: PgServer, name: str) -> None:
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


def test_placeholders_are_translated_outside_quoted_text_only() -> None:
    assert translate("SELECT * FROM t WHERE a = ? AND b = '?' AND c LIKE '5%'", False) == (
        b"SELECT * FROM t WHERE a = %s AND b = '?' AND c LIKE '5%'"
    )
    assert translate("SELECT :user, ':kept', 100 % 7, x::text", True) == b"SELECT %(user)s, ':kept', 100 %% 7, x::text"


async def test_two_processes_starting_at_once_migrate_once_and_reopening_migrates_nothing(
    pg_server: PgServer,
) -> None:
    url = empty_database(pg_server, "fresh_start")
    try:
        first, second = PgDatabase(url), PgDatabase(url)
        await asyncio.gather(first.open(), second.open())
        await asyncio.gather(first.close(), second.close())
        async with PgDatabase(url) as db:
            rows = await db.fetchall("SELECT version FROM schema_version ORDER BY version")
            assert [row[0] for row in rows] == [version for version, _ in _migrations()]
            assert [row[0] for row in rows] == list(range(1, len(rows) + 1))  # numbered like SQLite's
    finally:
        drop_database(pg_server, "fresh_start")


async def test_the_ledger_refuses_truncate_and_a_second_outcome_from_another_process(pg_url: str) -> None:
    async with PgDatabase(pg_url) as one, PgDatabase(pg_url) as other:
        job = await SqlJobStore(one).reserve(new_job(), check_fits(Limits(), PRICE, NOW), now=NOW)
        outcomes = await asyncio.gather(
            SqlJobStore(one).finish(job.id, JobStatus.DELIVERED, "settle"),
            SqlJobStore(other).finish(job.id, JobStatus.FAILED, "refund"),
        )
        assert sorted(outcomes) == [False, True]
        totals = await SqlJobStore(one).ledger_totals(job.id)
        assert totals.settled + totals.refunded == PRICE and totals.outstanding == 0
        for statement in ("TRUNCATE ledger CASCADE", "UPDATE ledger SET amount_micros = 0", "DELETE FROM ledger"):
            with pytest.raises(ConstraintError, match="append-only"):
                async with one.transaction() as conn:
                    await conn.execute(statement)


async def test_fifty_reservations_from_five_processes_never_overspend_a_small_budget(pg_url: str) -> None:
    # $2.00 a member a day, $3.00 for the server: 7 for one member, 10 in all; 50 commands at once from
    # 5 processes, each with its own pool.
    rule = Limits(user_daily_usd=2_000_000, guild_monthly_usd=3_000_000)
    databases = [await PgDatabase(pg_url).open() for _ in range(5)]
    try:
        stores = [SqlJobStore(db) for db in databases]
        results = await asyncio.gather(
            *(
                stores[n % 5].reserve(new_job(user_id=1 + n % 2), check_fits(rule, PRICE, NOW), now=NOW)
                for n in range(50)
            ),
            return_exceptions=True,
        )
        admitted = [r for r in results if isinstance(r, JobRecord)]
        assert all(isinstance(r, JobRecord | QuotaExceeded) for r in results), results
        assert len(admitted) == 10  # $3.00 / $0.28
        assert (await stores[0].ledger_totals()).reserved == 10 * PRICE
        for user in (1, 2):
            assert (await stores[0].usage(user, 10, NOW)).user_day_micros <= 2_000_000
    finally:
        for db in databases:
            await db.close()


async def test_a_url_nobody_answers_is_one_sentence_without_the_password(tmp_path: object) -> None:
    url = f"postgresql://hailuo:pw-not-shown@/hailuo?host={tmp_path}&connect_timeout=2"
    with pytest.raises(StorageError) as info:
        await PgDatabase(url).open()
    message = str(info.value)
    assert message.startswith("could not open the database postgresql://hailuo:***@/hailuo")
    assert "pw-not-shown" not in message and "\n" not in message


async def test_a_read_only_database_is_a_storage_error(pg_server: PgServer, pg_url: str) -> None:
    name = urlsplit(pg_url).path.lstrip("/")
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = on".encode())
    async with PgDatabase(pg_url) as db:
        with pytest.raises(StorageError, match="read-only"):
            await SqlJobStore(db).set_meta("k", "v")
        assert await SqlJobStore(db).get_meta("k") is None  # reads still work


@pytest.fixture
def own_server() -> Iterator[PgServer]:
    """A server of its own, to stop under a running store."""
    bindir, why = find_binaries()
    if bindir is None:
        pytest.skip(why)
    server = PgServer(bindir).start()
    try:
        yield server
    finally:
        server.remove()


async def test_a_stopped_server_is_a_storage_error_and_the_store_recovers_when_it_is_back(
    own_server: PgServer,
) -> None:
    async with PgDatabase(own_server.url(), connect_timeout_s=1, wait_timeout_s=1) as db:
        store = SqlJobStore(db)
        await store.set_meta("before", "1")
        await asyncio.to_thread(own_server.stop)
        with pytest.raises(StorageError):
            await store.reserve(new_job(), check_fits(Limits(), PRICE, NOW), now=NOW)
        with pytest.raises(StorageError):
            await store.get_meta("before")
        await asyncio.to_thread(own_server.start)
        started = asyncio.get_running_loop().time()
        while True:  # the pool reconnects in the background, with backoff
            try:
                assert await store.get_meta("before") == "1"
                break
            except StorageError:
                assert asyncio.get_running_loop().time() - started < 30
        await store.reserve(new_job(), check_fits(Limits(), PRICE, NOW), now=NOW)
        assert (await store.ledger_totals()).reserved == PRICE


async def test_a_write_cancelled_mid_transaction_leaves_nothing_and_the_pool_works_on(pg_url: str) -> None:
    async with PgDatabase(pg_url, pool_size=1) as db:
        inside = asyncio.Event()

        async def write() -> None:
            async with db.transaction() as conn:
                await conn.execute("INSERT INTO meta (key, value) VALUES ('half', 'written')")
                inside.set()
                await conn.execute("SELECT pg_sleep(30)")

        task = asyncio.create_task(write())
        await inside.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        store = SqlJobStore(db)
        assert await store.get_meta("half") is None
        await store.set_meta("after", "1")  # the one pooled connection is usable again
        assert await store.get_meta("after") == "1"


def test_the_server_of_a_killed_test_run_is_removed_and_a_live_runs_is_kept() -> None:
    bindir, why = find_binaries()
    if bindir is None:
        pytest.skip(why)
    dead = subprocess.Popen(["true"])
    dead.wait()
    killed_run = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{dead.pid}-"))
    live_run = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
    try:
        removed = remove_leftovers(bindir)
        assert killed_run in removed and not killed_run.exists()
        assert live_run.exists()
    finally:
        shutil.rmtree(live_run, ignore_errors=True)
