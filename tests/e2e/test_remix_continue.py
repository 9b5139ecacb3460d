"""Remix, Continue and Retry end to end: the real bot and discord.py against the local Discord (modal
responses and type 5 modal submits included) and the WaveSpeedAI stand-in, with real SQLite and ffmpeg.
Every wait is for a state, never for a time."""

from __future__ import annotations

import base64
import io
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from media.ffmpeg import ffmpeg_path
from tests.e2e.harness import BotUnderTest, running_bot
from tests.e2e.test_generation_flows import cards, finished
from tests.fakes.discord_server import FakeDiscord, FakeInteraction
from tests.fakes.wavespeed_server import FakeWaveSpeed

PRICE = 280_000  # a 6 s 768P Hailuo 2.3 clip (config.toml)


@pytest.fixture
async def wavespeed() -> AsyncIterator[FakeWaveSpeed]:
    async with FakeWaveSpeed("ws-test-key", duration_s=0.2) as fake:
        yield fake


@pytest.fixture
async def bot(tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed) -> AsyncIterator[BotUnderTest]:
    async with running_bot(tmp_path, discord_fake, wavespeed_url=wavespeed.base_url, daily_videos=20) as running:
        yield running
        await running.assert_ledger_balanced()


@pytest.fixture(scope="module")
def moving_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1 s 480x320 clip whose frames all differ (a moving test pattern), so the last frame is its own."""
    path = tmp_path_factory.mktemp("clips") / "moving.mp4"
    subprocess.run(
        [ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         "testsrc2=size=480x320:rate=12", "-t", "1", "-c:v", "libx264", "-preset", "ultrafast",
         "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )  # fmt: skip
    return path


def decoded_frame(clip: Path, out: Path, *filters: str) -> Image.Image:
    """The clip's first frame after `filters` (e.g. `-vf reverse`: its last frame, taken another way
    than the bot takes it), decoded."""
    subprocess.run(
        [ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(clip), *filters,
         "-frames:v", "1", str(out)],
        check=True,
    )  # fmt: skip
    return Image.open(out).convert("RGB")


def decoded_data_url(url: str) -> Image.Image:
    header, _, payload = url.partition(",")
    assert header.startswith("data:image/") and header.endswith(";base64"), header[:40]
    return Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB")


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    assert a.size == b.size
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


async def opened_modal(fake: FakeDiscord, message_id: int, custom_id: str) -> tuple[FakeInteraction, str, str]:
    """Click a button that answers with a modal; returns the click, the text input's id and its value."""
    click = await fake.click(message_id, custom_id)
    await click.wait_acked()
    assert click.response_type == 9 and click.modal is not None
    [(input_id, value)] = fake.modal_inputs(click).items()
    return click, input_id, value


def description(card_message: object) -> str:
    return str(card_message.embeds[0]["description"]).replace("\\", "")  # type: ignore[attr-defined]


async def test_remix_through_a_modal_submit_reaches_the_provider_with_the_edited_prompt(
    bot: BotUnderTest, wavespeed: FakeWaveSpeed
) -> None:
    fake = bot.discord
    await fake.invoke("video", {"prompt": "a red kite over the dunes [Push in]"})
    await fake.wait_until(lambda: len(finished(fake)) == 1)
    [first] = finished(fake)

    click, input_id, value = await opened_modal(fake, first.id, "hailuo:remix:1")
    assert value == "a red kite over the dunes [Push in]"  # the stored prompt, camera moves included

    # Refused like /video refuses it, privately, and nothing reserved.
    refused = await fake.submit_modal(click, {input_id: "[Pan left]"})
    await refused.wait_acked()
    await fake.wait_until(lambda: refused.original() is not None and bool(refused.original().content))
    assert refused.original().ephemeral and "only has camera moves" in refused.original().content
    assert (await bot.app.store.ledger_totals()).reserved == PRICE

    again, input_id, _ = await opened_modal(fake, first.id, "hailuo:remix:1")
    submit = await fake.submit_modal(again, {input_id: "a blue kite over the sea [pan left]"})
    await fake.wait_until(lambda: len(finished(fake)) == 2)
    assert wavespeed.submits[-1]["json"]["prompt"] == "a blue kite over the sea [Pan left]"
    assert wavespeed.submits[-1]["json"]["duration"] == 6
    assert "Job #2 accepted ($0.28)" in submit.original().content
    second = next(m for m in finished(fake) if m.id != first.id)
    assert second.embeds[0]["title"] == "Done · job #2" and "Remix of #1" in description(second)
    assert "Remix of" not in description(first) and "Re-roll of" not in description(first)
    job = await bot.app.store.get(2)
    assert job is not None and (job.parent_job_id, job.parent_kind, job.command) == (1, "remix", "video")
    await bot.wait_jobs_done()
    assert (await bot.app.store.ledger_totals()).settled == 2 * PRICE


