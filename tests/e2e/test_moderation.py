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
