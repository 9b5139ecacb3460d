"""End to end: the public job card speaks the server's language (its community locale), the private
receipt the member's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cogs.client import RESUMED_NOTICE
from core.text import tr
from services.i18n import localise
from tests.e2e.harness import running_bot
from tests.fakes.discord_server import FakeDiscord, FakeMessage
from tests.fakes.wavespeed_server import FakeWaveSpeed


@pytest.fixture
async def chinese_server() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord()
    fake.guild_locales[fake.guild_id] = "zh-CN"  # sent in GUILD_CREATE and in every interaction
    await fake.start()
    yield fake
    await fake.stop()


def cards(fake: FakeDiscord) -> list[FakeMessage]:
    return [m for m in fake.messages.values() if not m.ephemeral and not m.deleted and m.embeds]


def titled(fake: FakeDiscord, start: str) -> list[FakeMessage]:
    return [m for m in cards(fake) if m.embeds[0]["title"].startswith(start)]


async def test_a_chinese_server_gets_a_chinese_card_and_an_english_member_an_english_receipt(
    tmp_path: Path, chinese_server: FakeDiscord, wavespeed: FakeWaveSpeed
) -> None:
    fake = chinese_server
    async with running_bot(tmp_path, fake, wavespeed_url=wavespeed.base_url) as bot:
        interaction = await fake.invoke("video", {"prompt": "a lighthouse in a storm"}, locale="en-US")
        await fake.wait_until(lambda: len(titled(fake, "完成")) == 1)
        await bot.wait_jobs_done()
        receipt = interaction.original()
        assert receipt is not None and receipt.content.startswith("Job #1 accepted ($0.28).")

        [card] = titled(fake, "完成")
        embed = card.embeds[0]
        assert embed["title"] == "完成 · 任务 #1"
        assert embed["description"].endswith("秒完成。") and "Finished" not in embed["description"]
        fields = {field["name"]: field["value"] for field in embed["fields"]}
        assert list(fields) == ["设置", "费用", "请求者"]
        assert fields["设置"] == "Hailuo 2.3 · 文字 → 视频 · standard 768P · 6 秒"
        assert fields["费用"] == "$0.28" and fields["请求者"] == "<@1001>"
        assert embed["footer"]["text"] == "由 wavespeed 生成"
        await bot.assert_ledger_balanced()


async def test_failed_cards_and_the_variants_card_in_chinese(
    tmp_path: Path, chinese_server: FakeDiscord, wavespeed: FakeWaveSpeed
) -> None:
    fake = chinese_server
    async with running_bot(tmp_path, fake, wavespeed_url=wavespeed.base_url) as bot:
        wavespeed.next_scenario(outcome="failed")
        interaction = await fake.invoke("video", {"prompt": "a cat", "variants": 2}, locale="zh-CN")
        await fake.wait_until(lambda: len(titled(fake, "失败")) == 1 and len(titled(fake, "完成")) == 1)
        await bot.wait_jobs_done()
        await fake.wait_until(lambda: "全部完成" in titled(fake, "2 个变体")[0].embeds[0]["description"])

        receipt = interaction.original()
        assert receipt is not None
        assert receipt.content.startswith("已受理 2 个变体：任务 #1–#2（每个 $0.28），请在下方查看进度。")
        [failed] = titled(fake, "失败")
        fields = {field["name"]: field["value"] for field in failed.embeds[0]["fields"]}
        assert fields["费用"] == "$0.28（已退款）"
        [summary] = titled(fake, "2 个变体")
        embed = summary.embeds[0]
        assert embed["title"] == "2 个变体 · 任务 #1–#2"
        assert "❌ 已退款" in embed["description"] and "全部完成：2 个中 1 个已生成。" in embed["description"]
        assert [field["name"] for field in embed["fields"]] == ["设置", "费用", "请求者"]
        await bot.assert_ledger_balanced()


async def test_a_chinese_member_in_an_english_server_gets_a_chinese_receipt_and_an_english_card(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed
) -> None:
    fake = discord_fake
    async with running_bot(tmp_path, fake, wavespeed_url=wavespeed.base_url) as bot:
        interaction = await fake.invoke("video", {"prompt": "a cat"}, locale="zh-CN")
        await fake.wait_until(lambda: len(titled(fake, "Done")) == 1)
        await bot.wait_jobs_done()
        receipt = interaction.original()
        assert receipt is not None and receipt.content == "任务 #1 已受理（$0.28），请在下方查看进度。"
        assert titled(fake, "Done")[0].embeds[0]["title"] == "Done · job #1"
        await bot.assert_ledger_balanced()


async def test_a_job_resumed_after_a_restart_finishes_its_card_in_the_servers_language(
    tmp_path: Path, chinese_server: FakeDiscord
) -> None:
    fake = chinese_server
    async with FakeWaveSpeed("ws-test-key", duration_s=2.0) as slow:
        async with running_bot(tmp_path, fake, wavespeed_url=slow.base_url) as bot:
            await fake.invoke("video", {"prompt": "a storm at sea"}, user_id=4242)
            await bot.wait_for_job(1, lambda job: job.provider_task_id is not None)
            await bot.app.runner.shutdown()  # like a crash
        # Jobs resume before the gateway has sent the server: its language is looked up at each card.
        async with running_bot(tmp_path, fake, wavespeed_url=slow.base_url) as bot:
            await fake.wait_until(lambda: len(titled(fake, "完成")) == 1)
            await bot.wait_jobs_done()
            [card] = titled(fake, "完成")
            assert localise(tr(RESUMED_NOTICE), "zh-CN") in card.embeds[0]["description"]
            ping = [m for m in fake.messages.values() if m.content.startswith("<@4242>")]
            assert [m.content for m in ping] == ["<@4242> 你的视频（任务 #1）已在上方生成好了。"]
            await bot.assert_ledger_balanced()
