"""Spend reports (/admin spend): the settled jobs a server's window holds, read from a real SQLite ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.jobs import JobStatus, NewJob
from core.reports import SpendItem
from storage.db import Database
from storage.jobs import SqliteJobStore
from storage.reports import SqliteSpendReader

NOW = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)
GUILD = 10


@dataclass
class Ledger:
    store: SqliteJobStore
    reader: SqliteSpendReader
    monkeypatch: pytest.MonkeyPatch

    async def job(
        self,
        at: datetime,
        *,
        user: int = 1,
        guild: int | None = GUILD,
        channel: int | None = 20,
        model: str = "hailuo-2.3",
        provider: str = "wavespeed",
        cost: int = 280_000,
        charged: int | None = None,
        outcome: str = "settle",
    ) -> int:
        """A job reserved five minutes before `at` and ended at `at` through the real store: settled
        (at `charged` when failover served it cheaper than reserved), refunded, or left in flight."""
        job = NewJob(
            user_id=user,
            guild_id=guild,
            channel_id=channel,
            interaction_id=None,
            command="video",
            mode="t2v",
            quality="standard",
            duration=6,
            optimize_prompt=True,
            model=model,
            prompt="a cat",
            input_image=None,
            provider=provider,
            cost_micros=cost,
        )
        job_id = (await self.store.reserve(job, lambda usage: None, now=at - timedelta(minutes=5))).id
        if charged is not None:
            await self.store.update(job_id, cost_micros=charged)
        # The store stamps an outcome with the current time: make that time `at`.
        self.monkeypatch.setattr("storage.jobs.utcnow", lambda: at)
        if outcome == "settle":
            assert await self.store.finish(job_id, JobStatus.DELIVERED, "settle")
        elif outcome == "refund":
            assert await self.store.finish(job_id, JobStatus.FAILED, "refund")
        return job_id

    async def settled_sum(self, guild: int, since: datetime, until: datetime) -> int:
        """What the ledger itself says was settled in the window, straight from SQL."""
        row = await self.store.db.fetchone(
            "SELECT COALESCE(SUM(amount_micros), 0) FROM ledger WHERE kind = 'settle' AND guild_id = ?"
            " AND at >= ? AND at < ?",
            (guild, since.isoformat(timespec="milliseconds"), until.isoformat(timespec="milliseconds")),
        )
        assert row is not None
        return int(row[0])


@pytest.fixture
async def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    async with Database(tmp_path / "t.db") as db:
        yield Ledger(SqliteJobStore(db), SqliteSpendReader(db), monkeypatch)


async def test_the_reader_returns_the_servers_jobs_settled_in_the_window(ledger: Ledger) -> None:
    since, until = NOW - timedelta(days=1), NOW
    inside = await ledger.job(NOW - timedelta(hours=2), user=2, channel=None, model="hailuo-02", provider="seaart")
    at_start = await ledger.job(since)  # the window includes its start...
    await ledger.job(until)  # ...and not its end
    await ledger.job(since - timedelta(milliseconds=1))
    await ledger.job(NOW - timedelta(hours=1), guild=11)  # another server
    await ledger.job(NOW - timedelta(hours=1), guild=None)  # a DM or the terminal
    await ledger.job(NOW - timedelta(hours=1), outcome="refund")
    await ledger.job(NOW - timedelta(hours=1), outcome="none")  # still in flight: reserved only

    items = await ledger.reader.spend(GUILD, since, until)

    assert [item.job_id for item in items] == [at_start, inside]  # oldest first
    assert items[1] == SpendItem(inside, 2, None, "hailuo-02", "seaart", NOW - timedelta(hours=2), 280_000)
    assert items[0].settled_at == since and items[0].settled_at.tzinfo is not None
    assert sum(item.settled_micros for item in items) == await ledger.settled_sum(GUILD, since, until)


async def test_a_job_counts_when_it_settles_not_when_it_was_reserved(ledger: Ledger) -> None:
    # Reserved at 23:57 the day before the window, settled at 00:02 inside it.
    midnight = NOW.replace(hour=0, minute=0)
    job_id = await ledger.job(midnight + timedelta(minutes=2))
    assert [item.job_id for item in await ledger.reader.spend(GUILD, midnight, NOW)] == [job_id]


async def test_failover_counts_the_price_charged_not_the_reservation(ledger: Ledger) -> None:
    # Reserved at the dearest provider's $0.49, served for $0.28: the settle row is the charge, and the
    # release of the $0.21 difference is not spend (nor is it subtracted again).
    job_id = await ledger.job(NOW - timedelta(hours=1), cost=490_000, charged=280_000)
    totals = await ledger.store.ledger_totals(job_id)
    assert (totals.reserved, totals.settled, totals.released) == (490_000, 280_000, 210_000)

    items = await ledger.reader.spend(GUILD, NOW - timedelta(days=1), NOW)

    assert [item.settled_micros for item in items] == [280_000]
    assert await ledger.settled_sum(GUILD, NOW - timedelta(days=1), NOW) == 280_000


async def test_the_reader_refuses_naive_bounds(ledger: Ledger) -> None:
    with pytest.raises(ValueError):
        await ledger.reader.spend(GUILD, datetime(2026, 11, 1), NOW)  # naive: the point of the test
