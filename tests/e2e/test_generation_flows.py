"""End to end: the real bot against the local Discord and WaveSpeedAI stand-ins, over real sockets."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from tests.e2e.harness import BotUnderTest, running_bot
from tests.fakes.discord_server import FakeDiscord, FakeMessage
from tests.fakes.wavespeed_server import FakeWaveSpeed

MP4_MAGIC = b"ftyp"


@pytest.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord(upload_limit=10 * 1024 * 1024)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def bot(tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed) -> AsyncIterator[BotUnderTest]:
    async with running_bot(tmp_path, discord_fake, wavespeed_url=wavespeed.base_url) as running:
        yield running
        await running.assert_ledger_balanced()


def jpeg(width: int = 640, height: int = 480) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(buffer, "JPEG")
    return buffer.getvalue()


def cards(fake: FakeDiscord) -> list[FakeMessage]:
    """Public messages carrying a job card embed."""
    return [
        m
        for m in fake.messages.values()
        if not m.ephemeral and not m.deleted and m.embeds and "job #" in m.embeds[0]["title"]
    ]


def finished(fake: FakeDiscord) -> list[FakeMessage]:
    return [m for m in cards(fake) if m.embeds[0]["title"].startswith(("Done", "Failed"))]


async def test_video_goes_from_command_to_posted_mp4(bot: BotUnderTest, wavespeed: FakeWaveSpeed) -> None:
    fake = bot.discord
    interaction = await fake.invoke("video", {"prompt": "a lighthouse in a storm [push in]"})
    await interaction.wait_acked()
    assert interaction.deferred_ephemeral is True
    await fake.wait_until(lambda: len(finished(fake)) == 1)
    await bot.wait_jobs_done()

    receipt = interaction.original()
    assert receipt is not None and receipt.ephemeral and "Job #1 accepted ($0.28)" in receipt.content
    card = finished(fake)[0]
    assert card.embeds[0]["title"] == "Done · job #1"
    assert card.attachments and card.attachments[0]["data"][4:8] == MP4_MAGIC
    assert card.custom_ids() == ["hailuo:reroll:1", "hailuo:remix:1", "hailuo:continue:1", "hailuo:delete:1"]
    assert card.allowed_mentions == {"parse": []}
    assert "[Push in]" in card.embeds[0]["description"].replace("\\", "")

    [submit] = wavespeed.submits
    assert submit["endpoint"] == "minimax/hailuo-2.3/t2v-standard"
    assert submit["json"] == {
        "prompt": "a lighthouse in a storm [Push in]",
        "enable_prompt_expansion": True,
        "duration": 6,
    }
    job = await bot.app.store.get(1)
    assert job is not None and job.status == "delivered" and job.delivered_as == "file"
    statuses = [status for status, _ in await bot.app.store.events(1)]
    assert statuses[0] == "reserved" and statuses[-1] == "delivered"
    assert {"submitting", "submitted", "downloading", "posting"} <= set(statuses)
    assert (await bot.app.store.ledger_totals()).settled == 280_000


async def test_animate_sends_the_image_as_a_data_url(bot: BotUnderTest, wavespeed: FakeWaveSpeed) -> None:
    fake = bot.discord
    image = fake.add_attachment(jpeg(), "cat.png", "image/png")  # name and type lie; the bytes are JPEG
    await fake.invoke("animate", {"image": image, "prompt": "the cat turns [左摇]", "quality": "fast"})
    await fake.wait_until(lambda: len(finished(fake)) == 1)
    [submit] = wavespeed.submits
    assert submit["endpoint"] == "minimax/hailuo-2.3/fast"
    body = submit["json"]
    assert isinstance(body, dict)
    assert str(body["image"]).startswith("data:image/jpeg;base64,")
    assert body["prompt"] == "the cat turns [Pan left]"
    assert finished(fake)[0].embeds[0]["title"] == "Done · job #1"


async def test_bad_image_is_refused_privately_without_reaching_the_provider(
    bot: BotUnderTest, wavespeed: FakeWaveSpeed
) -> None:
    fake = bot.discord
    image = fake.add_attachment(jpeg(250, 400), "small.jpg", "image/jpeg")
    interaction = await fake.invoke("animate", {"image": image})
    await fake.wait_until(lambda: interaction.original() is not None and bool(interaction.original().content))
    reply = interaction.original()
    assert reply is not None and reply.ephemeral
    assert "250×400" in reply.content and "300" in reply.content
    assert wavespeed.submits == [] and cards(fake) == []
    assert (await bot.app.store.ledger_totals()).reserved == 0


async def test_impossible_combination_is_refused_before_deferring(bot: BotUnderTest) -> None:
    fake = bot.discord
    interaction = await fake.invoke("video", {"prompt": "a cat", "quality": "pro", "duration": 10})
    await interaction.wait_acked()
    assert interaction.response_type == 4
    reply = interaction.original()
    assert reply is not None and reply.ephemeral and "768P" in reply.content


async def test_quota_refusal_names_the_limit_and_reset(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed
) -> None:
    async with running_bot(tmp_path, discord_fake, wavespeed_url=wavespeed.base_url, daily_usd="0.30") as bot:
        fake = bot.discord
        await fake.invoke("video", {"prompt": "first"})
        await fake.wait_until(lambda: len(finished(fake)) == 1)
        second = await fake.invoke("video", {"prompt": "second"})
        await fake.wait_until(lambda: second.original() is not None and "budget" in second.original().content)
        text = second.original().content
        assert "$0.28" in text and "$0.02 left" in text and "resets <t:" in text
        assert second.original().ephemeral
        assert len(wavespeed.submits) == 1
        await bot.assert_ledger_balanced()


async def test_provider_failure_is_refunded_and_said_plainly(bot: BotUnderTest, wavespeed: FakeWaveSpeed) -> None:
    fake = bot.discord
    wavespeed.next_scenario(outcome="failed", error_text="internal inference error")
    await fake.invoke("video", {"prompt": "a cat"})
    await fake.wait_until(lambda: len(finished(fake)) == 1)
    card = finished(fake)[0]
    assert card.embeds[0]["title"] == "Failed · job #1"
    description = card.embeds[0]["description"]
    assert "not charged" in description and "internal inference error" not in description
    await bot.wait_jobs_done()
    totals = await bot.app.store.ledger_totals()
    assert (totals.reserved, totals.refunded, totals.settled) == (280_000, 280_000, 0)


async def test_nsfw_flagged_output_is_refunded_as_a_moderation_block(
    bot: BotUnderTest, wavespeed: FakeWaveSpeed
) -> None:
    fake = bot.discord
    wavespeed.next_scenario(outcome="nsfw")
    await fake.invoke("video", {"prompt": "a cat"})
    await fake.wait_until(lambda: len(finished(fake)) == 1)
    assert "content filter" in finished(fake)[0].embeds[0]["description"]
    await bot.wait_jobs_done()
    job = await bot.app.store.get(1)
    assert job is not None and job.error_kind == "moderation"


async def test_logs_carry_job_ids_and_never_secrets(bot: BotUnderTest, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    fake = bot.discord
    await fake.invoke("video", {"prompt": "a cat"})
    await fake.wait_until(lambda: len(finished(fake)) == 1)
    await bot.wait_jobs_done()
    text = caplog.text
    assert "ws-test-key" not in text and fake.bot_token not in text
    job_lines = [r.getMessage() for r in caplog.records if r.name == "services.jobs"]
    for status in ("submitting", "submitted", "downloading", "posting", "delivered"):
        assert any(line.startswith("job 1: ") and status in line for line in job_lines), status


async def test_missing_channel_permissions_are_named_privately(bot: BotUnderTest, wavespeed: FakeWaveSpeed) -> None:
    fake = bot.discord
    fake.app_permissions &= ~((1 << 15) | (1 << 16))  # no Attach Files, no Read Message History
    interaction = await fake.invoke("video", {"prompt": "a cat"})
    await fake.wait_until(lambda: interaction.original() is not None and bool(interaction.original().content))
    reply = interaction.original()
    assert reply is not None and reply.ephemeral
    assert "Attach Files, Read Message History" in reply.content and "Nothing was charged" in reply.content
    assert wavespeed.submits == [] and cards(fake) == []


@pytest.mark.sqlite_only  # another process holding SQLite's one write lock
async def test_a_locked_database_refuses_the_command_cleanly(bot: BotUnderTest, wavespeed: FakeWaveSpeed) -> None:
    await bot.app.db.set_busy_timeout(100)
    other = sqlite3.connect(bot.app.db.path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holds the database
    try:
        interaction = await bot.discord.invoke("video", {"prompt": "a cat"})
        await bot.discord.wait_until(
            lambda: interaction.original() is not None and bool(interaction.original().content)
        )
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert "could not record your request. Nothing was charged" in interaction.original().content
    assert wavespeed.submits == []
    follow = await bot.discord.invoke("video", {"prompt": "a dog"})  # and the next user is served
    await bot.discord.wait_until(lambda: len(finished(bot.discord)) == 1)
    assert follow.original() is not None


# ----- the input image on a finished /animate card --------------------------------------------------


def png(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


async def test_finished_animate_card_shows_the_input_image_as_a_small_jpeg(bot: BotUnderTest) -> None:
    fake = bot.discord
    image = fake.add_attachment(png(1600, 900, (20, 160, 220)), "wide.png", "image/png")
    await fake.invoke("animate", {"image": image, "prompt": "the sea [Push in]"})
    await fake.wait_until(lambda: len(finished(fake)) == 1)
    await bot.wait_jobs_done()

    [card] = finished(fake)
    embed = card.embeds[0]
    assert embed["title"] == "Done · job #1"
    assert embed["thumbnail"]["url"] == "attachment://input.jpg"
    clip, thumb = card.attachments
    assert clip["filename"] == "hailuo-1.mp4" and clip["data"][4:8] == MP4_MAGIC
    assert thumb["filename"] == "input.jpg"
    with Image.open(io.BytesIO(thumb["data"])) as small:
        assert small.format == "JPEG" and small.size == (256, 144)
        r, g, b = small.convert("RGB").getpixel((128, 72))
        assert abs(r - 20) < 8 and abs(g - 160) < 8 and abs(b - 220) < 8
    assert len(thumb["data"]) < 20_000


async def test_a_video_card_has_no_thumbnail(bot: BotUnderTest) -> None:
    fake = bot.discord
    await fake.invoke("video", {"prompt": "a cat"})
    await fake.wait_until(lambda: len(finished(fake)) == 1)
    await bot.wait_jobs_done()
    [card] = finished(fake)
    assert "thumbnail" not in card.embeds[0] and len(card.attachments) == 1
