"""The `JobStore` protocol: what services need from storage, whichever database is behind it.

The money rules are the store's contract, not the caller's: `reserve` runs the caller's check and
writes the job with its reservation in one transaction no concurrent reservation can interleave with;
`finish` writes exactly one outcome per job (a second one changes nothing and returns False); the
ledger is append-only. Failures to reach the database raise `core.errors.StorageError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol, Unpack

from core.admin import PoolDraw
from core.jobs import JobChanges, JobRecord, JobStatus, LedgerTotals, NewJob, Outcome, Usage

# Raises core.errors.QuotaExceeded to refuse; returns the pool draw that pays for the job, or None when
# the member's own allowance does.
ReservationCheck = Callable[[Usage], PoolDraw | None]


class JobStore(Protocol):
    async def reserve(self, job: NewJob, check: ReservationCheck, *, now: datetime | None = None) -> JobRecord:
        """Create the job and its reservation atomically, unless `check(usage)` raises; returns it."""
        ...

    async def reserve_many(
        self, jobs: Sequence[NewJob], check: ReservationCheck, *, now: datetime | None = None
    ) -> list[JobRecord]:
        """Create all these jobs and their reservations in one transaction, or none of them: `check` runs
        once per job, each time on usage that includes the jobs before it, and the first refusal undoes them."""
        ...

    async def set_members(self, set_card_id: int) -> list[JobRecord]:
        """The jobs listed on one variants card, oldest first."""
        ...

    async def get(self, job_id: int) -> JobRecord | None: ...

    async def unfinished(self) -> list[JobRecord]:
        """Every job without an outcome, oldest first (resumed at start)."""
        ...

    async def unannounced(self, since: datetime) -> list[JobRecord]:
        """Jobs refunded since `since` whose final card never reached their user."""
        ...

    async def mark_final_shown(self, job_id: int) -> None: ...

    async def set_status(self, job_id: int, status: JobStatus, detail: str = "", **changes: Unpack[JobChanges]) -> bool:
        """Record a state change (and the columns that go with it) with its history row. False (and nothing
        changed) when the job has ended already: an outcome is final, whichever process wrote it."""
        ...

    async def update(self, job_id: int, **changes: Unpack[JobChanges]) -> None:
        """Change columns without a state change."""
        ...

    async def finish(
        self, job_id: int, status: JobStatus, outcome: Outcome, detail: str = "", **changes: Unpack[JobChanges]
    ) -> bool:
        """End a job with its ledger outcome in one transaction; False when it already had one."""
        ...

    async def events(self, job_id: int) -> list[tuple[str, str]]: ...

    async def generation_quantiles(
        self, provider: str, model: str, quality: str, duration: int
    ) -> tuple[float, float | None, float | None] | None:
        """(median, ~p05, ~p95) generation seconds of recent jobs of this kind, or None."""
        ...

    async def usage(
        self, user_id: int, guild_id: int | None, now: datetime | None = None, pool: PoolDraw | None = None
    ) -> Usage: ...

    async def ledger_totals(self, job_id: int | None = None) -> LedgerTotals: ...

    async def get_meta(self, key: str) -> str | None: ...

    async def set_meta(self, key: str, value: str) -> None: ...

    async def claim_meta(self, key: str, value: str) -> str:
        """Store `value` under `key` unless a value is there already; the value stored (one for every process)."""
        ...
