"""End to end: the bot stops (crash-like or gracefully) in the middle of jobs and carries them on."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.harness import running_bot
from tests.e2e.test_generation_flows import cards, finished
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.wavespeed_server import FakeWaveSpeed


@pytest.fixture
async def wavespeed() -> AsyncIterator[FakeWaveSpeed]:
    async with FakeWaveSpeed(duration_s=2.0) as fake:
        yield fake


async def test_jobs_cut_off_mid_generation_resume_and_mention_the_requester(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed
) -> None:
    async with running_bot(tmp_path, discord_fake, wavespeed_url=wavespeed.base_url) as bot:
        await discord_fake.invoke("video", {"prompt": "a storm at sea"}, user_id=4242)
        # At the provider, its task id stored: a stop while the submit is still in flight would rightly
        # end the job "outcome unknown" (refunded, never resent), which is another test.
        await bot.wait_for_job(1, lambda job: job.provider_task_id is not None)
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
        await bot.wait_for_job(1, lambda job: job.provider_task_id is not None)
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


async def test_a_preview_render_cut_off_by_a_restart_is_rendered_again(
    tmp_path: Path, discord_fake: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # A slow preview (60 s at least), so the stop surely finds it rendering.
    async with running_bot(tmp_path, discord_fake, wavespeed_key=None, preview_min_runtime=60) as bot:
        await discord_fake.invoke("video", {"prompt": "a paper boat on a river"})
        await bot.wait_for_job(1, lambda job: job.provider_task_id is not None)
        await bot.app.runner.shutdown()  # the render lived in this process: it is gone now

    async with running_bot(tmp_path, discord_fake, wavespeed_key=None) as bot:
        await discord_fake.wait_until(lambda: len(finished(discord_fake)) == 1, timeout=60)
        [card] = finished(discord_fake)
        assert card.embeds[0]["title"] == "Done · job #1" and card.attachments
        assert "restarted" in card.embeds[0]["description"]
        assert "job 1: its preview task did not survive the restart; starting it again" in caplog.text
        await bot.wait_jobs_done()  # the card is posted before the job is settled
        job = await bot.app.store.get(1)
        assert job is not None and job.status == "delivered" and job.error_kind is None
        await bot.assert_ledger_balanced()
