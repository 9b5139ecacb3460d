"""The ledger and quota enforcement on a real database: each test on SQLite and on PostgreSQL, except the
SQLite-only ones (migrating an old file, a file locked by another process)."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app import quota_policy
from config_sections import usd_to_micros
from core.errors import QuotaExceeded, StorageError
from core.jobs import JobRecord, JobStatus, NewJob, Usage
from services.quotas import Limits, check_fits, find_refusal, next_month, summarise
from settings import QuotasSection
from storage.connect import database_for
from storage.db import SqliteDatabase
from storage.jobs import SqlJobStore
from storage.sql import ConstraintError

NOW = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)


def new_job(user_id: int = 1, guild_id: int | None = 10, cost: int = 280_000) -> NewJob:
    return NewJob(
        user_id=user_id,
        guild_id=guild_id,
        channel_id=20,
        interaction_id=None,
        command="video",
        mode="t2v",
        quality="standard",
        duration=6,
        optimize_prompt=True,
        model="hailuo-2.3",
        prompt="a cat",
        input_image=None,
        provider="wavespeed",
        cost_micros=cost,
    )


@pytest.fixture
async def jobs(db_url: str):
    async with database_for(db_url) as db:
        yield SqlJobStore(db)


def limits(**values: object) -> Limits:
    """Limits written as in config.toml (dollar amounts as strings)."""
    return Limits(**{key: usd_to_micros(value) if key.endswith("_usd") else value for key, value in values.items()})


async def test_concurrent_reservations_admit_exactly_the_budget(jobs: SqlJobStore) -> None:
    # $2.00 admits exactly 7 jobs at $0.28; 50 commands arrive at once.
    rule = limits(user_daily_usd="2.00")
    results = await asyncio.gather(
        *(jobs.reserve(new_job(), check_fits(rule, 280_000, NOW), now=NOW) for _ in range(50)),
        return_exceptions=True,
    )
    admitted = [r for r in results if isinstance(r, JobRecord)]
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(admitted) == 7
    assert len(refused) == 43
    assert (await jobs.ledger_totals()).reserved == 7 * 280_000
    assert refused[0].limit == "user_daily_usd"


async def test_concurrent_reservations_respect_in_flight_limit_across_users_and_guild_budget(
    jobs: SqlJobStore,
) -> None:
    rule = limits(user_max_in_flight=2, guild_monthly_usd="1.00")
    results = await asyncio.gather(
        *(jobs.reserve(new_job(user_id=u % 5), check_fits(rule, 280_000, NOW), now=NOW) for u in range(40)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, JobRecord) for r in results) == 3  # $1.00 / $0.28
    usage = await jobs.usage(1, 10, NOW)
    assert usage.guild_month_micros == 3 * 280_000


async def test_refund_returns_money_and_video_to_the_window(jobs: SqlJobStore) -> None:
    rule = limits(user_daily_videos=1)
    job_id = (await jobs.reserve(new_job(), check_fits(rule, 280_000, NOW), now=NOW)).id
    with pytest.raises(QuotaExceeded):
        await jobs.reserve(new_job(), check_fits(rule, 280_000, NOW), now=NOW)
    assert await jobs.finish(job_id, "failed", "refund", "provider failed")
    await jobs.reserve(new_job(), check_fits(rule, 280_000, NOW), now=NOW)
    totals = await jobs.ledger_totals()
    assert (totals.reserved, totals.refunded, totals.outstanding) == (560_000, 280_000, 280_000)


async def test_a_job_ends_once_settle_after_refund_is_ignored(jobs: SqlJobStore) -> None:
    job_id = (await jobs.reserve(new_job(cost=1), check_fits(limits(), 1, NOW), now=NOW)).id
    assert await jobs.finish(job_id, JobStatus.DELIVERED, "settle")
    assert not await jobs.finish(job_id, JobStatus.FAILED, "refund")
    assert not await jobs.finish(job_id, JobStatus.DELIVERED, "settle")
    job = await jobs.get(job_id)
    assert job is not None and job.status == "delivered"
    totals = await jobs.ledger_totals(job_id)
    assert (totals.settled, totals.refunded, totals.outstanding) == (1, 0, 0)


async def test_an_ended_job_keeps_its_status_whatever_a_late_runner_records(jobs: SqlJobStore) -> None:
    """A job refunded by one process (a Cancel while it waited for a worker) is not moved on by a worker that
    took it at that moment: its runner learns it ended and sends nothing."""
    job_id = (await jobs.reserve(new_job(cost=1), check_fits(limits(), 1, NOW), now=NOW)).id
    assert await jobs.set_status(job_id, JobStatus.SUBMITTING)
    assert await jobs.finish(job_id, JobStatus.CANCELLED, "refund")
    assert not await jobs.set_status(job_id, JobStatus.RUNNING, "late")
    job = await jobs.get(job_id)
    assert job is not None and job.status == "cancelled"


async def test_ledger_rows_cannot_be_changed_or_deleted(jobs: SqlJobStore) -> None:
    await jobs.reserve(new_job(cost=1), check_fits(limits(), 1, NOW), now=NOW)
    for statement in ("UPDATE ledger SET amount_micros = 0", "DELETE FROM ledger"):
        with pytest.raises(ConstraintError, match="append-only"):
            async with jobs.db.transaction() as conn:
                await conn.execute(statement)
    assert (await jobs.ledger_totals()).reserved == 1


async def test_refusal_names_limit_and_reset_time() -> None:
    usage = Usage(0, 0, 1_900_000, 0, 0, 0)
    refusal = find_refusal(limits(user_daily_usd="2.00"), usage, 280_000, NOW)
    assert refusal is not None
    assert refusal.limit == "user_daily_usd"
    assert "$0.28" in refusal.message and "$0.10 left" in refusal.message
    assert refusal.resets_at == datetime(2026, 11, 24, tzinfo=UTC)
    assert next_month(datetime(2026, 12, 31, 23, tzinfo=UTC)) == datetime(2027, 1, 1, tzinfo=UTC)


def test_role_overrides_take_the_most_generous_value() -> None:
    quotas = QuotasSection.model_validate(
        {
            "user_daily_videos": 5,
            "user_daily_usd": "1.00",
            "roles": {"7": {"user_daily_videos": 20}, "8": {"user_daily_videos": 50, "user_daily_usd": ""}},
        }
    )
    policy = quota_policy(quotas)
    assert policy.for_member([]).user_daily_videos == 5
    assert policy.for_member([7]).user_daily_videos == 20
    both = policy.for_member([7, 8, 999])
    assert both.user_daily_videos == 50
    assert both.user_daily_usd is None  # "" disables the limit for that role
    assert both.user_max_in_flight == 2  # untouched keys keep the base value


def test_summary_shows_what_is_left() -> None:
    usage = Usage(1, 3, 840_000, 840_000, 5_000_000, 5_000_000)
    lines = summarise(limits(user_daily_videos=10, user_daily_usd="2.00", guild_monthly_usd="100"), usage, NOW, True)
    by_label = {line.label: line for line in lines}
    assert by_label["Videos today"].left == "7"
    assert by_label["Your spend today"].left == "$1.16"
    assert by_label["Server budget this month"].left == "$95.00"
    assert by_label["Your spend this month"].limit is None


async def test_settle_at_a_cheaper_price_releases_the_difference(jobs: SqlJobStore) -> None:
    job_id = (await jobs.reserve(new_job(cost=490_000), check_fits(limits(), 490_000, NOW), now=NOW)).id
    await jobs.update(job_id, cost_micros=280_000, provider="seaart")  # failover served it cheaper
    assert await jobs.finish(job_id, JobStatus.DELIVERED, "settle")
    totals = await jobs.ledger_totals(job_id)
    assert (totals.settled, totals.released, totals.outstanding) == (280_000, 210_000, 0)
    assert (await jobs.usage(1, 10, NOW)).user_day_micros == 280_000
    with pytest.raises(ConstraintError):  # a release never exceeds the reservation
        async with jobs.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO ledger (job_id, at, kind, amount_micros, user_id, period_day, period_month) "
                "VALUES (?, 'now', 'release', 1, 1, 'd', 'm')",
                (job_id,),
            )


async def test_migrations_keep_existing_ledger_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    async with SqliteDatabase(path) as db:
        repo = SqlJobStore(db)
        await repo.reserve(new_job(cost=5), check_fits(limits(), 5, NOW), now=NOW)
    async with SqliteDatabase(path) as db:  # reopening runs no migration twice and keeps the data
        assert (await SqlJobStore(db).ledger_totals()).reserved == 5
        row = await db.fetchone("PRAGMA user_version")
        # The highest migration number (branches may number theirs ahead of one still to merge).
        migrations = (Path(__file__).parents[1] / "storage" / "migrations" / "sqlite").glob("*.sql")
        assert row is not None and row[0] == max(int(path.name[:3]) for path in migrations)


async def test_a_locked_database_fails_the_reservation_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    async with SqliteDatabase(path, busy_timeout_ms=100) as db:
        repo = SqlJobStore(db)
        other = sqlite3.connect(path, isolation_level=None)  # another process holding the write lock
        other.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(StorageError):
                await repo.reserve(new_job(), check_fits(limits(), 280_000, NOW), now=NOW)
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert (await repo.ledger_totals()).reserved == 0
        await repo.reserve(new_job(), check_fits(limits(), 280_000, NOW), now=NOW)  # and it recovers
        assert (await repo.ledger_totals()).reserved == 280_000


async def test_a_reservation_is_returned_complete_and_readable_at_once_under_concurrent_reads(
    jobs: SqlJobStore,
) -> None:
    async def reader() -> None:
        for _ in range(50):
            await jobs.db.fetchall("SELECT id FROM jobs")

    readers = [asyncio.create_task(reader()) for _ in range(5)]
    records = await asyncio.gather(*(jobs.reserve(new_job(user_id=u), check_fits(limits(), 1, NOW)) for u in range(30)))
    for record in records:
        assert record.status == "reserved" and record.cost_micros == 280_000
        stored = await jobs.get(record.id)
        assert stored is not None and stored.created_at == record.created_at
    await asyncio.gather(*readers)


async def test_variants_are_reserved_all_or_none_beside_other_reservations(jobs: SqlJobStore) -> None:
    # $1.00 a day: a single job and a set of three variants ($0.84) arrive together in one group commit.
    # Counted after the single one, the third variant does not fit, so the whole set is undone and the
    # single job stands; a set of two then fits.
    rule = limits(user_daily_usd="1.00")
    check = check_fits(rule, 280_000, NOW)
    single, three = await asyncio.gather(
        jobs.reserve(new_job(), check, now=NOW),
        jobs.reserve_many([new_job()] * 3, check, now=NOW),
        return_exceptions=True,
    )
    assert isinstance(single, JobRecord) and isinstance(three, QuotaExceeded)
    assert three.limit == "user_daily_usd"
    assert (await jobs.ledger_totals()).reserved == 280_000
    assert len(await jobs.unfinished()) == 1
    two = await jobs.reserve_many([new_job()] * 2, check, now=NOW)
    assert len({job.id for job in two}) == 2
    assert (await jobs.ledger_totals()).reserved == 3 * 280_000
    usage = await jobs.usage(1, 10, NOW)
    assert (usage.user_day_videos, usage.user_in_flight) == (3, 3)


async def test_a_claimed_setting_is_the_first_one_stored_whoever_claims_it(db_url: str) -> None:
    """Processes starting together each make a webhook path token: every one of them gets the first stored."""
    async with database_for(db_url) as first, database_for(db_url) as second:
        made = [f"token-{n}" for n in range(10)]
        stores = [SqlJobStore(first if n % 2 else second) for n in range(10)]
        claimed = await asyncio.gather(
            *(store.claim_meta("path", token) for store, token in zip(stores, made, strict=True))
        )
        assert len(set(claimed)) == 1 and claimed[0] in made
        assert await SqlJobStore(first).claim_meta("path", "later") == claimed[0]
        assert await SqlJobStore(second).get_meta("path") == claimed[0]
