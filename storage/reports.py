"""The `SpendReader` over the ledger: a server's settle rows in a time window, with their jobs."""

from __future__ import annotations

from datetime import UTC, datetime

from core.clock import iso
from core.reports import SpendItem
from storage.sql import Database, Row

# Only settle rows are spend: a release next to a settle is the failover difference given back, and
# the settle row already holds the price charged. Other kinds (and rows without a job) never match.
# `at` is compared as text: every stamp is written by core.clock.iso (UTC, milliseconds, "+00:00"),
# so text order is time order.
_SPEND_SQL = """SELECT l.job_id, l.user_id, j.channel_id, j.model, j.provider, l.at, l.amount_micros
                FROM ledger l JOIN jobs j ON j.id = l.job_id
                WHERE l.kind = 'settle' AND l.guild_id = ? AND l.at >= ? AND l.at < ?
                ORDER BY l.at, l.id"""


class SqlSpendReader:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def spend(self, guild_id: int, since: datetime, until: datetime) -> list[SpendItem]:
        if since.tzinfo is None or until.tzinfo is None:  # iso() would read a naive time as local time
            raise ValueError("the window's bounds must be aware datetimes")
        rows = await self.db.fetchall(_SPEND_SQL, (guild_id, iso(since), iso(until)))
        return [_item(row) for row in rows]


def _item(row: Row) -> SpendItem:
    return SpendItem(
        job_id=int(row[0]),
        user_id=int(row[1]),
        channel_id=None if row[2] is None else int(row[2]),
        model=str(row[3]),
        provider=str(row[4]),
        settled_at=_utc(str(row[5])),
        settled_micros=int(row[6]),
    )


def _utc(stamp: str) -> datetime:
    moment = datetime.fromisoformat(stamp)
    # Stored stamps carry "+00:00"; a bare one (written by hand) is taken as UTC rather than local time.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
