"""Members' personal defaults: the `core.defaults.DefaultsStore` (storage/migrations/*/007)."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from core.clock import iso, utcnow
from core.defaults import FIELDS, MemberDefaults, check_value
from storage.sql import Database, Row

_COLUMNS = ", ".join(FIELDS)


def _defaults(row: Row | None) -> MemberDefaults:
    if row is None:
        return MemberDefaults()
    quality, duration, model, optimize, notify = (row[i] for i in range(5))
    return MemberDefaults(quality, duration, model, None if optimize is None else bool(optimize), notify)


class SqlDefaultsStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, user_id: int) -> MemberDefaults:
        row = await self.db.fetchone(f"SELECT {_COLUMNS} FROM member_defaults WHERE user_id = ?", (user_id,))
        return _defaults(row)

    async def update(self, user_id: int, values: Mapping[str, object], clear: Collection[str] = ()) -> MemberDefaults:
        for name in clear:
            if name not in FIELDS:
                raise ValueError(f"unknown default {name!r}")
        for name, value in values.items():
            check_value(name, value)
        changes = {name: None for name in clear} | {
            name: int(value) if isinstance(value, bool) else value for name, value in values.items()
        }
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO member_defaults (user_id, updated_at) VALUES (?, ?)"
                " ON CONFLICT (user_id) DO UPDATE SET updated_at = excluded.updated_at",
                (user_id, iso(utcnow())),
            )
            for name, value in changes.items():  # names are FIELDS only (checked above)
                await conn.execute(f"UPDATE member_defaults SET {name} = ? WHERE user_id = ?", (value, user_id))
            result = _defaults(
                await conn.fetchone(f"SELECT {_COLUMNS} FROM member_defaults WHERE user_id = ?", (user_id,))
            )
            if result.empty:
                await conn.execute("DELETE FROM member_defaults WHERE user_id = ?", (user_id,))
        return result
