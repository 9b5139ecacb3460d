"""Variants — several jobs with the same settings from one command — and what happens when jobs end.

Each variant is an ordinary job: reserved (all together, `JobIntake.create(count=...)`), run, resumed,
settled or refunded on its own, with its own card that gets its clip. One more card lists the set: a
`VariantSet` keeps each variant's stage and re-sends that summary when one of them moves on to another
step (queued → generating → done, failed or cancelled), so it costs a handful of edits, not one per
progress tick. Each variant's reporter is wrapped in a `SetMember`, which passes every card through and
tells the set. When every variant has ended the set says so once (`on_finished`: the member's ping).

`OnFinish` wraps a single job's reporter the same way, to say once that the job ended. Discord-free:
showing the summary and pinging are callables the adapter passes in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from core.jobs import JobRecord, JobStatus
from services.progress import FINAL_RETRY_DELAYS, FINAL_STAGES, JobCard, Stage
from services.reporter import JobReporter

log = logging.getLogger(__name__)

Mark = Literal["waiting", "running", "done", "failed", "cancelled"]
MARKS: dict[Stage, Mark] = {
    "validating": "waiting",
    "queued": "waiting",
    "generating": "running",
    "downloading": "running",
    "posting": "running",
    "done": "done",
    "failed": "failed",
    "cancelled": "cancelled",
}
STAGE_OF_STATUS: dict[JobStatus, Stage] = {
    JobStatus.RESERVED: "queued",
    JobStatus.SUBMITTING: "queued",
    JobStatus.SUBMITTED: "queued",
    JobStatus.QUEUED: "queued",
    JobStatus.RUNNING: "generating",
    JobStatus.DOWNLOADING: "downloading",
    JobStatus.POSTING: "posting",
    JobStatus.DELIVERED: "done",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}


def stage_of(job: JobRecord) -> Stage:
    """The stage a stored job's card shows (for a set shown again after a restart)."""
    return STAGE_OF_STATUS[job.status]


@dataclass(frozen=True)
class SetCard:
    """What the card listing one request's variants shows: the first variant's card (prompt, settings,
    requester, the price of one) and each variant's mark, in job order."""

    first: JobCard
    marks: tuple[tuple[int, Mark], ...]

    @property
    def final(self) -> bool:
        return all(mark in FINAL_STAGES for _, mark in self.marks)

    @property
    def count(self) -> int:
        return len(self.marks)

    def tally(self, mark: Mark) -> int:
        return sum(1 for _, each in self.marks if each == mark)


ShowSet = Callable[[SetCard], Awaitable[None]]
Loader = Callable[[], Awaitable[Sequence[JobCard]]]


class VariantSet:
    """The variants of one request and the card listing them. Built with the variants' first cards (a new
    request), or with a `load` that reads them from the store (a set found again after a restart)."""

    def __init__(
        self,
        show: ShowSet,
        *,
        cards: Sequence[JobCard] = (),
        load: Loader | None = None,
        on_finished: ShowSet | None = None,
    ) -> None:
        self._show = show
        self._load = load
        self._on_finished = on_finished
        self._first: JobCard | None = cards[0] if cards else None
        self._marks: dict[int, Mark] = {card.job_id: MARKS[card.stage] for card in cards}
        self._lock = asyncio.Lock()
        self._finished = False

    def summary(self) -> SetCard | None:
        if self._first is None:
            return None
        return SetCard(self._first, tuple(sorted(self._marks.items())))

    async def update(self, card: JobCard) -> None:
        """A variant's card changed: re-send the summary when its mark did. Never raises: the summary
        card is a courtesy, and a job must never stop on it."""
        try:
            async with self._lock:
                await self._loaded(card)
                mark = MARKS[card.stage]
                if self._marks.get(card.job_id) == mark:
                    return
                self._marks[card.job_id] = mark
                summary = self.summary()
                assert summary is not None
                await self._send(summary)
                if summary.final and not self._finished:
                    self._finished = True
                    if self._on_finished is not None:
                        await self._on_finished(summary)
        except Exception:
            log.warning("job %d: the card listing its variants could not be updated", card.job_id, exc_info=True)

    async def _loaded(self, card: JobCard) -> None:
        if self._load is not None:
            load, self._load = self._load, None
            cards = list(await load())
            self._marks = {each.job_id: MARKS[each.stage] for each in cards} | self._marks
            self._first = cards[0] if cards else None
        if self._first is None:
            self._first = card

    async def _send(self, summary: SetCard) -> None:
        delays = FINAL_RETRY_DELAYS if summary.final else ()
        for attempt in range(len(delays) + 1):
            try:
                await self._show(summary)
                return
            except Exception:
                if attempt == len(delays):
                    raise
                log.info("the variants card of job %d could not be edited; trying again", summary.first.job_id)
                await asyncio.sleep(delays[attempt])


class SetMember:
    """A variant's reporter: its own card as usual, and its stage told to the set."""

    def __init__(self, inner: JobReporter, group: VariantSet) -> None:
        self.inner = inner
        self.group = group
        self.upload_limit = inner.upload_limit

    async def show(self, card: JobCard) -> None:
        try:
            await self.inner.show(card)
        finally:
            await self.group.update(card)

    async def deliver(self, card: JobCard, clip: Path | None) -> None:
        await self.inner.deliver(card, clip)  # too large or failed: delivery decides, the set waits
        await self.group.update(card.with_stage("done"))

    async def delivered_before(self, card: JobCard) -> bool:
        return await self.inner.delivered_before(card)


Hook = Callable[[JobCard], Awaitable[None]]


class OnFinish:
    """A job's reporter that calls `hook` once, with the final card, when the job has ended (delivered,
    failed or cancelled) — whether or not the card itself got through."""

    def __init__(self, inner: JobReporter, hook: Hook) -> None:
        self.inner = inner
        self._hook = hook
        self._fired = False
        self.upload_limit = inner.upload_limit

    async def show(self, card: JobCard) -> None:
        try:
            await self.inner.show(card)
        finally:
            if card.final:
                await self._fire(card)

    async def deliver(self, card: JobCard, clip: Path | None) -> None:
        await self.inner.deliver(card, clip)
        await self._fire(card.with_stage("done"))

    async def delivered_before(self, card: JobCard) -> bool:
        return await self.inner.delivered_before(card)

    async def _fire(self, card: JobCard) -> None:
        if self._fired:
            return
        self._fired = True
        try:
            await self._hook(card)
        except Exception:
            log.warning("job %d: its end could not be announced", card.job_id, exc_info=True)
