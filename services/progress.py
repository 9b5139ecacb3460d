"""The job card everyone follows, as data, and the throttle that decides when it is worth an edit.

A card is only re-sent when something a viewer can see changed, and at most once per interval:
elapsed time is not part of the card (Discord renders `started_at` as a live relative timestamp), and
the progress estimate moves in 10 % steps, so a 60 s job costs about a dozen edits, not sixty.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Literal

from core.jobs import JobRecord
from core.spec import RESOLUTION_BY_QUALITY
from core.text import N_, tr

log = logging.getLogger(__name__)

Stage = Literal["validating", "queued", "generating", "downloading", "posting", "done", "failed", "cancelled"]
FINAL_STAGES = ("done", "failed", "cancelled")
FINAL_RETRY_DELAYS = (1.0, 3.0, 9.0)  # seconds before each retry of a final card that failed to show


@dataclass(frozen=True)
class JobCard:
    job_id: int
    stage: Stage
    prompt: str
    command: str  # video | animate
    model: str
    quality: str
    resolution: str
    duration: int
    cost_micros: int
    provider: str
    requester_id: int
    started_at: float | None = None  # unix seconds the generation started (for a live "x ago")
    queue_position: int | None = None
    percent: int | None = None  # estimated or reported progress, in steps of 10
    eta_seconds: int | None = None  # rounded, shown as "about N s left"
    took_seconds: int | None = None  # total time, on the finished card
    # Texts a viewer reads may be `core.text.Text` values, rendered in the server's language by the card.
    message: str = ""  # failure reason or delivery note, safe to show
    link: str | None = None  # provider link when the clip could not be uploaded
    notice: str = ""  # e.g. "the bot restarted" or "continued after the 15-minute limit"
    free: bool = False  # made by a free provider (the local preview): not a real generation
    defaults: str = ""  # which of the member's /settings defaults applied, e.g. "quality pro, duration 10 s"
    lineage: str = ""  # where the job came from, e.g. "Remix of #41"

    @property
    def final(self) -> bool:
        return self.stage in FINAL_STAGES

    def with_stage(self, stage: Stage, **changes: object) -> JobCard:
        return replace(self, stage=stage, **changes)  # type: ignore[arg-type]


def estimate(elapsed: float, typical: float) -> tuple[int, int]:
    """(percent in 10 % steps, about how many seconds are left) from the typical duration.

    Never claims more than 90 %: past the typical time we do not know how much is left."""
    fraction = min(elapsed / typical, 0.9) if typical > 0 else 0.0
    percent = int(fraction * 10) * 10
    left = max(typical - elapsed, 0)
    # Round the countdown coarsely so it does not force an edit every interval.
    step = 30 if left > 120 else 10 if left > 20 else 5
    return percent, int(-(-left // step) * step)


def edit_interval(base: float, cards_in_flight: int, edits_per_second: float) -> float:
    """Seconds between two edits of one card: `base`, stretched so that all the cards in flight
    together stay near `edits_per_second`. Each edit is an HTTP request, for the bot's CPU as much
    as for Discord: at 1,000 jobs in flight, edits every 2 s would be 500 requests a second."""
    return max(base, cards_in_flight / edits_per_second)


class CardUpdater:
    """Sends a card through `send` when it changed, at most once per `interval` seconds.

    Changes arriving inside the interval are coalesced: the latest one is sent when the interval ends.
    A final card (done/failed) waits for any send in flight and then goes out at once. `interval` may
    be a function, asked at every change, so the pace can follow the load."""

    def __init__(self, send: Callable[[JobCard], Awaitable[None]], interval: float | Callable[[], float]) -> None:
        self._send = send
        self._interval = interval if callable(interval) else lambda: interval
        self._last_sent: JobCard | None = None
        self._last_time = 0.0
        self._pending: JobCard | None = None
        self._timer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def last_sent(self) -> JobCard | None:
        return self._last_sent

    async def update(self, card: JobCard) -> None:
        if card == (self._pending or self._last_sent):
            return
        if card.final:
            await self.flush(card)
            return
        wait = self._interval() - (time.monotonic() - self._last_time)
        if wait <= 0 and self._timer is None:
            await self._deliver(card)
            return
        self._pending = card
        if self._timer is None:
            self._timer = asyncio.create_task(self._send_later(max(wait, 0)))

    async def flush(self, card: JobCard | None = None) -> None:
        """Send `card` (or whatever is pending) now, cancelling the coalescing timer."""
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        card = card or self._pending
        self._pending = None
        if card is not None and card != self._last_sent:
            await self._deliver(card)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None

    async def _send_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        card, self._pending = self._pending, None
        self._timer = None
        if card is not None:
            await self._deliver(card)

    async def _deliver(self, card: JobCard) -> None:
        # A failed progress edit must never stop the job: the next change tries again. A final card
        # has no next change, so it is retried a few times (chat platforms have short outages).
        delays = FINAL_RETRY_DELAYS if card.final else ()
        async with self._lock:
            for attempt in range(len(delays) + 1):
                self._last_time = time.monotonic()
                try:
                    await self._send(card)
                except Exception:
                    log.warning("job %d: progress update failed (attempt %d)", card.job_id, attempt + 1, exc_info=True)
                    if attempt < len(delays):
                        await asyncio.sleep(delays[attempt])
                    continue
                self._last_sent = card
                return


def card_for(job: JobRecord, *, free: bool = False) -> JobCard:
    """The card of a job as it was reserved (the lifecycle moves it on from there)."""
    return JobCard(
        job_id=job.id,
        stage="queued",
        prompt=job.prompt,
        command=job.command,
        model=job.model,
        quality=job.quality,
        resolution=RESOLUTION_BY_QUALITY.get(job.quality, "?"),
        duration=job.duration,
        cost_micros=job.cost_micros,
        provider=job.provider,
        requester_id=job.user_id,
        free=free,
        lineage=lineage(job),
    )


LINEAGE = {
    "reroll": N_("Re-roll of #{job_id}"),
    "remix": N_("Remix of #{job_id}"),
    "continue": N_("Continues #{job_id}"),
    "retry": N_("Retry of #{job_id}"),
}


def lineage(job: JobRecord) -> str:
    """ "Remix of #41" and the like (a `Text`), or "" for a job made from scratch."""
    if job.parent_job_id is None:
        return ""
    return tr(LINEAGE.get(job.parent_kind or "reroll", LINEAGE["reroll"]), job_id=job.parent_job_id)
