"""Admin settings: the `core.admin.AdminStore`. Each change and its audit row are one transaction; the
audit table and grants are append-only (storage/migrations/*/005_admin.sql)."""

from __future__ import annotations

from datetime import datetime

from core.admin import AuditEntry, AuditLine, LimitOverride, Pool, Scope, ServerControls, ServerState
from core.clock import iso, utcnow
from storage.ledger import POOL_SPENT_SQL
from storage.sql import Connection, Database, Row

_POOL_COLUMNS = "id, guild_id, name, amount_micros, period, channel_id, role_id, on_empty"


def _pool(row: Row) -> Pool:
    return Pool(*(row[i] for i in range(8)))


async def _audit(conn: Connection, line: AuditLine, stamp: str) -> None:
    await conn.execute(
        "INSERT INTO audit (at, guild_id, actor_id, action, target, before, after, reason)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (stamp, line.guild_id, line.actor_id, line.action, line.target, line.before, line.after, line.reason[:500]),
    )


class SqlAdminStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ----- reading ----------------------------------------------------------------------------------------

    async def server_state(self, guild_id: int, user_id: int) -> ServerState:
        frozen = await self.db.fetchone(
            "SELECT reason FROM frozen_members WHERE guild_id = ? AND user_id = ?", (guild_id, user_id)
        )
        return ServerState(
            controls=await self.controls(guild_id),
            overrides=tuple(await self.overrides(guild_id)),
            frozen_reason=frozen[0] if frozen else None,
            pools=tuple(await self.pools(guild_id)),
        )

    async def controls(self, guild_id: int) -> ServerControls:
        row = await self.db.fetchone(
            "SELECT paused, pause_reason, quote_threshold_micros, log_channel_id FROM server_controls"
            " WHERE guild_id = ?",
            (guild_id,),
        )
        return ServerControls(bool(row[0]), row[1], row[2], row[3]) if row else ServerControls()

    async def overrides(self, guild_id: int) -> list[LimitOverride]:
        rows = await self.db.fetchall(
            "SELECT scope, target_id, key, value FROM limit_overrides WHERE guild_id = ?"
            " ORDER BY scope, target_id, key",
            (guild_id,),
        )
        return [LimitOverride(row[0], row[1], row[2], row[3]) for row in rows]

    async def pools(self, guild_id: int) -> list[Pool]:
        rows = await self.db.fetchall(
            f"SELECT {_POOL_COLUMNS} FROM pools WHERE guild_id = ? AND deleted_at IS NULL ORDER BY id", (guild_id,)
        )
        return [_pool(row) for row in rows]

    async def pool_spent(self, pool_id: int, period_key: str) -> int:
        row = await self.db.fetchone(POOL_SPENT_SQL, (pool_id, period_key))
        return int(row[0]) if row else 0

    async def audit(self, guild_id: int, count: int) -> list[AuditEntry]:
        rows = await self.db.fetchall(
            "SELECT at, guild_id, actor_id, action, target, before, after, reason FROM audit WHERE guild_id = ?"
            " ORDER BY id DESC LIMIT ?",
            (guild_id, count),
        )
        return [AuditEntry(datetime.fromisoformat(row[0]), AuditLine(*(row[i] for i in range(1, 8)))) for row in rows]

    # ----- changing (each with its audit row) ------------------------------------------------------------

    async def set_override(self, override: LimitOverride, guild_id: int, audit: AuditLine) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                """INSERT INTO limit_overrides (guild_id, scope, target_id, key, value) VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (guild_id, scope, target_id, key) DO UPDATE SET value = excluded.value""",
                (guild_id, override.scope, override.target_id, override.key, override.value),
            )
            await _audit(conn, audit, iso(utcnow()))

    async def clear_override(self, scope: Scope, target_id: int, key: str, guild_id: int, audit: AuditLine) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "DELETE FROM limit_overrides WHERE guild_id = ? AND scope = ? AND target_id = ? AND key = ?",
                (guild_id, scope, target_id, key),
            )
            await _audit(conn, audit, iso(utcnow()))

    async def grant(self, guild_id: int, user_id: int, amount_micros: int, now: datetime, audit: AuditLine) -> None:
        stamp = iso(now)
        async with self.db.transaction() as conn:
            grant_id = await conn.insert_returning_id(
                "INSERT INTO grants (at, guild_id, user_id, actor_id, amount_micros, reason) VALUES (?, ?, ?, ?, ?, ?)",
                (stamp, guild_id, user_id, audit.actor_id, amount_micros, audit.reason[:500]),
            )
            await conn.execute(
                """INSERT INTO ledger (job_id, at, kind, amount_micros, user_id, guild_id, period_day, period_month,
                   grant_id) VALUES (NULL, ?, 'grant', ?, ?, ?, ?, ?, ?)""",
                (
                    stamp,
                    amount_micros,
                    user_id,
                    guild_id,
                    now.strftime("%Y-%m-%d"),
                    now.strftime("%Y-%m"),
                    grant_id,
                ),
            )
            await _audit(conn, audit, stamp)

    async def freeze(self, guild_id: int, user_id: int, reason: str, audit: AuditLine) -> None:
        stamp = iso(utcnow())
        async with self.db.transaction() as conn:
            await conn.execute(
                """INSERT INTO frozen_members (guild_id, user_id, reason, at) VALUES (?, ?, ?, ?)
                   ON CONFLICT (guild_id, user_id) DO UPDATE SET reason = excluded.reason, at = excluded.at""",
                (guild_id, user_id, reason[:500], stamp),
            )
            await _audit(conn, audit, stamp)

    async def unfreeze(self, guild_id: int, user_id: int, audit: AuditLine) -> bool:
        async with self.db.transaction() as conn:
            removed = await conn.execute(
                "DELETE FROM frozen_members WHERE guild_id = ? AND user_id = ?", (guild_id, user_id)
            )
            if removed:
                await _audit(conn, audit, iso(utcnow()))
        return bool(removed)

    async def set_controls(self, guild_id: int, controls: ServerControls, audit: AuditLine) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                """INSERT INTO server_controls (guild_id, paused, pause_reason, quote_threshold_micros, log_channel_id)
                   VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (guild_id) DO UPDATE SET paused = excluded.paused,
                   pause_reason = excluded.pause_reason, quote_threshold_micros = excluded.quote_threshold_micros,
                   log_channel_id = excluded.log_channel_id""",
                (
                    guild_id,
                    int(controls.paused),
                    controls.pause_reason[:500],
                    controls.quote_threshold_micros,
                    controls.log_channel_id,
                ),
            )
            await _audit(conn, audit, iso(utcnow()))

    async def create_pool(self, pool: Pool, audit: AuditLine) -> Pool:
        stamp = iso(utcnow())
        async with self.db.transaction() as conn:
            pool_id = await conn.insert_returning_id(
                """INSERT INTO pools (guild_id, name, amount_micros, period, channel_id, role_id, on_empty, created_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    pool.guild_id,
                    pool.name,
                    pool.amount_micros,
                    pool.period,
                    pool.channel_id,
                    pool.role_id,
                    pool.on_empty,
                    stamp,
                ),
            )
            await _audit(conn, audit, stamp)
        return Pool(pool_id, *(getattr(pool, name) for name in _POOL_COLUMNS.split(", ")[1:]))

    async def delete_pool(self, guild_id: int, name: str, audit: AuditLine) -> bool:
        stamp = iso(utcnow())
        async with self.db.transaction() as conn:
            deleted = await conn.execute(
                "UPDATE pools SET deleted_at = ? WHERE guild_id = ? AND name = ? AND deleted_at IS NULL",
                (stamp, guild_id, name),
            )
            if deleted:
                await _audit(conn, audit, stamp)
        return bool(deleted)

    async def mark_pool_alert(self, pool_id: int, period_key: str, percent: int) -> bool:
        async with self.db.transaction() as conn:
            added = await conn.execute(
                "INSERT INTO pool_alerts (pool_id, period_key, percent, at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (pool_id, period_key, percent, iso(utcnow())),
            )
        return bool(added)
