"""What the processes of one deployment share, as ports services call: provider cool-downs (`CooldownBoard`)
and how many processes run jobs (`WorkerCensus`).

A deployment is one process on SQLite, or several gateways and workers on one PostgreSQL (README
"Workers"). The composition root passes in the store's board (`storage.cooldowns`) and the job engine's
census (`engine.queue.JobQueue`); services keep their fast paths local (routing reads a cache, pacing a
gap) and follow these in the background.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class Cooldown:
    """A provider out of rotation for the whole deployment until a wall-clock moment (UTC)."""

    provider: str
    until: datetime
    reason: str  # what took it out, e.g. "1 failure(s), last: auth"


class CooldownBoard(Protocol):
    async def put(self, cooldown: Cooldown) -> None:
        """Record the provider's cool-down (replacing any earlier one) and tell every process."""
        ...

    async def clear(self, provider: str) -> None:
        """End the provider's cool-down early (it answered well) and tell every process."""
        ...

    async def running(self, now: datetime) -> list[Cooldown]:
        """The cool-downs that end after `now`."""
        ...

    def changes(self) -> AbstractAsyncContextManager[AsyncIterator[str]]:
        """Listen for other processes' changes: once entered, every later `put` or `clear` yields the
        provider's name (read `running` again). Raises StorageError when the connection is lost; a
        database only one process uses never yields."""
        ...


class WorkerCensus(Protocol):
    async def live_workers(self) -> int:
        """Processes running jobs now: those whose heartbeat is recent (this one included once registered)."""
        ...
