"""Provider cool-downs for the whole deployment: a provider one process takes out of rotation is out for every
process that routes jobs (gateways quote at reservation, workers submit and fail over), until the same moment.

The router (services.routing) keeps the fast path: `available()` reads its own table, synchronously, at every
quote and submit. `SharedCooldowns` keeps that table in step with the deployment's board (core.sharing):

- what this process decides (a provider taken out, or brought back early) goes into an outbox that one task
  writes to the board in order, retrying while the database is away (this process's view holds meanwhile, and
  a re-read of the board never undoes a change still in the outbox);
- what other processes decide is heard at once (the board's `changes`, PostgreSQL's NOTIFY) and the board read
  again; it is read at start too, so a process started during a cool-down keeps to it, and after every
  reconnection, so a change made while this process was not listening is not missed.

The board holds wall-clock moments; the router counts on its monotonic clock. Each reading is converted at the
moment it is taken, so every process ends a cool-down at the same wall-clock moment.

An early end is shared as well. A provider out of rotation is tried only when every candidate is out, and one
that then answers well has shown that it takes work again: for every process, since they all route to the same
provider with the same key. Kept local, the others would send their jobs elsewhere (to a dearer provider,
or none) for the rest of the cool-down. Failure counts stay local (sharing them would be a database write per
failed request): with N processes, at most N × (failure_threshold - 1) failures pass before one takes it out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from core.clock import iso
from core.errors import StorageError
from core.metrics import NO_METRICS, Metrics
from core.sharing import Cooldown, CooldownBoard
from services.routing import ProviderRouter

log = logging.getLogger(__name__)

# A cool-down read back from the board that ends within this of the one already held is the same one
# (the board keeps milliseconds); only a real change is logged.
SAME_END_SECONDS = 1.0


class SharedCooldowns:
    """The router's cool-downs, shared through a board; the router's `CooldownListener` once started."""

    def __init__(
        self,
        router: ProviderRouter,
        board: CooldownBoard,
        *,
        wall: Callable[[], float] = time.time,
        retry_seconds: float = 1.0,
        max_retry_seconds: float = 30.0,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.router = router
        self.board = board
        self.wall = wall  # the board's clock (Unix seconds); the router's own is `router.clock`
        self.retry_seconds = retry_seconds
        self.max_retry_seconds = max_retry_seconds
        self.metrics = metrics
        self._outbox: dict[str, Cooldown | None] = {}  # per provider, this process's latest change (None: back)
        self._queued = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ----- the router's CooldownListener -----------------------------------------------------------------

    def taken_out(self, name: str, until: float, reason: str) -> None:
        self._queue(name, Cooldown(name, self._wall_moment(until), reason))

    def brought_back(self, name: str) -> None:
        self._queue(name, None)

    def _queue(self, name: str, change: Cooldown | None) -> None:
        self._outbox[name] = change
        self._queued.set()
        self.metrics.cooldown(name, None if change is None else change.until.timestamp())

    # ----- start and stop ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Take up the cool-downs other processes started (before this process routes its first job), then
        follow the board in the background."""
        self.router.listener = self
        try:
            self._apply(await self.board.running(self._now()))
        except StorageError as exc:  # the follower reads it again as soon as it can
            log.warning("provider cool-downs: could not read the shared ones at start (%s)", exc)
        self._task = asyncio.create_task(self._run(), name="provider-cooldowns")

    async def stop(self) -> None:
        """Stop following; a change still in the outbox stays this process's (it was logged when made)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        await asyncio.gather(self._publish(), self._follow())

    # ----- following the board ---------------------------------------------------------------------------------

    async def _follow(self) -> None:
        trouble = self._backoff(
            "lost touch with the other processes; cool-downs taken here still hold",
            "following the other processes again",
        )
        while True:
            try:
                async with self.board.changes() as changes:
                    self._apply(await self.board.running(self._now()))  # what changed while nobody listened
                    trouble.over()
                    async for _provider in changes:
                        self._apply(await self.board.running(self._now()))
            except Exception as exc:
                trouble.met(exc)
            await trouble.pause()

    def _apply(self, running: list[Cooldown]) -> None:
        """Make the router's view the board's, except for this process's changes not written yet."""
        on_board = {cooldown.provider: cooldown for cooldown in running}
        for name in self.router.providers:
            if name in self._outbox:
                continue
            held, cooldown = self.router.out_until(name), on_board.get(name)
            if cooldown is None:
                if held is not None:
                    self.router.bring_back(name)
                    self.metrics.cooldown(name, None)
                    log.info("provider %s back in rotation: another process saw it answer", name)
                continue
            until = self._local_moment(cooldown.until)
            self.router.hold_out(name, until)
            if held is None or abs(held - until) > SAME_END_SECONDS:
                self.metrics.cooldown(name, cooldown.until.timestamp())
                log.info(
                    "provider %s out of rotation until %s, taken out by another process (%s)",
                    name,
                    iso(cooldown.until),
                    cooldown.reason,
                )

    # ----- writing this process's changes ----------------------------------------------------------------------

    async def _publish(self) -> None:
        trouble = self._backoff(
            "could not share a change with the other processes; it holds here, retrying", "changes shared again"
        )
        while True:
            await self._queued.wait()
            try:
                await self._flush()
            except Exception as exc:
                trouble.met(exc)
                await trouble.pause()
                continue
            trouble.over()
            self._queued.clear()  # _flush returned with the outbox empty, and nothing ran since

    async def _flush(self) -> None:
        """Write the outbox, oldest change first; a change replaced while it was written stays for the next."""
        while self._outbox:
            name, change = next(iter(self._outbox.items()))
            if change is None:
                await self.board.clear(name)
            else:
                await self.board.put(change)
            if self._outbox.get(name) is change:
                del self._outbox[name]

    def _backoff(self, lost: str, back: str) -> _Backoff:
        return _Backoff(self.retry_seconds, self.max_retry_seconds, lost, back)

    # ----- clocks ----------------------------------------------------------------------------------------------

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.wall(), UTC)

    def _wall_moment(self, until: float) -> datetime:
        return datetime.fromtimestamp(self.wall() + (until - self.router.clock()), UTC)

    def _local_moment(self, moment: datetime) -> float:
        return self.router.clock() + (moment.timestamp() - self.wall())


class _Backoff:
    """One loop's trouble with the database: said once when it starts and once when it is over, with waits
    that double up to a ceiling in between."""

    def __init__(self, first: float, most: float, lost: str, back: str) -> None:
        self.first, self.most, self.lost, self.back = first, most, lost, back
        self.delay, self.failing = first, False

    def met(self, exc: Exception) -> None:
        if not self.failing:
            _complain(exc, self.lost)
        self.failing = True

    def over(self) -> None:
        if self.failing:
            log.info("provider cool-downs: %s", self.back)
        self.delay, self.failing = self.first, False

    async def pause(self) -> None:
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, self.most)


def _complain(exc: Exception, what: str) -> None:
    """A WARNING for the database being away; a traceback for anything else (a bug), which is retried too."""
    if isinstance(exc, StorageError):
        log.warning("provider cool-downs: %s (%s)", what, exc)
    else:
        log.exception("provider cool-downs: %s", what)
