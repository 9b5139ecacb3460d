"""Jobs and the ledger: the only code that writes them.

A job is created together with its reservation in one IMMEDIATE transaction, after a caller-supplied
check has seen the usage figures read inside that same transaction. That is what makes quota
enforcement race-free: two concurrent commands can never both see room for one more job.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from storage.db import Database, StorageError

TERMINAL_STATUSES = ("delivered", "failed", "cancelled")
REFUNDED_STATUSES = ("failed", "cancelled")
# Reservations written in one transaction at most (a group commit keeps each one short).
GROUP_COMMIT_MAX = 64


class QuotaRefusal(Exception):
    """Raised by a reservation check to refuse a job (services.errors.QuotaExceeded derives from it)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class NewJob:
    user_id: int
    guild_id: int | None
    channel_id: int | None
    interaction_id: int | None
    command: str
    mode: str
    quality: str
    duration: int
    optimize_prompt: bool
    model: str
    prompt: str
    input_image: str | None
    provider: str
    cost_micros: int
    parent_job_id: int | None = None
    end_image: str | None = None
    upload_limit: int | None = None


@dataclass(frozen=True)
class JobRecord:
    id: int
    created_at: str
    updated_at: str
    user_id: int
    guild_id: int | None
    channel_id: int | None
    message_id: int | None
    interaction_id: int | None
    command: str
    mode: str
    quality: str
    duration: int
    optimize_prompt: bool
    model: str
    prompt: str
    input_image: str | None
    provider: str
    provider_task_id: str | None
    status: str
    cost_micros: int
    output_url: str | None
    output_bytes: int | None
    delivered_as: str | None
    error_kind: str | None
    error_detail: str | None
    submitted_at: str | None
    provider_done_at: str | None
    finished_at: str | None
    generation_seconds: float | None
    parent_job_id: int | None
    end_image: str | None
    upload_limit: int | None

    @classmethod
    def from_row(cls, row: aiosqlite.Row) -> JobRecord:
        values = {f.name: row[f.name] for f in fields(cls)}
        values["optimize_prompt"] = bool(values["optimize_prompt"])
        return cls(**values)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class Usage:
    """What counts against limits, read inside the reservation transaction. Amounts in micros."""

    user_in_flight: int
    user_day_videos: int
    user_day_micros: int
    user_month_micros: int
    guild_month_micros: int
    global_month_micros: int


@dataclass(frozen=True)
class LedgerTotals:
    reserved: int
    settled: int
    refunded: int
    released: int = 0

    @property
    def outstanding(self) -> int:
        """Reserved money that is neither settled, refunded nor released yet."""
        return self.reserved - self.settled - self.refunded - self.released


_SPENT = (
    "COALESCE(SUM(CASE kind WHEN 'reserve' THEN amount_micros WHEN 'refund' THEN -amount_micros"
    " WHEN 'release' THEN -amount_micros END), 0)"
)
_COUNTED = "COALESCE(SUM(CASE kind WHEN 'reserve' THEN 1 WHEN 'refund' THEN -1 END), 0)"


async def _scalar(conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...]) -> int:
    async with conn.execute(sql, params) as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


_TERMINAL = ",".join(f"'{status}'" for status in TERMINAL_STATUSES)
# Every figure a quota check needs, in one statement (one round trip to the database thread).
_USAGE_SQL = f"""SELECT
    (SELECT COUNT(*) FROM jobs WHERE user_id = :user AND status NOT IN ({_TERMINAL})),
    (SELECT {_COUNTED} FROM ledger WHERE user_id = :user AND period_day = :day),
    (SELECT {_SPENT} FROM ledger WHERE user_id = :user AND period_day = :day),
    (SELECT {_SPENT} FROM ledger WHERE user_id = :user AND period_month = :month),
    (SELECT {_SPENT} FROM ledger WHERE guild_id = :guild AND period_month = :month),
    (SELECT {_SPENT} FROM ledger WHERE period_month = :month)"""


async def read_usage(conn: aiosqlite.Connection, user_id: int, guild_id: int | None, day: str, month: str) -> Usage:
    params = {"user": user_id, "guild": guild_id, "day": day, "month": month}
    async with conn.execute(_USAGE_SQL, params) as cursor:
        row = await cursor.fetchone()
    assert row is not None
    figures = [int(value or 0) for value in row]
    return Usage(*figures)


def _new_record(job_id: int, job: NewJob, stamp: str) -> JobRecord:
    """The row just inserted, built from what was written (no read-back round trip)."""
    return JobRecord(
        **{f.name: getattr(job, f.name) for f in fields(NewJob)},
        id=job_id,
        created_at=stamp,
        updated_at=stamp,
        message_id=None,
        provider_task_id=None,
        status="reserved",
        output_url=None,
        output_bytes=None,
        delivered_as=None,
        error_kind=None,
        error_detail=None,
        submitted_at=None,
        provider_done_at=None,
        finished_at=None,
        generation_seconds=None,
    )


@dataclass
class _Pending:
    job: NewJob
    check: Callable[[Usage], None]
    now: datetime
    result: asyncio.Future[JobRecord]


