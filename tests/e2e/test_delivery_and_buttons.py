"""End to end: fitting clips to the upload limit, the 15-minute token, buttons, restarts, sync."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from media.ffmpeg import ffmpeg_path
from services.jobs import JobService
from tests.e2e.harness import running_bot
from tests.e2e.test_generation_flows import cards, finished, jpeg
from tests.fakes.discord_server import DEFAULT_PERMISSIONS, FakeDiscord
from tests.fakes.wavespeed_server import FakeWaveSpeed

MANAGE_MESSAGES = 1 << 13


@pytest.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord(upload_limit=1024 * 1024)  # 1 MiB keeps re-encoding quick on 2 cores
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def wavespeed() -> AsyncIterator[FakeWaveSpeed]:
    fake = FakeWaveSpeed("ws-test-key", duration_s=0.4)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture(scope="module")
def big_clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real 3 s mp4 of about 3 MB (noise does not compress)."""
    path = tmp_path_factory.mktemp("clips") / "big.mp4"
    subprocess.run(
        [ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         "testsrc2=s=480x270:r=24,noise=alls=40:allf=t", "-t", "3", "-c:v", "libx264", "-preset", "ultrafast",
         "-crf", "18", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )  # fmt: skip
    data = path.read_bytes()
    assert len(data) > 2 * 1024 * 1024
    return data


async def test_oversized_clip_is_reencoded_under_the_limit(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed, big_clip: bytes
) -> None:
    async with running_bot(tmp_path, discord_fake, wavespeed_url=wavespeed.base_url) as bot:
        wavespeed.next_scenario(output_bytes=big_clip)
        await discord_fake.invoke("video", {"prompt": "static on an old tv"})
        await discord_fake.wait_until(lambda: len(finished(discord_fake)) == 1, timeout=60)
        card = finished(discord_fake)[0]
        [clip] = card.attachments
        assert 0 < clip["size"] <= 1024 * 1024 < len(big_clip)
        assert clip["data"][4:8] == b"ftyp"
        await bot.wait_jobs_done()
        job = await bot.app.store.get(1)
        assert job is not None and job.delivered_as == "reencoded" and job.output_bytes == len(big_clip)
        assert not list((tmp_path / "data" / "tmp").iterdir())  # temporary files removed
        await bot.assert_ledger_balanced()


async def test_expired_token_hands_over_to_the_bot_token(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed
) -> None:
    async with running_bot(tmp_path, discord_fake, wavespeed_url=wavespeed.base_url) as bot:
        wavespeed.next_scenario(duration_s=2.0)
        interaction = await discord_fake.invoke("video", {"prompt": "a slow sunrise"})
        await discord_fake.wait_until(lambda: len(cards(discord_fake)) == 1)
        discord_fake.expire_token(interaction.token)  # the 15 minutes are up mid-job
        await discord_fake.wait_until(lambda: len(finished(discord_fake)) == 1, timeout=30)
        card = finished(discord_fake)[0]
        assert card.attachments and card.custom_ids() == [
            "hailuo:reroll:1",
            "hailuo:remix:1",
            "hailuo:continue:1",
            "hailuo:delete:1",
        ]
        channel_edits = [
            r
            for r in discord_fake.requests
            if r.method == "PATCH" and r.path.startswith("/channels/") and r.status == 200
        ]
        assert channel_edits, "the result should have been posted through the bot token"
        await bot.assert_ledger_balanced()


async def test_card_deleted_by_a_moderator_is_posted_anew(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed
) -> None:
    async with running_bot(tmp_path, discord_fake, wavespeed_url=wavespeed.base_url) as bot:
        wavespeed.next_scenario(duration_s=1.5)
        await discord_fake.invoke("video", {"prompt": "a paper boat"})
        await discord_fake.wait_until(lambda: len(cards(discord_fake)) == 1)
        first = cards(discord_fake)[0]
        discord_fake.delete_message(first.id)
        await discord_fake.wait_until(lambda: len(finished(discord_fake)) == 1, timeout=30)
        result = finished(discord_fake)[0]
        assert result.id != first.id and result.attachments
        assert len(cards(discord_fake)) == 1, "one new card, edited to the end: not a new post per edit"
        await bot.wait_jobs_done()
        job = await bot.app.store.get(1)
        assert job is not None and job.message_id == result.id
        await bot.assert_ledger_balanced()


async def test_reroll_charges_a_new_job_and_delete_checks_who_asks(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed
) -> None:
    async with running_bot(tmp_path, discord_fake, wavespeed_url=wavespeed.base_url) as bot:
        image = discord_fake.add_attachment(jpeg(), "cat.jpg", "image/jpeg")
        await discord_fake.invoke("animate", {"image": image, "prompt": "[Push in]"})
        await discord_fake.wait_until(lambda: len(finished(discord_fake)) == 1)
        first = finished(discord_fake)[0]

        await discord_fake.click(first.id, "hailuo:reroll:1")
        await discord_fake.wait_until(lambda: len(finished(discord_fake)) == 2)
        second = await bot.app.store.get(2)
        assert second is not None and second.parent_job_id == 1 and second.input_image is not None
        first_image, second_image = (submit["json"]["image"] for submit in wavespeed.submits)
        assert first_image == second_image

        stranger = await discord_fake.click(
            first.id, "hailuo:delete:1", user_id=2002, permissions=DEFAULT_PERMISSIONS & ~MANAGE_MESSAGES
        )
        await stranger.wait_acked()
        assert "Only the person who asked" in stranger.original().content
        assert not discord_fake.messages[first.id].deleted

        moderator = await discord_fake.click(first.id, "hailuo:delete:1", user_id=3003, permissions=MANAGE_MESSAGES)
        await discord_fake.wait_until(lambda: discord_fake.messages[first.id].deleted)
        await discord_fake.wait_until(lambda: moderator.original() is not None and moderator.original().content)
        assert moderator.original().content == "Deleted." and moderator.original().ephemeral
        await bot.wait_jobs_done()
        totals = await bot.app.store.ledger_totals()
        assert totals.settled == 2 * 280_000
        await bot.assert_ledger_balanced()


async def test_buttons_work_after_a_restart_and_commands_are_not_resynced(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed
) -> None:
    async with running_bot(tmp_path, discord_fake, wavespeed_url=wavespeed.base_url) as first_run:
        await discord_fake.invoke("video", {"prompt": "a red kite"})
        await discord_fake.wait_until(lambda: len(finished(discord_fake)) == 1)
        await first_run.wait_jobs_done()
    assert discord_fake.sync_count == 1
    result = finished(discord_fake)[0]

    async with running_bot(tmp_path, discord_fake, wavespeed_url=wavespeed.base_url) as bot:
        assert discord_fake.sync_count == 1  # definitions unchanged: no second sync
        await discord_fake.click(result.id, "hailuo:reroll:1")
        await discord_fake.wait_until(lambda: len(finished(discord_fake)) == 2)
        job = await bot.app.store.get(2)
        assert job is not None and job.parent_job_id == 1 and job.prompt == "a red kite"
        await bot.assert_ledger_balanced()


async def test_preview_provider_runs_when_no_key_is_set(tmp_path: Path, discord_fake: FakeDiscord) -> None:
    async with running_bot(tmp_path, discord_fake, wavespeed_key=None) as bot:
        image = discord_fake.add_attachment(jpeg(), "cat.webp", None)
        interaction = await discord_fake.invoke("animate", {"image": image, "prompt": "[Pan left] a cat"})
        await discord_fake.wait_until(lambda: len(finished(discord_fake)) == 1, timeout=60)
        card = finished(discord_fake)[0]
        assert card.attachments and card.attachments[0]["data"][4:8] == b"ftyp"
        assert "Preview" in card.embeds[0]["footer"]["text"]
        assert "free preview" in interaction.original().content
        job = await bot.app.store.get(1)
        assert job is not None and job.provider == "preview" and job.cost_micros == 0
        await bot.assert_ledger_balanced()


async def test_a_preview_that_fits_nowhere_ends_undeliverable_and_never_posts_a_local_path(
    tmp_path: Path,
) -> None:
    tiny = FakeDiscord(upload_limit=20_000)  # no 6 s clip fits, however hard it is re-encoded
    await tiny.start()
    try:
        async with running_bot(tmp_path, tiny, wavespeed_key=None) as bot:
            await tiny.invoke("video", {"prompt": "a paper boat on a river"})
            await tiny.wait_until(lambda: len(finished(tiny)) == 1, timeout=60)
            [card] = finished(tiny)
            assert card.embeds[0]["title"] == "Failed · job #1" and not card.attachments
            assert "could not be posted here" in card.embeds[0]["description"]
            everything = " ".join(f"{m.content} {m.embeds}" for m in tiny.messages.values())
            assert "file:" not in everything and str(tmp_path) not in everything
            job = await bot.app.store.get(1)
            assert job is not None and (job.status, job.error_kind) == ("failed", "undeliverable")
            await bot.assert_ledger_balanced()
    finally:
        await tiny.stop()


async def test_an_error_in_a_button_reaches_the_member_as_a_private_apology(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: object, job: object) -> None:
        raise RuntimeError("a bug in a button handler")

    async with running_bot(tmp_path, discord_fake, wavespeed_url=wavespeed.base_url) as bot:
        await discord_fake.invoke("video", {"prompt": "a kite over the sea"})
        await discord_fake.wait_until(lambda: len(finished(discord_fake)) == 1, timeout=30)
        [card] = finished(discord_fake)
        monkeypatch.setattr(JobService, "reroll_spec", broken)
        click = await discord_fake.click(card.id, "hailuo:reroll:1")
        # The handler had deferred ("thinking…"): the first follow-up replaces that private message.
        await discord_fake.wait_until(lambda: "reference" in getattr(click.original(), "content", ""), timeout=10)
        apology = click.original()
        assert apology is not None and apology.ephemeral and f"reference {click.id}" in apology.content
        assert "RuntimeError" not in apology.content and "Traceback" not in apology.content
        assert (await bot.app.store.ledger_totals()).reserved == 280_000  # the re-roll reserved nothing
        await bot.assert_ledger_balanced()


async def test_quota_camera_help_and_autocomplete(tmp_path: Path, discord_fake: FakeDiscord) -> None:
    async with running_bot(tmp_path, discord_fake, wavespeed_key=None):
        quota = await discord_fake.invoke("quota")
        await quota.wait_acked()
        embed = quota.original().embeds[0]
        assert quota.original().ephemeral
        fields = {field["name"]: field["value"] for field in embed["fields"]}
        assert fields["Videos today"].startswith("**10 left** of 10")
        assert "resets <t:" in fields["Server budget this month"]

        help_reply = await discord_fake.invoke("camera")
        await help_reply.wait_acked()
        assert "Pedestal up" in help_reply.original().content and help_reply.original().ephemeral

        choices = await discord_fake.autocomplete("video", "camera", "push in, pa", options={"prompt": "x"})
        values = [choice["value"] for choice in choices]
        assert "Push in, Pan left" in values and "Push in, Pan right" in values
        await asyncio.sleep(0)
