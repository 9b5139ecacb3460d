"""Moderation end to end (the real bot over the local Discord and WaveSpeedAI stand-ins): a blocked prompt
is refused privately with no charge and no provider call; a provider's moderation verdict is refunded and
counted, and enough strikes freeze the member; only Manage Messages may change the blocklist, whichever
/mod command the payload names."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cogs.moderation import REFUSED
from core.jobs import LedgerTotals
from services.moderation import BLOCKED
from tests.e2e.harness import BotUnderTest, running_bot
from tests.e2e.test_admin import reply
from tests.fakes.discord_server import DEFAULT_PERMISSIONS, FakeDiscord
from tests.fakes.wavespeed_server import FakeWaveSpeed

MANAGE_MESSAGES = 1 << 13
MEMBER_PERMISSIONS = DEFAULT_PERMISSIONS & ~MANAGE_MESSAGES  # the stand-in's default has every text permission
MOD, MEMBER = 3003, 1001


@pytest.fixture
async def wavespeed() -> AsyncIterator[FakeWaveSpeed]:
    async with FakeWaveSpeed("ws-test-key", duration_s=0.2) as fake:
        yield fake


@pytest.fixture
async def bot(tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed) -> AsyncIterator[BotUnderTest]:
    extra = "[moderation]\nstrikes_to_freeze = 3\n"
    async with running_bot(tmp_path, discord_fake, wavespeed_url=wavespeed.base_url, extra=extra) as running:
        yield running
        await running.assert_ledger_balanced()


async def mod(fake: FakeDiscord, command: str, options: dict[str, object] | None = None, **invoke: Any) -> str:
    invoke = {"user_id": MOD, "permissions": DEFAULT_PERMISSIONS | MANAGE_MESSAGES, **invoke}
    return (await reply(fake, await fake.invoke(f"mod {command}", options or {}, **invoke))).content


async def video(running: BotUnderTest, prompt: str, **invoke: Any) -> str:
    message = await reply(running.discord, await running.discord.invoke("video", {"prompt": prompt}, **invoke))
    await running.wait_jobs_done()
    return message.content


async def test_a_blocked_prompt_is_refused_with_no_charge_and_no_provider_call(
    bot: BotUnderTest, wavespeed: FakeWaveSpeed
) -> None:
    fake = bot.discord
    assert "now refused" in await mod(fake, "block add", {"kind": "word", "pattern": "Gore"})
    assert "now refused" in await mod(fake, "block add", {"kind": "regex", "pattern": r"blood\s*bath"})
    assert "`gore`" in await mod(fake, "block list")
    for prompt, term in (("A ＧＯＲＥ fest", "gore"), ("a BLOOD  bath at dawn", "blood bath")):
        text = await video(bot, prompt)
        assert text == BLOCKED.format(term=term), text
    assert wavespeed.requests == []
    assert await bot.app.db.fetchall("SELECT id FROM jobs") == []
    assert await bot.app.store.ledger_totals() == LedgerTotals(0, 0, 0, 0)
    actions = [row[0] for row in await bot.app.db.fetchall("SELECT action FROM audit ORDER BY id")]
    assert actions == ["block add", "block add", "prompt blocked", "prompt blocked"]
    # A zh-CN member is refused in Chinese; a prompt without the words goes through.
    chinese = await video(bot, "gore", locale="zh-CN", user_id=1002)
    assert chinese == "你的提示词包含被屏蔽的内容：`gore`。未产生任何费用；请修改措辞后重试。"
    assert "accepted" in await video(bot, "a quiet harbour at dawn")


async def test_a_provider_block_is_refunded_counted_and_freezes_at_the_limit(
    bot: BotUnderTest, wavespeed: FakeWaveSpeed
) -> None:
    for _ in range(3):
        wavespeed.next_scenario(outcome="nsfw")
        assert "accepted" in await video(bot, "a lighthouse in a storm")
    ended = await bot.app.db.fetchall("SELECT status, error_kind FROM jobs ORDER BY id")
    assert [tuple(row) for row in ended] == [("failed", "moderation")] * 3
    strikes = await bot.app.db.fetchall("SELECT source, job_id FROM strikes ORDER BY id")
    assert [row[0] for row in strikes] == ["provider"] * 3
    totals = await bot.app.store.ledger_totals()
    assert totals.settled == 0 and totals.refunded == totals.reserved
    refused = await video(bot, "a lighthouse in a storm")
    assert "paused your access" in refused and "3 blocks" in refused


async def test_only_manage_messages_may_use_mod_whichever_command(bot: BotUnderTest) -> None:
    fake = bot.discord
    [root] = [command for command in fake.commands if command["name"] == "mod"]
    assert int(root["default_member_permissions"]) == MANAGE_MESSAGES
    leaves = [
        (f"mod {group['name']} {leaf['name']}", leaf)
        for group in root["options"]
        for leaf in group.get("options", [])
        if leaf["type"] == 1
    ]
    assert {name for name, _ in leaves} == {
        "mod block add",
        "mod block remove",
        "mod block list",
        "mod review on",
        "mod review off",
        "mod review queue",
    }
    for name, leaf in leaves:
        by_type = {3: "x", 7: fake.channel_id}  # a string, a channel
        options = {
            o["name"]: o["choices"][0]["value"] if o.get("choices") else by_type[o["type"]]
            for o in leaf.get("options", [])
        }
        for who in ({"permissions": MEMBER_PERMISSIONS}, {"permissions": 0}):
            interaction = await fake.invoke(name, options, user_id=MEMBER, **who)
            assert (await reply(fake, interaction)).content == REFUSED, name
    assert await bot.app.db.fetchall("SELECT id FROM block_rules") == []
    assert await bot.app.db.fetchall("SELECT id FROM audit") == []


def card_of(fake: FakeDiscord, job_id: int) -> Any:
    return next(m for m in fake.messages.values() if m.embeds and f"job #{job_id}" in m.embeds[0].get("title", ""))


def review_message(fake: FakeDiscord, job_id: int) -> Any:
    return next(
        m
        for m in fake.messages.values()
        if m.embeds and m.embeds[0].get("title", "") == f"Review · job #{job_id}" and not m.deleted
    )


async def test_review_mode_holds_a_clip_until_approved_or_rejected_and_survives_a_restart(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed
) -> None:
    fake = discord_fake
    url = wavespeed.base_url
    async with running_bot(tmp_path, fake, wavespeed_url=url) as bot:
        assert "Choose where held clips wait first" in await mod(fake, "review on")
        assert "wait in" in await mod(fake, "review queue", {"channel": fake.channel_id})
        assert "new clips wait for a moderator" in await mod(fake, "review on")
        for prompt in ("a lighthouse in a storm", "a fox in the snow"):
            assert "accepted" in await video(bot, prompt)
        for job_id in (1, 2):
            card = card_of(fake, job_id)
            assert not card.attachments, "a held clip is not on its public card"
            assert "Waiting for a moderator's review" in card.embeds[0]["description"]
            assert "charged either way" in card.embeds[0]["description"]
            held = review_message(fake, job_id)
            assert held.attachments and f"<@{MEMBER}>" in str(held.embeds[0]["fields"])
        totals = await bot.app.store.ledger_totals()
        assert totals.settled == totals.reserved - totals.released  # generated clips are charged
        # A member cannot decide.
        held = review_message(fake, 1)
        refused = await fake.click(held.id, "hailuo:approve:1", user_id=MEMBER, permissions=MEMBER_PERMISSIONS)
        assert "Only moderators" in (await reply(fake, refused)).content
    # Pending items stay pending over a restart; the buttons still work.
    async with running_bot(tmp_path, fake, wavespeed_url=url) as bot:
        approve = await fake.click(held.id, "hailuo:approve:1", user_id=MOD, permissions=DEFAULT_PERMISSIONS)
        assert "Approved: the clip is posted" in (await reply(fake, approve)).content
        card = card_of(fake, 1)
        assert card.attachments and card.attachments[0]["filename"].endswith(".mp4")
        assert "Approved by a moderator" in card.embeds[0]["description"]
        closed = fake.messages[held.id]  # decided: no buttons left, and who decided
        assert closed.custom_ids() == [] and f"Approved by <@{MOD}>" in str(closed.embeds[0]["fields"])
        assert await bot.app.review.decide(1, MOD, approve=False) is None  # a second decision changes nothing
        # Reject with a reason: the requester hears it privately, the card says no more than that.
        second = review_message(fake, 2)
        opened = await fake.click(second.id, "hailuo:reject:2", user_id=MOD, permissions=DEFAULT_PERMISSIONS)
        await fake.wait_until(lambda: opened.modal is not None)
        [field] = fake.modal_inputs(opened)
        submitted = await fake.submit_modal(opened, {field: "too close to a real person"}, user_id=MOD)
        assert "was told why" in (await reply(fake, submitted)).content
        [dm] = fake.dms(MEMBER)
        assert "too close to a real person" in dm.content and "It is charged" in dm.content
        card = card_of(fake, 2)
        assert not card.attachments and "Not approved by a moderator" in card.embeds[0]["description"]
        assert "too close" not in str(card.embeds)
        decisions = await bot.app.db.fetchall(
            "SELECT action FROM audit WHERE action IN ('review approved', 'review rejected') ORDER BY id"
        )
        assert [row[0] for row in decisions] == ["review approved", "review rejected"]
        states = await bot.app.db.fetchall("SELECT state FROM review_items ORDER BY job_id")
        assert [row[0] for row in states] == ["approved", "rejected"]
        await bot.assert_ledger_balanced()