class JobRepository:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._queue: list[_Pending] = []
        self._writer_task: asyncio.Task[None] | None = None

    async def reserve(self, job: NewJob, check: Callable[[Usage], None], *, now: datetime | None = None) -> JobRecord:
        """Create the job and its reservation atomically, if `check(usage)` does not raise; returns it.

        Reservations that arrive together are written in one transaction (group commit): each is
        still checked against usage that includes every reservation before it, so nothing can
        overspend, and the writer is taken once per group instead of once per reservation."""
        pending = _Pending(job, check, now or utcnow(), asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        if self._writer_task is None or self._writer_task.done():
            self._writer_task = asyncio.create_task(self._write_reservations())
        return await pending.result

    async def _write_reservations(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:GROUP_COMMIT_MAX], self._queue[GROUP_COMMIT_MAX:]
            outcomes: list[tuple[_Pending, JobRecord | BaseException]] = []
            try:
                async with self.db.transaction() as conn:
                    for pending in batch:
                        try:
                            outcomes.append((pending, await self._reserve_one(conn, pending)))
                        except QuotaRefusal as refusal:  # checked before any insert: nothing to undo
                            outcomes.append((pending, refusal))
            except BaseException as exc:  # the whole group is rolled back: every caller gets the error
                for pending in batch:
                    if not pending.result.done():
                        pending.result.set_exception(exc if isinstance(exc, Exception) else StorageError(str(exc)))
                if not isinstance(exc, Exception):
                    raise
                continue
            for pending, outcome in outcomes:
                if isinstance(outcome, BaseException):
                    pending.result.set_exception(outcome)
                else:
                    pending.result.set_result(outcome)

    async def _reserve_one(self, conn: aiosqlite.Connection, pending: _Pending) -> JobRecord:
        job, now = pending.job, pending.now
        day, month = now.strftime("%Y-%m-%d"), now.strftime("%Y-%m")
        pending.check(await read_usage(conn, job.user_id, job.guild_id, day, month))
        stamp = iso(now)
        cursor = await conn.execute(
            """INSERT INTO jobs (created_at, updated_at, user_id, guild_id, channel_id, interaction_id,
               command, mode, quality, duration, optimize_prompt, model, prompt, input_image, provider,
               status, cost_micros, parent_job_id, end_image, upload_limit)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'reserved', ?, ?, ?, ?)""",
            (
                stamp,
                stamp,
                job.user_id,
                job.guild_id,
                job.channel_id,
                job.interaction_id,
                job.command,
                job.mode,
                job.quality,
                job.duration,
                int(job.optimize_prompt),
                job.model,
                job.prompt,
                job.input_image,
                job.provider,
                job.cost_micros,
                job.parent_job_id,
                job.end_image,
                job.upload_limit,
            ),
        )
        job_id = int(cursor.lastrowid or 0)
        await conn.execute(
            """INSERT INTO ledger (job_id, at, kind, amount_micros, user_id, guild_id, period_day, period_month)
               VALUES (?, ?, 'reserve', ?, ?, ?, ?, ?)""",
            (job_id, stamp, job.cost_micros, job.user_id, job.guild_id, day, month),
        )
        await self._event(conn, job_id, "reserved", f"{job.cost_micros} micros", stamp)
        return _new_record(job_id, job, stamp)

    async def get(self, job_id: int) -> JobRecord | None:
        row = await self.db.fetchone("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return JobRecord.from_row(row) if row else None

    async def unfinished(self) -> list[JobRecord]:
        placeholders = ",".join("?" * len(TERMINAL_STATUSES))
        rows = await self.db.fetchall(
            f"SELECT * FROM jobs WHERE status NOT IN ({placeholders}) ORDER BY id", TERMINAL_STATUSES
        )
        return [JobRecord.from_row(row) for row in rows]

    async def unannounced(self, since: datetime) -> list[JobRecord]:
        """Jobs refunded since `since` whose final card never reached their user (a delivered job's
        card goes out with its clip, before it is settled)."""
        rows = await self.db.fetchall(
            "SELECT * FROM jobs WHERE final_shown = 0 AND status IN ('failed', 'cancelled') AND finished_at >= ?"
            " ORDER BY id",
            (iso(since),),
        )
        return [JobRecord.from_row(row) for row in rows]

    async def mark_final_shown(self, job_id: int) -> None:
        async with self.db.transaction() as conn:
            await conn.execute("UPDATE jobs SET final_shown = 1 WHERE id = ?", (job_id,))

    async def set_status(self, job_id: int, status: str, detail: str = "", **columns: Any) -> None:
        """Record a state change (and any columns that go with it) plus its history row."""
        stamp = iso(utcnow())
        assignments = "".join(f", {name} = ?" for name in columns)
        async with self.db.transaction() as conn:
            await conn.execute(
                f"UPDATE jobs SET status = ?, updated_at = ?{assignments} WHERE id = ?",
                (status, stamp, *columns.values(), job_id),
            )
            await self._event(conn, job_id, status, detail, stamp)

    async def update(self, job_id: int, **columns: Any) -> None:
        """Change columns without a state change (e.g. the job card's message id)."""
        assignments = ", ".join(f"{name} = ?" for name in columns)
        async with self.db.transaction() as conn:
            await conn.execute(
                f"UPDATE jobs SET {assignments}, updated_at = ? WHERE id = ?",
                (*columns.values(), iso(utcnow()), job_id),
            )

    async def finish(self, job_id: int, status: str, outcome: str, detail: str = "", **columns: Any) -> bool:
        """End a job: status + the ledger rows of its outcome, in one transaction.

        A refund gives back the whole reservation. A settle charges the job's `cost_micros` (the price
        of the provider that served it) and releases the rest of the reservation, if any.
        Idempotent: returns False (and changes nothing) when the job already has an outcome."""
        assert outcome in ("settle", "refund")
        stamp = iso(utcnow())
        assignments = "".join(f", {name} = ?" for name in columns)
        copy_reservation = """INSERT INTO ledger (job_id, at, kind, amount_micros, user_id, guild_id, period_day,
                              period_month)
                              SELECT r.job_id, ?, ?, {amount}, r.user_id, r.guild_id, r.period_day, r.period_month
                              FROM ledger r JOIN jobs j ON j.id = r.job_id
                              WHERE r.job_id = ? AND r.kind = 'reserve'"""
        try:
            async with self.db.transaction() as conn:
                if outcome == "refund":
                    await conn.execute(copy_reservation.format(amount="r.amount_micros"), (stamp, "refund", job_id))
                else:
                    charged = "MIN(j.cost_micros, r.amount_micros)"
                    await conn.execute(copy_reservation.format(amount=charged), (stamp, "settle", job_id))
                    await conn.execute(
                        copy_reservation.format(amount=f"r.amount_micros - {charged}")
                        + f" AND r.amount_micros > {charged}",
                        (stamp, "release", job_id),
                    )
                await conn.execute(
                    f"UPDATE jobs SET status = ?, updated_at = ?, finished_at = ?{assignments} WHERE id = ?",
                    (status, stamp, stamp, *columns.values(), job_id),
                )
                await self._event(conn, job_id, status, detail, stamp)
        except sqlite3.IntegrityError:
            return False  # already settled or refunded: the first outcome stands
        return True

    async def events(self, job_id: int) -> list[tuple[str, str]]:
        rows = await self.db.fetchall("SELECT status, detail FROM job_events WHERE job_id = ? ORDER BY id", (job_id,))
        return [(row["status"], row["detail"]) for row in rows]

    async def generation_quantiles(
        self, provider: str, model: str, quality: str, duration: int, sample: int = 200
    ) -> tuple[float, float | None, float | None] | None:
        """(median, ~p05, ~p95) of the latest `sample` generation times of this kind of job; the
        spread is left out (None) until there are 20 of them."""
        rows = await self.db.fetchall(
            """SELECT generation_seconds FROM jobs
               WHERE provider = ? AND model = ? AND quality = ? AND duration = ? AND generation_seconds IS NOT NULL
               ORDER BY finished_at DESC LIMIT ?""",
            (provider, model, quality, duration, sample),
        )
        values = sorted(row[0] for row in rows)
        if not values:
            return None
        middle = len(values) // 2
        median = values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2
        if len(values) < 20:
            return median, None, None
        return median, values[len(values) // 20], values[len(values) * 19 // 20]

    async def usage(self, user_id: int, guild_id: int | None, now: datetime | None = None) -> Usage:
        now = now or utcnow()
        return await read_usage(self.db.reader, user_id, guild_id, now.strftime("%Y-%m-%d"), now.strftime("%Y-%m"))

    async def ledger_totals(self, job_id: int | None = None) -> LedgerTotals:
        where, params = ("WHERE job_id = ?", (job_id,)) if job_id is not None else ("", ())
        row = await self.db.fetchone(
            f"""SELECT COALESCE(SUM(CASE kind WHEN 'reserve' THEN amount_micros END), 0),
                       COALESCE(SUM(CASE kind WHEN 'settle' THEN amount_micros END), 0),
                       COALESCE(SUM(CASE kind WHEN 'refund' THEN amount_micros END), 0),
                       COALESCE(SUM(CASE kind WHEN 'release' THEN amount_micros END), 0)
                FROM ledger {where}""",
            params,
        )
        assert row is not None
        return LedgerTotals(int(row[0]), int(row[1]), int(row[2]), int(row[3]))

    async def get_meta(self, key: str) -> str | None:
        row = await self.db.fetchone("SELECT value FROM meta WHERE key = ?", (key,))
        return row[0] if row else None

    async def set_meta(self, key: str, value: str) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    @staticmethod
    async def _event(conn: aiosqlite.Connection, job_id: int, status: str, detail: str, stamp: str) -> None:
        await conn.execute(
            "INSERT INTO job_events (job_id, at, status, detail) VALUES (?, ?, ?, ?)",
            (job_id, stamp, status, detail[:500]),
        )
