"""The member's language: synced commands carry zh-CN names and descriptions, and a zh-CN member is
answered in Chinese while an en-US member in the same server is answered in English."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.text import tr
from services.i18n import localise
from tests.e2e.harness import BotUnderTest, running_bot
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.wavespeed_server import FakeWaveSpeed


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[tuple[BotUnderTest, FakeWaveSpeed]]:
    async with FakeWaveSpeed("ws-test-key", duration_s=0.2) as wavespeed:
        fake = FakeDiscord()
        await fake.start()
        try:
            async with running_bot(tmp_path, fake, wavespeed_url=wavespeed.base_url) as running:
                yield running, wavespeed
        finally:
            await fake.stop()


async def test_synced_commands_carry_zh_cn_names_and_descriptions(bot: tuple[BotUnderTest, FakeWaveSpeed]) -> None:
    running, _ = bot
    commands = {command["name"]: command for command in running.discord.commands}
    video = commands["video"]
    assert video["name_localizations"]["zh-CN"] == "视频"
    assert video["description_localizations"]["zh-CN"] == "根据文字提示词生成视频（海螺）。"
    prompt = next(option for option in video["options"] if option["name"] == "prompt")
    assert prompt["name_localizations"]["zh-CN"] == "提示词"
    assert "zh-CN" in prompt["description_localizations"]
    quality = next(option for option in video["options"] if option["name"] == "quality")
    translated = {choice.get("name_localizations", {}).get("zh-CN") for choice in quality["choices"]}
    assert "pro — 1080P（仅 6 秒）" in translated
    for command in running.discord.commands:  # every command, and every option of it, in both languages
        assert "zh-CN" in command["name_localizations"] and "zh-CN" in command["description_localizations"]
        for option in command.get("options", []):
            assert "zh-CN" in option["name_localizations"], (command["name"], option["name"])
    assert commands["admin"]["name_localizations"]["zh-CN"] == "管理"


async def test_a_zh_cn_member_is_answered_in_chinese_and_an_en_us_member_in_english(
    bot: tuple[BotUnderTest, FakeWaveSpeed],
) -> None:
    running, wavespeed = bot
    fake = running.discord
    english = tr("That isn't one of the offered choices for an option. Pick one from the list.")
    for locale, expected in (("zh-CN", localise(english, "zh-CN")), ("en-US", str(english))):
        interaction = await fake.invoke("video", {"prompt": "a cat", "quality": "ultra"}, locale=locale)
        await fake.wait_until(lambda f, i=interaction: (reply := i.original()) is not None and reply.content != "")
        reply = interaction.original()
        assert reply is not None and reply.ephemeral and reply.content == expected
    assert expected != localise(english, "zh-CN")
    assert wavespeed.requests == []
