"""Moderation: the `core.moderation.ModerationStore` (storage/migrations/*/010_moderation.sql).
Each change is written with its audit row in one transaction."""

from __future__ import annotations

from datetime import datetime

from core.admin import AuditLine
from core.clock import iso, utcnow
from core.moderation import BlockRule, ReviewItem, RuleKind, Strike
from storage.admin import _audit
from storage.sql import Database


class SqlModerationStore:
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
            added = await conn.execute(
                "INSERT INTO block_rules (guild_id, kind, pattern, added_by, at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (guild_id, kind, pattern, audit.actor_id, stamp),
            )
            if added:
                await _audit(conn, audit, stamp)
        return bool(added)

    async def remove_block_rule(self, guild_id: int, kind: RuleKind, pattern: str, audit: AuditLine) -> bool:
        async with self.db.transaction() as conn:
            removed = await conn.execute(
                "DELETE FROM block_rules WHERE guild_id = ? AND kind = ? AND pattern = ?", (guild_id, kind, pattern)
            )
            if removed:
                await _audit(conn, audit, iso(utcnow()))
        return bool(removed)

    async def add_strike(self, strike: Strike, at: datetime, audit: AuditLine | None) -> bool:
        stamp = iso(at)
        async with self.db.transaction() as conn:
            added = await conn.execute(
                "INSERT INTO strikes (at, guild_id, user_id, source, job_id, detail)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (stamp, strike.guild_id, strike.user_id, strike.source, strike.job_id, strike.detail[:200]),
            )
            if added and audit is not None:
                await _audit(conn, audit, stamp)
        return bool(added)

    async def strikes_since(self, guild_id: int, user_id: int, since: datetime) -> int:
        row = await self.db.fetchone(
            "SELECT COUNT(*) FROM strikes WHERE guild_id = ? AND user_id = ? AND at >= ?",
            (guild_id, user_id, iso(since)),
        )
        return int(row[0]) if row else 0


class SqlReviewStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def review_scopes(self, guild_id: int) -> set[int]:
        rows = await self.db.fetchall("SELECT channel_id FROM review_scopes WHERE guild_id = ?", (guild_id,))
        return {row[0] for row in rows}

    async def set_review_scope(self, guild_id: int, channel_id: int, on: bool, audit: AuditLine) -> bool:
        async with self.db.transaction() as conn:
            if on:
                changed = await conn.execute(
                    "INSERT INTO review_scopes (guild_id, channel_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    (guild_id, channel_id),
                )
            else:
                changed = await conn.execute(
                    "DELETE FROM review_scopes WHERE guild_id = ? AND channel_id = ?", (guild_id, channel_id)
                )
            if changed:
                await _audit(conn, audit, iso(utcnow()))
        return bool(changed)

    async def review_queue(self, guild_id: int) -> int | None:
        row = await self.db.fetchone("SELECT channel_id FROM review_queues WHERE guild_id = ?", (guild_id,))
        return int(row[0]) if row else None

    async def set_review_queue(self, guild_id: int, channel_id: int, audit: AuditLine) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                """INSERT INTO review_queues (guild_id, channel_id) VALUES (?, ?)
                   ON CONFLICT (guild_id) DO UPDATE SET channel_id = excluded.channel_id""",
                (guild_id, channel_id),
            )
            await _audit(conn, audit, iso(utcnow()))

    async def hold(self, item: ReviewItem, at: datetime) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO review_items (job_id, guild_id, channel_id, user_id, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (item.job_id, item.guild_id, item.channel_id, item.user_id, iso(at)),
            )

    async def review_item(self, job_id: int) -> ReviewItem | None:
        row = await self.db.fetchone(
            "SELECT job_id, guild_id, channel_id, user_id, state, review_message_id, decided_by, reason"
            " FROM review_items WHERE job_id = ?",
            (job_id,),
        )
        return ReviewItem(*(row[i] for i in range(8))) if row else None

    async def mark_pending(self, job_id: int, review_message_id: int) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE review_items SET state = 'pending', review_message_id = ? WHERE job_id = ? AND state = 'held'",
                (review_message_id, job_id),
            )

    async def decide(
        self, job_id: int, approve: bool, moderator_id: int, reason: str, audit: AuditLine
    ) -> ReviewItem | None:
        stamp = iso(utcnow())
        async with self.db.transaction() as conn:
            decided = await conn.execute(
                "UPDATE review_items SET state = ?, decided_by = ?, reason = ?, decided_at = ?"
                " WHERE job_id = ? AND state = 'pending'",
                ("approved" if approve else "rejected", moderator_id, reason[:500], stamp, job_id),
            )
            if not decided:
                return None
            await _audit(conn, audit, stamp)
        return await self.review_item(job_id)
