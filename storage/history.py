"""/history's queries and the stored-outputs table (`core.history`'s protocols)."""

from __future__ import annotations

from collections.abc import Sequence

from core.history import StoredOutput
from core.jobs import JobRecord
from storage.jobs import record_from_row
from storage.sql import Database, Row


def _output(row: Row) -> StoredOutput:
    return StoredOutput(row["job_id"], row["clip"], row["thumbnail"], row["bytes"], row["stored_at"])


class SqlHistory:
    """`HistoryReader` and `OutputRecords` on the bot's database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def jobs_of(self, user_id: int, *, limit: int, offset: int = 0) -> list[JobRecord]:
        rows = await self.db.fetchall(
            "SELECT * FROM jobs WHERE user_id = ? ORDER BY id DESC LIMIT ? OFFSET ?", (user_id, limit, offset)
        )
        return [record_from_row(row) for row in rows]

    async def count_of(self, user_id: int) -> int:
        row = await self.db.fetchone("SELECT COUNT(*) FROM jobs WHERE user_id = ?", (user_id,))
        return int(row[0]) if row else 0

    async def get(self, job_id: int) -> JobRecord | None:
        row = await self.db.fetchone("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return record_from_row(row) if row else None

    async def record_output(self, output: StoredOutput) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                """INSERT INTO outputs (job_id, clip, thumbnail, bytes, stored_at) VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (job_id) DO UPDATE SET clip = excluded.clip, thumbnail = excluded.thumbnail,
                   bytes = excluded.bytes, stored_at = excluded.stored_at""",
                (output.job_id, output.clip, output.thumbnail, output.bytes, output.stored_at),
            )

    async def output(self, job_id: int) -> StoredOutput | None:
        row = await self.db.fetchone("SELECT * FROM outputs WHERE job_id = ?", (job_id,))
        return _output(row) if row else None

    async def outputs(self) -> list[StoredOutput]:
        return [_output(row) for row in await self.db.fetchall("SELECT * FROM outputs ORDER BY stored_at, job_id")]

    async def forget_outputs(self, job_ids: Sequence[int]) -> None:
        if not job_ids:
            return
        async with self.db.transaction() as conn:
            for job_id in job_ids:
                await conn.execute("DELETE FROM outputs WHERE job_id = ?", (job_id,))
