"""End to end: `/settings notify` — a member asked to be told when a job ends gets a ping in the job's
channel (mentioning them alone) or a DM; a set of variants pings once; closed DMs are shrugged off."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.harness import BotUnderTest, running_bot
from tests.fakes.discord_server import FakeDiscord, FakeMessage
from tests.fakes.wavespeed_server import FakeWaveSpeed

USER = 1001


@pytest.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord(upload_limit=10 * 1024 * 1024)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def bot(tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed) -> AsyncIterator[BotUnderTest]:
    async with running_bot(tmp_path, discord_fake, wavespeed_url=wavespeed.base_url, max_in_flight=3) as running:
        yield running
        await running.assert_ledger_balanced()


def pings(fake: FakeDiscord) -> list[FakeMessage]:
    """Public messages without an embed that mention someone: the notify pings."""
    return [m for m in fake.messages.values() if not m.ephemeral and not m.embeds and m.content.startswith("<@")]


async def notify(fake: FakeDiscord, how: str) -> None:
    interaction = await fake.invoke("settings", {"notify": how}, user_id=USER)
    await fake.wait_until(lambda: bool(interaction.original() and interaction.original().content))


async def test_notify_is_off_by_default(bot: BotUnderTest) -> None:
    fake = bot.discord
    await fake.invoke("video", {"prompt": "a cat"}, user_id=USER)
    await bot.wait_jobs_done()
    assert pings(fake) == [] and fake.dms(USER) == []


async def test_channel_ping_mentions_the_member_alone_when_the_job_is_done(bot: BotUnderTest) -> None:
    fake = bot.discord
    await notify(fake, "channel")
    await fake.invoke("video", {"prompt": "a cat"}, user_id=USER)
    await fake.wait_until(lambda: len(pings(fake)) == 1)
    await bot.wait_jobs_done()
    [ping] = pings(fake)
    assert ping.content == f"<@{USER}> Your video (job #1) is ready."
    assert ping.allowed_mentions == {"parse": [], "users": [USER]}
    assert ping.channel_id == fake.channel_id


async def test_dm_when_the_job_fails(bot: BotUnderTest, wavespeed: FakeWaveSpeed) -> None:
    fake = bot.discord
    await notify(fake, "dm")
    wavespeed.next_scenario(outcome="failed")
    await fake.invoke("video", {"prompt": "a cat"}, user_id=USER)
    await fake.wait_until(lambda: len(fake.dms(USER)) == 1)
    await bot.wait_jobs_done()
    [dm] = fake.dms(USER)
    job = await bot.app.store.get(1)
    assert job is not None and job.message_id is not None
    assert dm.content.startswith("Your job #1 failed; nothing was charged.")
    assert dm.content.endswith(f"/channels/{fake.guild_id}/{fake.channel_id}/{job.message_id}")
    assert pings(fake) == []


async def test_closed_dms_are_logged_and_the_job_is_unharmed(
    bot: BotUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    fake = bot.discord
    fake.closed_dms.add(USER)
    await notify(fake, "dm")
    await fake.invoke("video", {"prompt": "a cat"}, user_id=USER)
    await bot.wait_for_job(1, lambda job: job.status == "delivered")
    await fake.wait_until(
        lambda: (
            any(r.status == 403 and r.path == f"/channels/{fake.dm_channels[USER]}/messages" for r in fake.requests)
            if USER in fake.dm_channels
            else False
        )
    )
    await fake.wait_until(lambda: "does not take DMs" in caplog.text)
    records = [r for r in caplog.records if "does not take DMs" in r.getMessage()]
    assert records and all(r.levelno == logging.INFO for r in records)
    assert fake.dms(USER) == []


async def test_a_set_of_variants_pings_once_when_the_last_one_ends(bot: BotUnderTest, wavespeed: FakeWaveSpeed) -> None:
    fake = bot.discord
    await notify(fake, "channel")
    wavespeed.next_scenario(outcome="failed")
    await fake.invoke("video", {"prompt": "a cat", "variants": 3}, user_id=USER)
    await fake.wait_until(lambda: len(pings(fake)) == 1)
    await bot.wait_jobs_done()
    [ping] = pings(fake)
    assert ping.content == f"<@{USER}> Your 3 variants have finished: 2 ready, 1 refunded."
    jobs = [await bot.app.store.get(job_id) for job_id in (1, 2, 3)]
    assert all(job is not None and job.terminal for job in jobs)
