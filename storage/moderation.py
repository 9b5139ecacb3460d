"""Moderation on SQLite: the `core.moderation.ModerationStore` (storage/migrations/009_moderation.sql).
Each change is written with its audit row in one transaction."""

from __future__ import annotations

from datetime import datetime

from core.admin import AuditLine
from core.clock import iso, utcnow
from core.moderation import BlockRule, RuleKind, Strike
from storage.admin import _audit
from storage.db import Database


class SqliteModerationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def block_rules(self, guild_id: int) -> list[BlockRule]:
        rows = await self.db.fetchall(
            "SELECT id, guild_id, kind, pattern, added_by, at FROM block_rules WHERE guild_id = ? ORDER BY id",
            (guild_id,),
        )
        return [BlockRule(row[0], row[1], row[2], row[3], row[4], datetime.fromisoformat(row[5])) for row in rows]

    async def add_block_rule(self, guild_id: int, kind: RuleKind, pattern: str, audit: AuditLine) -> bool:
        stamp = iso(utcnow())
        async with self.db.transaction() as conn:
            cursor = await conn.execute(
                "INSERT OR IGNORE INTO block_rules (guild_id, kind, pattern, added_by, at) VALUES (?, ?, ?, ?, ?)",
                (guild_id, kind, pattern, audit.actor_id, stamp),
            )
            if cursor.rowcount:
                await _audit(conn, audit, stamp)
        return bool(cursor.rowcount)

    async def remove_block_rule(self, guild_id: int, kind: RuleKind, pattern: str, audit: AuditLine) -> bool:
        async with self.db.transaction() as conn:
            cursor = await conn.execute(
                "DELETE FROM block_rules WHERE guild_id = ? AND kind = ? AND pattern = ?", (guild_id, kind, pattern)
            )
            if cursor.rowcount:
                await _audit(conn, audit, iso(utcnow()))
        return bool(cursor.rowcount)

    async def add_strike(self, strike: Strike, at: datetime, audit: AuditLine | None) -> bool:
        stamp = iso(at)
        async with self.db.transaction() as conn:
            cursor = await conn.execute(
                "INSERT OR IGNORE INTO strikes (at, guild_id, user_id, source, job_id, detail)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (stamp, strike.guild_id, strike.user_id, strike.source, strike.job_id, strike.detail[:200]),
            )
            if cursor.rowcount and audit is not None:
                await _audit(conn, audit, stamp)
        return bool(cursor.rowcount)

    async def strikes_since(self, guild_id: int, user_id: int, since: datetime) -> int:
        row = await self.db.fetchone(
            "SELECT COUNT(*) FROM strikes WHERE guild_id = ? AND user_id = ? AND at >= ?",
            (guild_id, user_id, iso(since)),
        )
        return int(row[0]) if row else 0
