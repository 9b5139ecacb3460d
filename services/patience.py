"""Running jobs wait out a sick database instead of ending on it.

A database that is locked past its busy timeout, full or read-only says nothing about the job: the
provider may have made the clip, the member may already see it. Ending the job then would be wrong
twice over — a refund for a posted clip, or a created (billed) task whose id was never stored. So
every store call a running job makes goes through `PatientStore`: on `StorageError` it waits (with
backoff) and tries again, for as long as it takes, and the job carries on from where it stood as soon
as the database takes writes again — no restart needed. Each write is safe to repeat: a failed
transaction left nothing behind, and `finish` records at most one outcome per job.

Not for reservations: a member waiting on a command is told at once that nothing could be recorded
(and nothing was charged), rather than kept waiting behind a disk that may never be freed.

A stop cancels a waiting job like any other; it resumes from its stored state at the next start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeVar, Unpack

from core.admin import PoolDraw
from core.errors import StorageError
from core.jobs import JobChanges, JobRecord, JobStatus, LedgerTotals, NewJob, Outcome, Usage
from core.store import JobStore, ReservationCheck

log = logging.getLogger("services.jobs")

T = TypeVar("T")

# One WARNING per this many seconds while the database stays sick, however many jobs wait on it.
WARN_EVERY_S = 60.0


class PatientStore:
    """A `JobStore` whose calls wait out storage faults (see the module doc); `reserve` does not."""

    def __init__(self, store: JobStore, *, first_delay: float = 0.25, max_delay: float = 15.0) -> None:
        self.store = store
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.waiting = 0  # calls now waiting for the database (read by tests and the health log)
        self._sick_since: float | None = None
        self._warned_at = 0.0

    async def _patiently(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        delay = self.first_delay
        while True:
            try:
                result = await call()
            except StorageError as exc:
                self._note_sick(what, exc)
                self.waiting += 1
                try:
                    await asyncio.sleep(delay)
                finally:
                    self.waiting -= 1
                delay = min(delay * 2, self.max_delay)
                continue
            self._note_well()
            return result

    def _note_sick(self, what: str, exc: StorageError) -> None:
        now = time.monotonic()
        if self._sick_since is None:
            self._sick_since = now
        if now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            log.warning(
                "database unavailable (%s, at %s): running jobs wait and retry; %d call(s) waiting",
                exc,
                what,
                self.waiting + 1,
            )

    def _note_well(self) -> None:
        if self._sick_since is not None and self.waiting == 0:
            log.warning(
                "database available again after %.0f s: waiting jobs carry on", time.monotonic() - self._sick_since
            )
            self._sick_since = None
            self._warned_at = 0.0

    # ----- JobStore ------------------------------------------------------------------------------------

    async def reserve(self, job: NewJob, check: ReservationCheck, *, now: datetime | None = None) -> JobRecord:
        return await self.store.reserve(job, check, now=now)

    async def reserve_many(
        self, jobs: Sequence[NewJob], check: ReservationCheck, *, now: datetime | None = None
    ) -> list[JobRecord]:
        return await self.store.reserve_many(jobs, check, now=now)

    async def set_members(self, set_card_id: int) -> list[JobRecord]:
        return await self._patiently("set_members", lambda: self.store.set_members(set_card_id))

    async def get(self, job_id: int) -> JobRecord | None:
        return await self._patiently("get", lambda: self.store.get(job_id))

    async def unfinished(self) -> list[JobRecord]:
        return await self._patiently("unfinished", self.store.unfinished)

    async def unannounced(self, since: datetime) -> list[JobRecord]:
        return await self._patiently("unannounced", lambda: self.store.unannounced(since))

    async def mark_final_shown(self, job_id: int) -> None:
        await self._patiently("mark_final_shown", lambda: self.store.mark_final_shown(job_id))

    async def set_status(self, job_id: int, status: JobStatus, detail: str = "", **changes: Unpack[JobChanges]) -> bool:
        return await self._patiently(
            f"set_status {status.value}", lambda: self.store.set_status(job_id, status, detail, **changes)
        )

    async def update(self, job_id: int, **changes: Unpack[JobChanges]) -> None:
        await self._patiently("update", lambda: self.store.update(job_id, **changes))

    async def finish(
        self, job_id: int, status: JobStatus, outcome: Outcome, detail: str = "", **changes: Unpack[JobChanges]
    ) -> bool:
        return await self._patiently(
            f"finish {outcome}", lambda: self.store.finish(job_id, status, outcome, detail, **changes)
        )

    async def events(self, job_id: int) -> list[tuple[str, str]]:
        return await self._patiently("events", lambda: self.store.events(job_id))

    async def generation_quantiles(
        self, provider: str, model: str, quality: str, duration: int
    ) -> tuple[float, float | None, float | None] | None:
        return await self._patiently(
            "generation_quantiles", lambda: self.store.generation_quantiles(provider, model, quality, duration)
        )

    async def usage(
        self, user_id: int, guild_id: int | None, now: datetime | None = None, pool: PoolDraw | None = None
    ) -> Usage:
        return await self._patiently("usage", lambda: self.store.usage(user_id, guild_id, now, pool))

    async def ledger_totals(self, job_id: int | None = None) -> LedgerTotals:
        return await self._patiently("ledger_totals", lambda: self.store.ledger_totals(job_id))

    async def get_meta(self, key: str) -> str | None:
        return await self._patiently("get_meta", lambda: self.store.get_meta(key))

    async def set_meta(self, key: str, value: str) -> None:
        await self._patiently("set_meta", lambda: self.store.set_meta(key, value))

    async def claim_meta(self, key: str, value: str) -> str:
        return await self._patiently("claim_meta", lambda: self.store.claim_meta(key, value))
