"""End to end on PostgreSQL: the real bot with DATABASE_URL naming a database on the test session's
server, from the slash command to the posted mp4, then a restart that finds the job and its ledger."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.harness import running_bot
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.wavespeed_server import FakeWaveSpeed


async def test_a_video_on_postgresql_is_posted_settled_and_still_there_after_a_restart(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed, pg_url: str
) -> None:
    options = {"wavespeed_url": wavespeed.base_url, "secrets": {"database_url": pg_url}}
    async with running_bot(tmp_path, discord_fake, **options) as bot:  # type: ignore[arg-type]
        assert bot.app.db.dialect == "postgresql"
        interaction = await discord_fake.invoke("video", {"prompt": "a lighthouse in a storm"})
        await interaction.wait_acked()
        await bot.wait_for_job(1, lambda job: job.status == "delivered")
        await bot.assert_ledger_balanced()
        [row] = await bot.app.db.fetchall("SELECT status, cost_micros FROM jobs")
        assert (row["status"], row["cost_micros"]) == ("delivered", 280_000)
    assert not (tmp_path / "data" / "hailuo.db").exists()  # nothing went to SQLite
    async with running_bot(tmp_path, discord_fake, **options) as bot:  # type: ignore[arg-type]
        assert await bot.app.store.unfinished() == []
        assert (await bot.app.store.ledger_totals()).settled == 280_000
