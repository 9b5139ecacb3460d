"""/history and /show end to end: the real bot, real discord.py, SQLite and ffmpeg, the local Discord and
WaveSpeedAI stand-ins. Every answer is private and pings no one; a member sees their own jobs, a moderator
(Manage Messages) anyone's; the page buttons answer only the one who asked. Waits are on states."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from cogs.history import NOT_YOUR_BUTTONS, NOT_YOUR_JOB, NOT_YOURS, page_custom_id
from core.clock import utcnow
from core.jobs import JobStatus, NewJob
from tests.e2e.harness import BotUnderTest, running_bot
from tests.e2e.test_admin import reply
from tests.e2e.test_generation_flows import finished
from tests.e2e.test_outputs import bot, deliver_one, wavespeed
from tests.fakes.discord_server import DEFAULT_PERMISSIONS, FakeDiscord, FakeMessage
from tests.fakes.wavespeed_server import FakeWaveSpeed

__all__ = ["bot", "wavespeed"]  # the fixtures, shared with test_outputs

MEMBER = 1001  # the fake's default invoker
OTHER = 1002
MOD = 3003
MANAGE_MESSAGES = 1 << 13
PLAIN = DEFAULT_PERMISSIONS & ~MANAGE_MESSAGES  # the fake's default member may manage messages


async def show(running: BotUnderTest, job_id: int, **invoke: Any) -> FakeMessage:
    message = await reply(running.discord, await running.discord.invoke("show", {"job": job_id}, **invoke))
    assert message.allowed_mentions == {"parse": []}
    return message


async def test_show_posts_the_stored_clip_rerolls_and_says_when_it_is_gone(bot: BotUnderTest) -> None:
    fake = bot.discord
    await deliver_one(bot, "a lighthouse in a storm")

    choices = await fake.autocomplete("show", "job", "")
    assert [choice["value"] for choice in choices] == [1]
    assert "lighthouse" in choices[0]["name"]
    assert await fake.autocomplete("show", "job", "", user_id=OTHER, permissions=PLAIN) == []

    message = await show(bot, 1)
    assert message.ephemeral
    names = [attachment["filename"] for attachment in message.attachments]
    assert names == ["hailuo-1.mp4", "hailuo-1.jpg"]
    clip = bot.app.settings.config.bot.data_dir / "outputs" / "1.mp4"
    assert message.attachments[0]["data"] == clip.read_bytes()
    assert message.custom_ids() == ["hailuo:reroll:1"]  # Delete means nothing on a private message

    refused = await show(bot, 1, user_id=OTHER, permissions=PLAIN)
    assert refused.content == NOT_YOUR_JOB.format(job_id=1) and not refused.attachments
    shown_to_mod = await show(bot, 1, user_id=MOD, permissions=DEFAULT_PERMISSIONS | MANAGE_MESSAGES)
    assert shown_to_mod.attachments

    # Re-roll from the private message: a new job, charged again, delivered in the channel.
    await fake.click(message.id, "hailuo:reroll:1")
    await fake.wait_until(lambda: len(finished(fake)) == 2, timeout=30)
    await bot.wait_jobs_done()
    rerolled = await bot.app.store.get(2)
    assert rerolled is not None and rerolled.parent_job_id == 1 and rerolled.status == JobStatus.DELIVERED

    await bot.app.runner.sweep_outputs(now=utcnow() + timedelta(days=31))
    gone = await show(bot, 1)
    assert "no longer stored" in gone.content and not gone.attachments
    assert gone.custom_ids() == ["hailuo:reroll:1"]


async def add_jobs(running: BotUnderTest, user_id: int, count: int, outcome: str = "settle") -> list[int]:
    """Delivered jobs written straight to the store (running twelve real ones adds nothing here)."""
    store, fake = running.app.store, running.discord
    ids = []
    for n in range(count):
        job = await store.reserve(
            NewJob(
                user_id=user_id,
                guild_id=fake.guild_id,
                channel_id=fake.channel_id,
                interaction_id=None,
                command="video",
                mode="t2v",
                quality="standard",
                duration=6,
                optimize_prompt=True,
                model="hailuo-2.3",
                prompt=f"prompt number {n + 1}",
                input_image=None,
                provider="wavespeed",
                cost_micros=280_000,
            ),
            lambda usage: None,
        )
        await store.update(job.id, message_id=900_000 + job.id)
        if outcome == "settle":
            await store.finish(job.id, JobStatus.DELIVERED, "settle", delivered_as="file")
        else:
            await store.finish(job.id, JobStatus.FAILED, "refund", error_kind="generation_failed")
        ids.append(job.id)
    return ids


def description(message: FakeMessage) -> str:
    return str(message.embeds[0]["description"])


async def test_history_pages_are_private_and_only_mods_see_others(bot: BotUnderTest) -> None:
    fake = bot.discord
    mine = await add_jobs(bot, MEMBER, 12)
    await add_jobs(bot, OTHER, 1)

    message = await reply(fake, await fake.invoke("history", permissions=PLAIN))
    assert message.ephemeral and message.allowed_mentions == {"parse": []}
    text = description(message)
    assert [f"**#{job_id}**" in text for job_id in mine] == [False, False] + [True] * 10
    assert text.index("**#12**") < text.index("**#3**")  # newest first
    assert f"https://discord.com/channels/{fake.guild_id}/{fake.channel_id}/{900_000 + 12}" in text
    assert "$0.28" in text and "delivered" in text and "prompt number 12" in text
    assert message.embeds[0]["footer"]["text"] == "Page 1 of 2 · 12 jobs"
    older = page_custom_id(MEMBER, 2, MEMBER)
    assert older in message.custom_ids()

    # Someone else pressing the buttons is refused privately; the page stays as it was.
    press = await fake.click(message.id, older, user_id=OTHER, permissions=PLAIN)
    await fake.wait_until(lambda: press.original() is not None and bool(press.original().content))  # type: ignore[union-attr]
    refusal = press.original()
    assert refusal is not None and refusal.ephemeral and refusal.content == NOT_YOUR_BUTTONS
    assert "Page 1 of 2" in message.embeds[0]["footer"]["text"]

    await fake.click(message.id, older, permissions=PLAIN)
    await fake.wait_until(lambda: "Page 2 of 2" in message.embeds[0]["footer"]["text"])
    text = description(message)
    assert "**#2**" in text and "**#1**" in text and "**#3**" not in text

    refused = await reply(fake, await fake.invoke("history", {"user": MEMBER}, user_id=OTHER, permissions=PLAIN))
    assert refused.content == NOT_YOURS and not refused.embeds

    mod = DEFAULT_PERMISSIONS | MANAGE_MESSAGES
    seen = await reply(fake, await fake.invoke("history", {"user": OTHER}, user_id=MOD, permissions=mod))
    assert "prompt number 1" in description(seen) and f"<@{OTHER}>" in description(seen)
    assert seen.embeds[0]["footer"]["text"] == "Page 1 of 1 · 1 job"
    assert seen.allowed_mentions == {"parse": []}


async def test_page_buttons_keep_working_after_a_restart(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed
) -> None:
    async with running_bot(tmp_path, discord_fake, wavespeed_url=wavespeed.base_url) as running:
        await add_jobs(running, MEMBER, 11)
        message = await reply(discord_fake, await discord_fake.invoke("history", permissions=PLAIN))
        assert message.embeds[0]["footer"]["text"] == "Page 1 of 2 · 11 jobs"

    def footer() -> str:
        return str(message.embeds[0]["footer"]["text"])

    async with running_bot(tmp_path, discord_fake, wavespeed_url=wavespeed.base_url) as running:
        await discord_fake.click(message.id, page_custom_id(MEMBER, 2, MEMBER), permissions=PLAIN)
        await discord_fake.wait_until(lambda: footer().startswith("Page 2 of 2"))
        assert "**#1**" in description(message) and "**#2**" not in description(message)
        await discord_fake.click(message.id, page_custom_id(MEMBER, 1, MEMBER), permissions=PLAIN)  # ◀ Newer
        await discord_fake.wait_until(lambda: footer().startswith("Page 1 of 2"))
        await running.assert_ledger_balanced()


async def test_show_of_a_refunded_job_says_why_and_offers_a_re_roll(bot: BotUnderTest) -> None:
    [job_id] = await add_jobs(bot, MEMBER, 1, outcome="refund")
    message = await show(bot, job_id, permissions=PLAIN)
    assert message.embeds[0]["title"] == f"Failed · job #{job_id}" and not message.attachments
    assert "You were not charged." in description(message)
    assert message.custom_ids() == [f"hailuo:reroll:{job_id}"]
    missing = await show(bot, 99, permissions=PLAIN)
    assert missing.content == "You have no job #99."
