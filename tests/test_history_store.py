"""/history's queries and the kept clips' rows, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from core.history import StoredOutput
from core.jobs import NewJob
from storage.connect import database_for
from storage.history import SqlHistory
from storage.jobs import SqlJobStore

NOW = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)


def new_job(user_id: int) -> NewJob:
    return NewJob(
        user_id=user_id, guild_id=10, channel_id=20, interaction_id=None, command="video", mode="t2v",
        quality="standard", duration=6, optimize_prompt=False, model="hailuo-2.3", prompt=f"cat {user_id}",
        input_image=None, provider="wavespeed", cost_micros=1,
    )  # fmt: skip


async def test_history_pages_a_members_jobs_and_outputs_are_replaced_and_forgotten(db_url: str) -> None:
    async with database_for(db_url) as db:
        store, history = SqlJobStore(db), SqlHistory(db)
        ids = [(await store.reserve(new_job(user), lambda usage: None, now=NOW)).id for user in (1, 2, 1, 1)]
        assert await history.count_of(1) == 3
        page = await history.jobs_of(1, limit=2, offset=1)
        assert [job.id for job in page] == [ids[2], ids[0]] and page[0].optimize_prompt is False
        got = await history.get(ids[1])
        assert got is not None and got.prompt == "cat 2"

        await history.record_output(StoredOutput(ids[0], "a.mp4", None, 10, "2026-11-23T15:30:00.000+00:00"))
        await history.record_output(StoredOutput(ids[0], "b.mp4", "b.jpg", 20, "2026-11-23T15:31:00.000+00:00"))
        await history.record_output(StoredOutput(ids[1], "c.mp4", None, 5, "2026-11-23T15:29:00.000+00:00"))
        assert await history.output(ids[0]) == StoredOutput(
            ids[0], "b.mp4", "b.jpg", 20, "2026-11-23T15:31:00.000+00:00"
        )
        assert [output.job_id for output in await history.outputs()] == [ids[1], ids[0]]
        await history.forget_outputs([ids[0], ids[1]])
        assert await history.outputs() == []