async def test_continue_sends_the_last_frame_of_the_kept_clip(
    bot: BotUnderTest, wavespeed: FakeWaveSpeed, moving_clip: Path, tmp_path: Path
) -> None:
    fake = bot.discord
    wavespeed.next_scenario(output_bytes=moving_clip.read_bytes())
    await fake.invoke("video", {"prompt": "a paper boat on a river [Truck left]"})
    await fake.wait_until(lambda: len(finished(fake)) == 1)
    await bot.wait_jobs_done()
    [first] = finished(fake)

    click, _, value = await opened_modal(fake, first.id, "hailuo:continue:1")
    assert value == "a paper boat on a river [Truck left]"
    await fake.submit_modal(click)  # the prompt as it was
    await fake.wait_until(lambda: len(finished(fake)) == 2)

    sent = wavespeed.submits[-1]
    assert sent["endpoint"] == "minimax/hailuo-2.3/i2v-standard"
    assert sent["json"]["prompt"] == "a paper boat on a river [Truck left]"
    received = decoded_data_url(sent["json"]["image"])
    expected = decoded_frame(moving_clip, tmp_path / "last.png", "-vf", "reverse")
    assert mean_difference(received, expected) < 3.0
    first_frame = decoded_frame(moving_clip, tmp_path / "first.png")
    assert mean_difference(received, first_frame) > 3 * mean_difference(received, expected)  # not any frame

    second = next(m for m in finished(fake) if m.id != first.id)
    assert "Continues #1" in description(second)
    job = await bot.app.store.get(2)
    assert job is not None and (job.parent_job_id, job.parent_kind) == (1, "continue")
    assert (job.command, job.mode, job.quality, job.duration) == ("animate", "i2v", "standard", 6)
    await bot.wait_jobs_done()

    # The stand-in's default clip is 320x240: its last frame fails the checks an upload must pass.
    small, _, _ = await opened_modal(fake, second.id, "hailuo:continue:2")
    refused = await fake.submit_modal(small)
    await fake.wait_until(lambda: refused.original() is not None and "short side" in refused.original().content)
    assert refused.original().ephemeral and "last frame" in refused.original().content

    # A clip no longer kept cannot be continued: said at once, privately, before any modal.
    (bot.app.settings.config.bot.data_dir / "outputs" / "1.mp4").unlink()
    gone = await fake.click(first.id, "hailuo:continue:1")
    await gone.wait_acked()
    assert gone.modal is None
    assert gone.original().content == "This clip is no longer stored, so it cannot be continued."
    assert len(wavespeed.submits) == 2
    assert (await bot.app.store.ledger_totals()).settled == 2 * PRICE


async def test_retry_on_a_failed_card_makes_a_new_charged_job_and_delete_removes_the_card(
    bot: BotUnderTest, wavespeed: FakeWaveSpeed
) -> None:
    fake = bot.discord
    wavespeed.next_scenario(outcome="failed")
    await fake.invoke("video", {"prompt": "a lantern in the fog"})
    await fake.wait_until(lambda: len(finished(fake)) == 1)
    await bot.wait_jobs_done()
    [failed] = finished(fake)
    assert failed.embeds[0]["title"] == "Failed · job #1"
    assert failed.custom_ids() == ["hailuo:retry:1", "hailuo:remix:1", "hailuo:delete:1"]

    await fake.click(failed.id, "hailuo:retry:1")
    await fake.wait_until(lambda: any(m.embeds[0]["title"] == "Done · job #2" for m in cards(fake)))
    retried = next(m for m in cards(fake) if m.embeds[0]["title"] == "Done · job #2")
    assert "Retry of #1" in description(retried)
    job = await bot.app.store.get(2)
    assert job is not None and (job.parent_job_id, job.parent_kind, job.prompt) == (1, "retry", "a lantern in the fog")
    await bot.wait_jobs_done()
    totals = await bot.app.store.ledger_totals()
    assert (totals.settled, totals.refunded) == (PRICE, PRICE)

    delete = await fake.click(failed.id, "hailuo:delete:1")
    await fake.wait_until(lambda: fake.messages[failed.id].deleted)
    await fake.wait_until(lambda: delete.original() is not None and delete.original().content == "Deleted.")
