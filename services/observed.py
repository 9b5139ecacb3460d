"""What the metrics port hears about jobs and providers, taken where every job and every call passes.

`ObservedStore` wraps the job store: every state change, reservation and ending is a store call, so
reporting them here counts exactly what was recorded (a write that failed reported nothing) without
touching the lifecycle's steps or the storage layer. `ObservedProvider` wraps one provider and times each
of its four operations. Both are put in place by the composition root (`build_job_services`, `app.py`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TypeVar, Unpack

from core.admin import PoolDraw
from core.errors import StorageError
from core.jobs import JobChanges, JobRecord, JobStatus, LedgerTotals, NewJob, Outcome, Usage
from core.metrics import Metrics, Operation
from core.provider import Provider, ProviderError
from core.spec import GenerationSpec
from core.store import JobStore, ReservationCheck
from core.tasks import TaskStatus

log = logging.getLogger(__name__)

T = TypeVar("T")


class ObservedStore:
    """A `JobStore` that reports the jobs' states and money to `metrics` after each successful write.

    It remembers the state of every unfinished job it has seen (reserved here, or read back by `unfinished`
    at start, which is how resumed jobs are counted), so a state gauge can move a job from one state to
    the next; a job leaves that memory when it ends."""

    def __init__(self, store: JobStore, metrics: Metrics) -> None:
        self.store = store
        self.metrics = metrics
        self._states: dict[int, JobStatus] = {}

    def _entered(self, job: JobRecord) -> None:
        if job.id not in self._states and not job.status.terminal:
            self._states[job.id] = job.status
            self.metrics.job_moved(None, job.status)

    async def reserve(self, job: NewJob, check: ReservationCheck, *, now: datetime | None = None) -> JobRecord:
        record = await self.store.reserve(job, check, now=now)
        self._reserved(record)
        return record

    async def reserve_many(
        self, jobs: Sequence[NewJob], check: ReservationCheck, *, now: datetime | None = None
    ) -> list[JobRecord]:
        records = await self.store.reserve_many(jobs, check, now=now)
        for record in records:
            self._reserved(record)
        return records

    def _reserved(self, job: JobRecord) -> None:
        self.metrics.reserved(job.cost_micros)  # at reservation the job's cost is what is reserved
        self._entered(job)

    async def set_status(self, job_id: int, status: JobStatus, detail: str = "", **changes: Unpack[JobChanges]) -> bool:
        if not await self.store.set_status(job_id, status, detail, **changes):
            return False
        previous = self._states.get(job_id)
        # A job not remembered has ended already (or is not this process's): counting it would leave a
        # job in a state gauge for ever.
        if previous is not None and previous != status:
            self._states[job_id] = status
            self.metrics.job_moved(previous, status)
        return True

    async def finish(
        self, job_id: int, status: JobStatus, outcome: Outcome, detail: str = "", **changes: Unpack[JobChanges]
    ) -> bool:
        ended = await self.store.finish(job_id, status, outcome, detail, **changes)
        if not ended:
            return False
        self.metrics.job_moved(self._states.pop(job_id, None), status)
        try:
            totals = await self.store.ledger_totals(job_id)
        except StorageError as exc:  # the ending is recorded; only its money figures go unreported
            log.debug("job %d: no ledger totals for the metrics: %s", job_id, exc)
            return True
        if outcome == "refund":
            self.metrics.refunded(totals.refunded)
        else:
            self.metrics.settled(totals.settled, totals.released)
        return True

    async def unfinished(self) -> list[JobRecord]:
        jobs = await self.store.unfinished()
        for job in jobs:
            self._entered(job)
        return jobs

    # ----- the rest of JobStore, unobserved ------------------------------------------------------------

    async def set_members(self, set_card_id: int) -> list[JobRecord]:
        return await self.store.set_members(set_card_id)

    async def get(self, job_id: int) -> JobRecord | None:
        return await self.store.get(job_id)

    async def unannounced(self, since: datetime) -> list[JobRecord]:
        return await self.store.unannounced(since)

    async def mark_final_shown(self, job_id: int) -> None:
        await self.store.mark_final_shown(job_id)

    async def update(self, job_id: int, **changes: Unpack[JobChanges]) -> None:
        await self.store.update(job_id, **changes)

    async def events(self, job_id: int) -> list[tuple[str, str]]:
        return await self.store.events(job_id)

    async def generation_quantiles(
        self, provider: str, model: str, quality: str, duration: int
    ) -> tuple[float, float | None, float | None] | None:
        return await self.store.generation_quantiles(provider, model, quality, duration)

    async def usage(
        self, user_id: int, guild_id: int | None, now: datetime | None = None, pool: PoolDraw | None = None
    ) -> Usage:
        return await self.store.usage(user_id, guild_id, now, pool)

    async def ledger_totals(self, job_id: int | None = None) -> LedgerTotals:
        return await self.store.ledger_totals(job_id)

    async def get_meta(self, key: str) -> str | None:
        return await self.store.get_meta(key)

    async def set_meta(self, key: str, value: str) -> None:
        await self.store.set_meta(key, value)

    async def claim_meta(self, key: str, value: str) -> str:
        return await self.store.claim_meta(key, value)


class ObservedProvider:
    """A `Provider` whose every request is timed, and its failures counted by kind, in `metrics`."""

    def __init__(self, provider: Provider, metrics: Metrics, label: str | None = None) -> None:
        self.provider = provider
        self.metrics = metrics
        self.name = provider.name
        self.capabilities = provider.capabilities
        # Counted under the name jobs know it by (the router's key, which is its name when configured).
        self.label = label or provider.name

    async def submit(self, spec: GenerationSpec) -> str:
        return await self._timed("create", self.provider.submit(spec))

    async def poll(self, task_id: str) -> TaskStatus:
        return await self._timed("poll", self.provider.poll(task_id))

    async def download(self, url: str, dest: Path, max_bytes: int) -> int:
        return await self._timed("download", self.provider.download(url, dest, max_bytes))

    async def cancel(self, task_id: str) -> bool:
        return await self._timed("cancel", self.provider.cancel(task_id))

    async def aclose(self) -> None:
        await self.provider.aclose()

    async def _timed(self, operation: Operation, call: Awaitable[T]) -> T:
        began = time.perf_counter()
        error: str | None = None
        try:
            return await call
        except asyncio.CancelledError:
            error = "cancelled"  # a stop, not the provider's doing: not counted
            raise
        except ProviderError as exc:
            error = exc.kind.value
            raise
        except OSError:
            error = "local_disk"  # download: this machine's disk could not take the clip
            raise
        except Exception:
            error = "internal"  # a provider module's bug
            raise
        finally:
            if error != "cancelled":
                self.metrics.provider_call(self.label, operation, time.perf_counter() - began, error)


def observe_providers(providers: dict[str, Provider], metrics: Metrics) -> dict[str, Provider]:
    """The providers as the job lifecycle calls them: each one timed."""
    return {name: ObservedProvider(provider, metrics, name) for name, provider in providers.items()}
