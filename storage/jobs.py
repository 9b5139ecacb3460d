"""Jobs: the `core.store.JobStore`, on SQLite or PostgreSQL (storage.sql's `Database`).

A job is created together with its reservation in one transaction, after a caller-supplied check has
seen the usage figures read inside that same transaction, and no other reservation can interleave with
it: on SQLite every write transaction runs alone (BEGIN IMMEDIATE on the one writer); on PostgreSQL the
transaction first takes advisory locks on the scopes the check reads (`RESERVATION_SCOPES`). That is
what makes quota enforcement race-free: two concurrent commands, in one process or several, can never
both see room for one more job. Outcomes (settle, refund) are written with the job's final status in one
transaction, and the ledger's constraints refuse a second outcome (storage/migrations).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Unpack

from core.admin import PoolDraw
from core.clock import iso, utcnow
from core.errors import QuotaExceeded, StorageError
from core.jobs import TERMINAL_STATUSES, JobChanges, JobRecord, JobStatus, LedgerTotals, NewJob, Outcome, Usage
from core.store import ReservationCheck
from storage.ledger import TERMINAL_SQL, read_usage, totals_from_row, totals_query
from storage.sql import Connection, ConstraintError, Database, Row

# Reservations written in one transaction at most (a group commit keeps each one short).
GROUP_COMMIT_MAX = 64


def record_from_row(row: Row) -> JobRecord:
    values = {f.name: row[f.name] for f in fields(JobRecord)}
    values["optimize_prompt"] = bool(values["optimize_prompt"])
    values["status"] = JobStatus(values["status"])
    return JobRecord(**values)


def _new_record(job_id: int, job: NewJob, stamp: str) -> JobRecord:
    """The row just inserted, built from what was written (no read-back round trip)."""
    return JobRecord(
        **{f.name: getattr(job, f.name) for f in fields(NewJob) if f.name != "pool"},
        id=job_id,
        created_at=stamp,
        updated_at=stamp,
        message_id=None,
        provider_task_id=None,
        status=JobStatus.RESERVED,
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
    jobs: Sequence[NewJob]  # one, or the variants of one request (all reserved, or none)
    check: ReservationCheck
    now: datetime
    result: asyncio.Future[list[JobRecord]]


def reservation_scopes(job: NewJob) -> tuple[str, ...]:
    """What a reservation's check reads, as lock scopes, in the one order every reservation takes them:
    the bot-wide monthly cap first (every reservation reads it, so in effect reservations are serialized
    bot-wide), then the server, the member, the pool."""
    scopes = ["reserve:global"]
    if job.guild_id is not None:
        scopes.append(f"reserve:guild:{job.guild_id}")
    scopes.append(f"reserve:user:{job.user_id}")
    if job.pool is not None:
        scopes.append(f"reserve:pool:{job.pool.pool_id}")
    return tuple(scopes)


class SqlJobStore:
    """The `JobStore` on a storage.sql `Database` (SQLite or PostgreSQL)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._queue: list[_Pending] = []
        self._writer_task: asyncio.Task[None] | None = None

    async def reserve(self, job: NewJob, check: ReservationCheck, *, now: datetime | None = None) -> JobRecord:
        """Create the job and its reservation atomically, if `check(usage)` does not raise; returns it.

        Reservations that arrive together are written in one transaction (group commit): each is
        still checked against usage that includes every reservation before it, so nothing can
        overspend, and the writer is taken once per group instead of once per reservation."""
        return (await self.reserve_many([job], check, now=now))[0]

    async def reserve_many(
        self, jobs: Sequence[NewJob], check: ReservationCheck, *, now: datetime | None = None
    ) -> list[JobRecord]:
        """Create all these jobs with their reservations, or none: `check` runs before each insert, on usage
        that includes the jobs inserted before it, and a refusal rolls the earlier ones back (a savepoint,
        so the other reservations of the same group commit stand)."""
        if not jobs:
            return []
        pending = _Pending(list(jobs), check, now or utcnow(), asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        if self._writer_task is None or self._writer_task.done():
            self._writer_task = asyncio.create_task(self._write_reservations())
        return await pending.result

    async def _write_reservations(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:GROUP_COMMIT_MAX], self._queue[GROUP_COMMIT_MAX:]
            outcomes: list[tuple[_Pending, list[JobRecord] | BaseException]] = []
            try:
                async with self.db.transaction() as conn:
                    for pending in batch:
                        outcomes.append((pending, await self._reserve_all(conn, pending)))
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

    async def _reserve_all(self, conn: Connection, pending: _Pending) -> list[JobRecord] | QuotaExceeded:
        """Insert the pending jobs, each after its check; a refusal undoes the ones inserted before it."""
        if len(pending.jobs) == 1:
            try:
                return [await self._reserve_one(conn, pending.jobs[0], pending)]
            except QuotaExceeded as refusal:  # checked before any insert: nothing to undo
                return refusal
        await conn.execute("SAVEPOINT variants")
        try:
            records = [await self._reserve_one(conn, job, pending) for job in pending.jobs]
        except QuotaExceeded as refusal:
            await conn.execute("ROLLBACK TO variants")
            await conn.execute("RELEASE variants")
            return refusal
        await conn.execute("RELEASE variants")
        return records

    async def _reserve_one(self, conn: Connection, job: NewJob, pending: _Pending) -> JobRecord:
        now = pending.now
        day, month = now.strftime("%Y-%m-%d"), now.strftime("%Y-%m")
        await conn.serialize(*reservation_scopes(job))
        draw = pending.check(await read_usage(conn, job.user_id, job.guild_id, day, month, job.pool))
        stamp = iso(now)
        job_id = await conn.insert_returning_id(
            """INSERT INTO jobs (created_at, updated_at, user_id, guild_id, channel_id, interaction_id,
               command, mode, quality, duration, optimize_prompt, model, prompt, input_image, provider,
               status, cost_micros, parent_job_id, end_image, upload_limit, parent_kind)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'reserved', ?, ?, ?, ?, ?)""",
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
                job.parent_kind,
            ),
        )
        await conn.execute(
            """INSERT INTO ledger (job_id, at, kind, amount_micros, user_id, guild_id, period_day, period_month,
               pool_id, pool_period) VALUES (?, ?, 'reserve', ?, ?, ?, ?, ?, ?, ?)""",
            (
                job_id,
                stamp,
                job.cost_micros,
                job.user_id,
                job.guild_id,
                day,
                month,
                draw.pool_id if draw else None,
                draw.period_key if draw else None,
            ),
        )
        await self._event(conn, job_id, "reserved", f"{job.cost_micros} micros", stamp)
        return _new_record(job_id, job, stamp)

    async def get(self, job_id: int) -> JobRecord | None:
        row = await self.db.fetchone("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return record_from_row(row) if row else None

    async def set_members(self, set_card_id: int) -> list[JobRecord]:
        rows = await self.db.fetchall("SELECT * FROM jobs WHERE set_card_id = ? ORDER BY id", (set_card_id,))
        return [record_from_row(row) for row in rows]

    async def unfinished(self) -> list[JobRecord]:
        rows = await self.db.fetchall(f"SELECT * FROM jobs WHERE status NOT IN ({TERMINAL_SQL}) ORDER BY id")
        return [record_from_row(row) for row in rows]

    async def unannounced(self, since: datetime) -> list[JobRecord]:
        """Jobs refunded since `since` whose final card never reached their user (a delivered job's
        card goes out with its clip, before it is settled)."""
        rows = await self.db.fetchall(
            "SELECT * FROM jobs WHERE final_shown = 0 AND status IN ('failed', 'cancelled') AND finished_at >= ?"
            " ORDER BY id",
            (iso(since),),
        )
        return [record_from_row(row) for row in rows]

    async def mark_final_shown(self, job_id: int) -> None:
        async with self.db.transaction() as conn:
            await conn.execute("UPDATE jobs SET final_shown = 1 WHERE id = ?", (job_id,))

    async def set_status(self, job_id: int, status: JobStatus, detail: str = "", **changes: Unpack[JobChanges]) -> bool:
        """Record a state change (and any columns that go with it) plus its history row; False when the job
        has ended already (nothing is changed: another process's refund must not be overwritten)."""
        status, stamp = JobStatus(status), iso(utcnow())  # a word that is not a status fails here
        columns = _checked(changes)
        assignments = "".join(f", {name} = ?" for name in columns)
        ended = ", ".join(f"'{each.value}'" for each in TERMINAL_STATUSES)
        async with self.db.transaction() as conn:
            changed = await conn.execute(
                f"UPDATE jobs SET status = ?, updated_at = ?{assignments} WHERE id = ? AND status NOT IN ({ended})",
                (status.value, stamp, *columns.values(), job_id),
            )
            if changed:
                await self._event(conn, job_id, status.value, detail, stamp)
        return bool(changed)

    async def update(self, job_id: int, **changes: Unpack[JobChanges]) -> None:
        """Change columns without a state change (e.g. the job card's message id)."""
        columns = _checked(changes)
        assignments = ", ".join(f"{name} = ?" for name in columns)
        async with self.db.transaction() as conn:
            await conn.execute(
                f"UPDATE jobs SET {assignments}, updated_at = ? WHERE id = ?",
                (*columns.values(), iso(utcnow()), job_id),
            )

    async def finish(
        self, job_id: int, status: JobStatus, outcome: Outcome, detail: str = "", **changes: Unpack[JobChanges]
    ) -> bool:
        """End a job: status + the ledger rows of its outcome, in one transaction.

        A refund gives back the whole reservation. A settle charges the job's `cost_micros` (the price
        of the provider that served it) and releases the rest of the reservation, if any; its card went
        out with the clip, so it is marked shown. Idempotent: returns False (and changes nothing) when
        the job already has an outcome."""
        assert outcome in ("settle", "refund")
        status, stamp = JobStatus(status), iso(utcnow())
        columns: dict[str, object] = dict(_checked(changes))
        if outcome == "settle":
            columns["final_shown"] = 1
        assignments = "".join(f", {name} = ?" for name in columns)
        # Outcome rows count against the same windows (and pool period) as the reservation they close.
        copy_reservation = """INSERT INTO ledger (job_id, at, kind, amount_micros, user_id, guild_id, period_day,
                              period_month, pool_id, pool_period)
                              SELECT r.job_id, ?, ?, {amount}, r.user_id, r.guild_id, r.period_day, r.period_month,
                                     r.pool_id, r.pool_period
                              FROM ledger r JOIN jobs j ON j.id = r.job_id
                              WHERE r.job_id = ? AND r.kind = 'reserve'"""
        try:
            async with self.db.transaction() as conn:
                if outcome == "refund":
                    await conn.execute(copy_reservation.format(amount="r.amount_micros"), (stamp, "refund", job_id))
                else:
                    # The smaller of the two (MIN(a, b) is SQLite's spelling, LEAST(a, b) PostgreSQL's).
                    charged = "CASE WHEN j.cost_micros < r.amount_micros THEN j.cost_micros ELSE r.amount_micros END"
                    await conn.execute(copy_reservation.format(amount=charged), (stamp, "settle", job_id))
                    await conn.execute(
                        copy_reservation.format(amount=f"r.amount_micros - {charged}")
                        + f" AND r.amount_micros > {charged}",
                        (stamp, "release", job_id),
                    )
                await conn.execute(
                    f"UPDATE jobs SET status = ?, updated_at = ?, finished_at = ?{assignments} WHERE id = ?",
                    (status.value, stamp, stamp, *columns.values(), job_id),
                )
                await self._event(conn, job_id, status.value, detail, stamp)
        except ConstraintError:
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

    async def usage(
        self, user_id: int, guild_id: int | None, now: datetime | None = None, pool: PoolDraw | None = None
    ) -> Usage:
        now = now or utcnow()
        day, month = now.strftime("%Y-%m-%d"), now.strftime("%Y-%m")
        return await read_usage(self.db, user_id, guild_id, day, month, pool)

    async def ledger_totals(self, job_id: int | None = None) -> LedgerTotals:
        sql, params = totals_query(job_id)
        return totals_from_row(await self.db.fetchone(sql, params))

    async def get_meta(self, key: str) -> str | None:
        row = await self.db.fetchone("SELECT value FROM meta WHERE key = ?", (key,))
        return row[0] if row else None

    async def set_meta(self, key: str, value: str) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    async def claim_meta(self, key: str, value: str) -> str:
        async with self.db.transaction() as conn:
            await conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING", (key, value))
            row = await conn.fetchone("SELECT value FROM meta WHERE key = ?", (key,))
        assert row is not None  # inserted above, or there before
        return str(row[0])

    @staticmethod
    async def _event(conn: Connection, job_id: int, status: str, detail: str, stamp: str) -> None:
        await conn.execute(
            "INSERT INTO job_events (job_id, at, status, detail) VALUES (?, ?, ?, ?)",
            (job_id, stamp, status, detail[:500]),
        )


# Columns a caller may set (JobChanges); checked, because their names become SQL.
_CHANGEABLE = frozenset(JobChanges.__annotations__)


def _checked(changes: JobChanges) -> dict[str, Any]:
    unknown = set(changes) - _CHANGEABLE
    if unknown:
        raise ValueError(f"not a changeable job column: {', '.join(sorted(unknown))}")
    return dict(changes)
