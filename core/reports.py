"""What spend reports read: one settled job each, and the `SpendReader` protocol that finds them.

A job's spend is its settle row in the ledger: the price of the provider that served it, in integer
micro-dollars. Reservations, refunds and releases are not spend (a release is the failover price
difference given back, and the settle row already holds the price actually charged), so a report
counts settle rows only, placed in time by when they were written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class SpendItem:
    job_id: int
    user_id: int
    channel_id: int | None  # None for jobs started outside a channel
    model: str
    provider: str
    settled_at: datetime  # aware, UTC: the time of the settle row
    settled_micros: int  # what the job was charged (0 on a free provider)


class SpendReader(Protocol):
    async def spend(self, guild_id: int, since: datetime, until: datetime) -> list[SpendItem]:
        """One item per job of this server settled in [since, until), oldest first. Both bounds are
        aware datetimes. Failures to reach the database raise `core.errors.StorageError`."""
        ...
