"""End to end: the bot stops (crash-like or gracefully) in the middle of jobs and carries them on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.harness import running_bot
from tests.e2e.test_generation_flows import cards, finished
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.wavespeed_server import FakeWaveSpeed


@pytest.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def wavespeed() -> AsyncIterator[FakeWaveSpeed]:
    async with FakeWaveSpeed(duration_s=2.0) as fake:
        yield fake


async def test_jobs_cut_off_mid_generation_resume_and_mention_the_requester(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed
) -> None:
    async with running_bot(tmp_path, discord_fake, wavespeed_url=wavespeed.base_url) as bot:
        await discord_fake.invoke("video", {"prompt": "a storm at sea"}, user_id=4242)
        await discord_fake.wait_until(lambda: bool(wavespeed.submits))
        await bot.app.runner.shutdown()  # like a crash: tasks stop where they stand, nothing is told
    assert finished(discord_fake) == []

    async with running_bot(tmp_path, discord_fake, wavespeed_url=wavespeed.base_url) as bot:
        await discord_fake.wait_until(lambda: len(finished(discord_fake)) == 1, timeout=30)
        [card] = finished(discord_fake)
        assert card.attachments and "restarted" in card.embeds[0]["description"]
        await discord_fake.wait_until(lambda: any("<@4242>" in m.content for m in discord_fake.messages.values()))
        ping = [m for m in discord_fake.messages.values() if "<@4242>" in m.content]
        assert len(ping) == 1 and ping[0].allowed_mentions == {"parse": [], "users": [4242]}
        assert len(wavespeed.submits) == 1, "the resumed job was polled by its task id, not submitted again"
        await bot.assert_ledger_balanced()


async def test_graceful_stop_tells_followers_and_turns_new_commands_away(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed
) -> None:
    async with running_bot(tmp_path, discord_fake, wavespeed_url=wavespeed.base_url) as bot:
        await discord_fake.invoke("video", {"prompt": "a red balloon"})
        await discord_fake.wait_until(lambda: bool(wavespeed.submits))
        await bot.app.runner.suspend("The bot is restarting; this job will carry on.", grace=2)
        [card] = cards(discord_fake)
        assert "restarting" in card.embeds[0]["description"]
        late = await discord_fake.invoke("video", {"prompt": "too late"})
        await discord_fake.wait_until(lambda: late.original() is not None and bool(late.original().content))
        assert "restarting" in late.original().content and late.original().ephemeral
        assert len(wavespeed.submits) == 1 and (await bot.app.store.ledger_totals()).reserved == 280_000

    async with running_bot(tmp_path, discord_fake, wavespeed_url=wavespeed.base_url) as bot:
        await discord_fake.wait_until(lambda: len(finished(discord_fake)) == 1, timeout=30)
        await bot.assert_ledger_balanced()


async def test_a_gateway_reconnect_mid_job_changes_nothing(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed
) -> None:
    async with running_bot(tmp_path, discord_fake, wavespeed_url=wavespeed.base_url) as bot:
        await discord_fake.invoke("video", {"prompt": "a lighthouse"})
        await discord_fake.wait_until(lambda: bool(wavespeed.submits))
        resumes = discord_fake.resume_count
        await discord_fake.reconnect_gateway()
        await discord_fake.wait_until(lambda: discord_fake.resume_count > resumes)
        second = await discord_fake.invoke("video", {"prompt": "a second one after the reconnect"})
        await discord_fake.wait_until(lambda: len(finished(discord_fake)) == 2, timeout=30)
        assert second.acked
        await bot.assert_ledger_balanced()
