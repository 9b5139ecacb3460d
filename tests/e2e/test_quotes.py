"""A quote before a big job (`/admin quote-threshold`): the member sees the price and what they have left,
and nothing is reserved until Confirm; Cancel and expiry reserve nothing at all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cogs import quotes
from core.jobs import LedgerTotals
from tests.e2e.harness import BotUnderTest, running_bot
from tests.e2e.test_generation_flows import finished
from tests.fakes.discord_server import LOADING, FakeDiscord, FakeInteraction
from tests.fakes.wavespeed_server import FakeWaveSpeed

ADMIN = 42


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[tuple[BotUnderTest, FakeWaveSpeed]]:
    async with FakeWaveSpeed("ws-test-key", duration_s=0.2) as wavespeed:
        fake = FakeDiscord()
        await fake.start()
        try:
            async with running_bot(tmp_path, fake, wavespeed_url=wavespeed.base_url) as running:
                await running.app.admin.set_quote_threshold(fake.guild_id, ADMIN, "0.25")  # $0.28 clips ask first
                yield running, wavespeed
                await running.assert_ledger_balanced()
        finally:
            await fake.stop()


def reply(interaction: FakeInteraction) -> str:
    message = interaction.original()
    return message.content if message is not None and not message.flags & LOADING else ""


async def quoted(fake: FakeDiscord) -> FakeInteraction:
    interaction = await fake.invoke("video", {"prompt": "a lighthouse in a storm"})
    await fake.wait_until(lambda f: "costs $0.28" in reply(interaction))
    return interaction


async def test_nothing_is_reserved_until_confirm(bot: tuple[BotUnderTest, FakeWaveSpeed]) -> None:
    running, wavespeed = bot
    fake = running.discord
    interaction = await quoted(fake)
    message = interaction.original()
    assert message is not None and message.ephemeral and "left today" in message.content
    assert await running.app.store.ledger_totals() == LedgerTotals(0, 0, 0, 0) and wavespeed.submits == []
    confirm = next(cid for cid in message.custom_ids() if "confirm" in cid)
    await fake.click(message.id, confirm)
    await fake.wait_until(lambda f: len(finished(f)) == 1)
    assert "Job #1 accepted ($0.28)" in reply(interaction)


@pytest.mark.parametrize("answer", ["cancel", "expire"])
async def test_cancel_or_expiry_reserves_nothing(
    bot: tuple[BotUnderTest, FakeWaveSpeed], answer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    running, wavespeed = bot
    fake = running.discord
    if answer == "expire":
        monkeypatch.setattr(quotes, "QUOTE_SECONDS", 0.3)
    interaction = await quoted(fake)
    if answer == "cancel":
        message = interaction.original()
        assert message is not None
        await fake.click(message.id, next(cid for cid in message.custom_ids() if "cancel" in cid))
    expected = quotes.CANCELLED if answer == "cancel" else quotes.EXPIRED
    await fake.wait_until(lambda f: reply(interaction) == expected)
    assert await running.app.store.ledger_totals() == LedgerTotals(0, 0, 0, 0)
    assert wavespeed.submits == [] and await running.app.db.fetchall("SELECT id FROM jobs") == []


async def test_a_zh_cn_member_gets_the_quote_and_its_buttons_in_chinese(
    bot: tuple[BotUnderTest, FakeWaveSpeed],
) -> None:
    running, _ = bot
    fake = running.discord
    interaction = await fake.invoke("video", {"prompt": "a lighthouse in a storm"}, locale="zh-CN")
    await fake.wait_until(lambda f: "需要 $0.28" in reply(interaction))
    message = interaction.original()
    assert message is not None and message.ephemeral
    assert reply(interaction) == (
        "此视频需要 $0.28；你今天还剩 $2.00。请在一分钟内确认以开始生成（确认前不会预留任何费用）。"
    )
    labels = [button["label"] for row in message.components for button in row["components"]]
    assert labels == ["确认", "取消"]
    await fake.click(message.id, next(cid for cid in message.custom_ids() if "cancel" in cid), locale="zh-CN")
    await fake.wait_until(lambda f: reply(interaction) == "已取消。未预留也未扣除任何费用。")
    assert await running.app.db.fetchall("SELECT id FROM jobs") == []


async def test_a_quote_for_variants_covers_all_of_them(bot: tuple[BotUnderTest, FakeWaveSpeed]) -> None:
    running, wavespeed = bot
    fake = running.discord
    interaction = await fake.invoke("video", {"prompt": "a lighthouse in a storm", "variants": 2})
    await fake.wait_until(lambda f: "These 2 clips cost $0.56" in reply(interaction))
    assert await running.app.store.ledger_totals() == LedgerTotals(0, 0, 0, 0) and wavespeed.submits == []
    message = interaction.original()
    assert message is not None
    await fake.click(message.id, next(cid for cid in message.custom_ids() if "confirm" in cid))
    await fake.wait_until(lambda f: len(finished(f)) == 2)
    assert "2 variants accepted: jobs #1–#2 ($0.28 each)" in reply(interaction)
