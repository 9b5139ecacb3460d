"""Kept clips end to end: the real bot, real discord.py, SQLite and ffmpeg, the local Discord and WaveSpeedAI
stand-ins. Each delivered clip is kept as it was posted, with a JPEG of its first frame, until the sweep
removes it (past its days, or the oldest first over the cap); keeping it never fails a delivery."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from core.clock import utcnow
from core.jobs import JobStatus
from services.outputs import OutputKeeper
from tests.e2e.harness import BotUnderTest, running_bot
from tests.e2e.test_generation_flows import finished
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.wavespeed_server import FakeWaveSpeed


@pytest.fixture
async def wavespeed() -> AsyncIterator[FakeWaveSpeed]:
    async with FakeWaveSpeed("ws-test-key", duration_s=0.2) as fake:
        yield fake


@pytest.fixture
async def bot(tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed) -> AsyncIterator[BotUnderTest]:
    async with running_bot(tmp_path, discord_fake, wavespeed_url=wavespeed.base_url, daily_videos=20) as running:
        yield running
        await running.assert_ledger_balanced()


def keeper(running: BotUnderTest) -> OutputKeeper:
    outputs = running.app.runner.crew.outputs
    assert outputs is not None
    return outputs


async def deliver_one(running: BotUnderTest, prompt: str) -> None:
    fake = running.discord
    before = len(finished(fake))
    await fake.invoke("video", {"prompt": prompt})
    await fake.wait_until(lambda: len(finished(fake)) == before + 1, timeout=30)
    await running.wait_jobs_done()


async def output_rows(running: BotUnderTest) -> dict[int, Any]:
    return {row["job_id"]: row for row in await running.app.db.fetchall("SELECT * FROM outputs")}


async def test_delivered_clips_are_kept_with_thumbnails_then_swept(bot: BotUnderTest) -> None:
    await deliver_one(bot, "a lighthouse in a storm")
    await deliver_one(bot, "a fox in the snow")
    folder = bot.app.settings.config.bot.data_dir / "outputs"
    rows = await output_rows(bot)
    assert sorted(rows) == [1, 2]
    for job_id in (1, 2):
        clip, thumb = folder / f"{job_id}.mp4", folder / f"{job_id}.jpg"
        posted = finished(bot.discord)[job_id - 1].attachments[0]["data"]
        assert clip.read_bytes() == posted  # the clip as it was delivered
        with Image.open(thumb) as image:
            assert image.format == "JPEG" and image.width == 320
        assert rows[job_id]["bytes"] == clip.stat().st_size + thumb.stat().st_size
        print(f"job {job_id}: {rows[job_id]['bytes']} bytes kept (clip and thumbnail)")

    # Over the cap: the oldest goes first, until the rest fit.
    keeper(bot).max_bytes = rows[2]["bytes"]
    assert await bot.app.runner.sweep_outputs() == 1
    assert sorted(await output_rows(bot)) == [2]
    assert not (folder / "1.mp4").exists() and not (folder / "1.jpg").exists()
    assert (folder / "2.mp4").exists()

    # Past keep_outputs_days (30 by default): gone, and so is its row.
    keeper(bot).max_bytes = 5 * 1024**3
    assert await bot.app.runner.sweep_outputs(now=utcnow() + timedelta(days=29)) == 0
    assert await bot.app.runner.sweep_outputs(now=utcnow() + timedelta(days=31)) == 1
    assert await output_rows(bot) == {}
    assert not [path for path in folder.iterdir() if path.suffix in (".mp4", ".jpg")]


async def test_a_full_disk_never_fails_the_delivery(
    bot: BotUnderTest, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    folder = bot.app.settings.config.bot.data_dir / "outputs"

    def no_room(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("services.outputs.os.link", no_room)
    monkeypatch.setattr("services.outputs.shutil.copyfile", no_room)
    await deliver_one(bot, "a lighthouse in a storm")
    job = await bot.app.store.get(1)
    assert job is not None and job.status == JobStatus.DELIVERED
    assert await output_rows(bot) == {} and not (folder / "1.mp4").exists()
    assert finished(bot.discord)[0].attachments  # posted all the same
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and r.name == "services.outputs"]
    assert warnings == ["job 1: could not keep a copy of the clip: [Errno 28] No space left on device"]
