"""Provider cool-downs shared by a deployment's processes: the `core.sharing.CooldownBoard` over the
`provider_cooldowns` table (storage/migrations/*/012), each change announced on CHANNEL.

Times are stored as ISO 8601 UTC text like every other time in the schema, so the SQL is written once; the
processes compare them on their own wall clocks (kept in step by NTP, as the job deadlines already assume).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from datetime import datetime

from core.clock import iso, utcnow
from core.sharing import Cooldown
from storage.sql import Database

CHANNEL = "hailuo_cooldown"


class SqlCooldownBoard:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def put(self, cooldown: Cooldown) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO provider_cooldowns (provider, out_until, reason, taken_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (provider) DO UPDATE SET out_until = excluded.out_until, reason = excluded.reason,"
                " taken_at = excluded.taken_at",
                (cooldown.provider, iso(cooldown.until), cooldown.reason, iso(utcnow())),
            )
            await conn.notify(CHANNEL, cooldown.provider)

    async def clear(self, provider: str) -> None:
        async with self.db.transaction() as conn:
            await conn.execute("DELETE FROM provider_cooldowns WHERE provider = ?", (provider,))
            await conn.notify(CHANNEL, provider)

    async def running(self, now: datetime) -> list[Cooldown]:
        rows = await self.db.fetchall("SELECT provider, out_until, reason FROM provider_cooldowns ORDER BY provider")
        cooldowns = [Cooldown(row[0], datetime.fromisoformat(row[1]), row[2]) for row in rows]
        return [cooldown for cooldown in cooldowns if cooldown.until > now]

    def changes(self) -> AbstractAsyncContextManager[AsyncIterator[str]]:
        return self.db.listen(CHANNEL)
