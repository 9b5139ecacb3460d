"""Gateway shards, end to end through the Discord stand-in with real discord.py: with `bot.shard_count`
the bot opens one connection per shard (discord.py's AutoShardedBot), each identifying as its shard, and
commands from servers on either shard are answered; with `bot.shard_ids` a process connects only its own
shards, so Discord sends it only their servers."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cogs.client import ShardedHailuoBot
from tests.e2e.harness import running_bot
from tests.e2e.test_generation_flows import finished
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.wavespeed_server import FakeWaveSpeed


async def test_one_process_runs_both_shards_and_serves_servers_on_each(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed, caplog: pytest.LogCaptureFixture
) -> None:
    fake = discord_fake
    on_zero, on_one = fake.guild_on_shard(0, 2), fake.guild_on_shard(1, 2)
    caplog.set_level(logging.INFO)
    async with running_bot(tmp_path, fake, wavespeed_url=wavespeed.base_url, bot_extra="shard_count = 2") as bot:
        assert isinstance(bot.bot, ShardedHailuoBot)
        await fake.wait_shards([0, 1], timeout=30)  # discord.py waits 5 s between IDENTIFYs, as Discord asks
        assert sorted(tuple(identify["shard"]) for identify in fake.identifies) == [(0, 2), (1, 2)]

        for guild in (on_zero, on_one):
            command = await fake.invoke("video", {"prompt": f"a lighthouse for {guild}"}, guild_id=guild)
            await command.wait_acked()
        await fake.wait_until(lambda: len(finished(fake)) == 2, timeout=60)
        await bot.wait_jobs_done()
        delivered = [await bot.app.store.get(job_id) for job_id in (1, 2)]
        assert {(job.guild_id, job.status.value) for job in delivered if job} == {
            (on_zero, "delivered"),
            (on_one, "delivered"),
        }
        await bot.assert_ledger_balanced()
    assert any("on shards 0, 1 of 2" in record.getMessage() for record in caplog.records)


async def test_a_process_with_shard_ids_connects_only_its_shards(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed
) -> None:
    fake = discord_fake
    on_one = fake.guild_on_shard(1, 2)
    extra = "shard_count = 2\nshard_ids = [1]"
    async with running_bot(tmp_path, fake, wavespeed_url=wavespeed.base_url, bot_extra=extra) as bot:
        await fake.wait_shards([1], timeout=30)
        assert [identify["shard"] for identify in fake.identifies] == [[1, 2]]
        assert bot.bot.get_guild(on_one) is not None
        assert all(fake.shard_of(guild.id) == 1 for guild in bot.bot.guilds), "only shard 1's servers"

        command = await fake.invoke("video", {"prompt": "a paper boat"}, guild_id=on_one)
        await command.wait_acked()
        await fake.wait_until(lambda: len(finished(fake)) == 1, timeout=60)
        await bot.wait_jobs_done()
        await bot.assert_ledger_balanced()
