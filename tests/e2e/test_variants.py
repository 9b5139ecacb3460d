"""End to end: `variants:` — several jobs with the same settings from one command, all reserved or none,
one public card listing them, each clip posted on its own card, and a failed one refunded alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.harness import running_bot
from tests.e2e.test_generation_flows import jpeg
from tests.fakes.discord_server import FakeDiscord, FakeMessage
from tests.fakes.wavespeed_server import FakeWaveSpeed

MP4_MAGIC = b"ftyp"


@pytest.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord(upload_limit=10 * 1024 * 1024)
    await fake.start()
    yield fake
    await fake.stop()


def public(fake: FakeDiscord) -> list[FakeMessage]:
    return [m for m in fake.messages.values() if not m.ephemeral and not m.deleted and m.embeds]


def set_cards(fake: FakeDiscord) -> list[FakeMessage]:
    return [m for m in public(fake) if "variants · jobs #" in m.embeds[0]["title"]]


def job_cards(fake: FakeDiscord) -> list[FakeMessage]:
    return [m for m in public(fake) if " · job #" in m.embeds[0]["title"]]


def ended(fake: FakeDiscord) -> list[FakeMessage]:
    return [m for m in job_cards(fake) if m.embeds[0]["title"].startswith(("Done", "Failed"))]


async def test_three_variants_one_failing_two_clips_one_refund(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed
) -> None:
    async with running_bot(tmp_path, discord_fake, wavespeed_url=wavespeed.base_url, max_in_flight=3) as bot:
        fake = bot.discord
        wavespeed.next_scenario(outcome="failed", error_text="internal inference error")  # the first task made
        interaction = await fake.invoke("video", {"prompt": "a paper boat on a river", "variants": 3})
        await fake.wait_until(lambda: len(ended(fake)) == 3)
        await bot.wait_jobs_done()
        await fake.wait_until(lambda: "All finished" in set_cards(fake)[0].embeds[0]["description"])

        receipt = interaction.original()
        assert receipt is not None and receipt.ephemeral
        assert "3 variants accepted: jobs #1–#3 ($0.28 each)" in receipt.content

        [summary] = set_cards(fake)
        embed = summary.embeds[0]
        assert embed["title"] == "3 variants · jobs #1–#3"
        assert summary.allowed_mentions == {"parse": []}
        jobs = [await bot.app.store.get(job_id) for job_id in (1, 2, 3)]
        assert all(job is not None and job.set_card_id == summary.id for job in jobs)
        failed = [job for job in jobs if job is not None and job.status == "failed"]
        delivered = [job for job in jobs if job is not None and job.status == "delivered"]
        assert len(failed) == 1 and len(delivered) == 2
        description = embed["description"]
        assert f"#{failed[0].id} ❌ refunded" in description
        assert all(f"#{job.id} ✅" in description for job in delivered)
        assert "All finished: 2 of 3 ready." in description

        done = [m for m in ended(fake) if m.embeds[0]["title"].startswith("Done")]
        assert len(done) == 2 and all(m.attachments and m.attachments[0]["data"][4:8] == MP4_MAGIC for m in done)
        assert len(wavespeed.submits) == 3
        assert {s["json"]["prompt"] for s in wavespeed.submits} == {"a paper boat on a river"}

        totals = await bot.app.store.ledger_totals()
        assert (totals.reserved, totals.settled, totals.refunded) == (3 * 280_000, 2 * 280_000, 280_000)
        refunds = await bot.app.db.fetchall("SELECT job_id FROM ledger WHERE kind = 'refund'")
        assert [row["job_id"] for row in refunds] == [failed[0].id]
        await bot.assert_ledger_balanced()


async def test_variants_over_the_servers_maximum_are_refused_privately(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed
) -> None:
    async with running_bot(
        tmp_path, discord_fake, wavespeed_url=wavespeed.base_url, max_in_flight=4, extra="max_variants = 2"
    ) as bot:
        fake = bot.discord
        interaction = await fake.invoke("video", {"prompt": "a cat", "variants": 3})
        await interaction.wait_acked()
        reply = interaction.original()
        assert reply is not None and reply.ephemeral
        assert reply.content == "This bot makes at most 2 variants per command here (you asked for 3)."
        assert await bot.app.store.get(1) is None and not wavespeed.submits and not public(fake)
        await bot.assert_ledger_balanced()


async def test_variants_that_do_not_all_fit_reserve_nothing(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed
) -> None:
    async with running_bot(
        tmp_path, discord_fake, wavespeed_url=wavespeed.base_url, max_in_flight=4, daily_usd="0.60"
    ) as bot:
        fake = bot.discord
        interaction = await fake.invoke("video", {"prompt": "a cat", "variants": 3})
        await interaction.wait_for(lambda _: "variants fit" in (interaction.original() or _Empty).content)
        reply = interaction.original()
        assert reply is not None and reply.ephemeral
        assert reply.content.startswith("Only 2 of these 3 variants fit your limits right now, so none was made.")
        assert "your daily budget has $0.04 left" in reply.content
        assert await bot.app.store.get(1) is None and not wavespeed.submits and not public(fake)
        totals = await bot.app.store.ledger_totals()
        assert totals.reserved == 0

        # The two that fit can then be made, all at once.
        await fake.invoke("video", {"prompt": "a cat", "variants": 2})
        await fake.wait_until(lambda: len(ended(fake)) == 2)
        await bot.assert_ledger_balanced()


class _Empty:
    content = ""


async def test_variants_cut_off_by_a_restart_carry_on_and_finish_their_card(
    tmp_path: Path, discord_fake: FakeDiscord
) -> None:
    async with FakeWaveSpeed(duration_s=2.0) as wavespeed:
        async with running_bot(tmp_path, discord_fake, wavespeed_url=wavespeed.base_url) as bot:
            await discord_fake.invoke("video", {"prompt": "a storm at sea", "variants": 2})
            for job_id in (1, 2):
                await bot.wait_for_job(job_id, lambda job: job.provider_task_id is not None)
            await bot.app.runner.shutdown()  # like a crash: tasks stop where they stand
        [summary] = set_cards(discord_fake)
        assert "All finished" not in summary.embeds[0]["description"]

        async with running_bot(tmp_path, discord_fake, wavespeed_url=wavespeed.base_url) as bot:
            await discord_fake.wait_until(lambda: len(ended(discord_fake)) == 2)
            await bot.wait_jobs_done()
            await discord_fake.wait_until(lambda: "All finished: 2 of 2 ready." in summary.embeds[0]["description"])
            assert set_cards(discord_fake) == [summary]  # the same card, edited after the restart
            assert len(wavespeed.submits) == 2, "each variant was polled by its task id, not submitted again"
            await bot.assert_ledger_balanced()


async def test_more_variants_than_jobs_at_a_time_are_refused_saying_why(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed
) -> None:
    async with running_bot(tmp_path, discord_fake, wavespeed_url=wavespeed.base_url) as bot:  # 2 at a time
        fake = bot.discord
        interaction = await fake.invoke(
            "animate", {"image": fake.add_attachment(jpeg(), "a.jpg", "image/jpeg"), "variants": 3}
        )
        await interaction.wait_for(lambda _: "variants fit" in (interaction.original() or _Empty).content)
        reply = interaction.original()
        assert reply is not None and reply.content == (
            "Only 2 of these 3 variants fit your limits right now, so none was made. "
            "You may have 2 videos generating at a time, and each variant is one."
        )
        assert await bot.app.store.get(1) is None and not wavespeed.submits and not public(fake)
        await bot.assert_ledger_balanced()
