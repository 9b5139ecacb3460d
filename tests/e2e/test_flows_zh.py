"""A zh-CN member, end to end: /history, /show, /settings, the Remix modal and the card buttons' refusals
answer in Simplified Chinese, while an en-US member in the same server keeps English. The real bot and
discord.py against the local Discord and provider stand-ins; waits are on states, never on time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cogs.history import NOT_YOUR_BUTTONS, page_custom_id
from core.text import tr
from services.cancelling import MESSAGES, CancelOutcome
from services.i18n import localise
from tests.e2e.harness import BotUnderTest, running_bot
from tests.e2e.test_admin import reply
from tests.e2e.test_generation_flows import cards, finished
from tests.e2e.test_history import MEMBER, OTHER, PLAIN, add_jobs, description, show
from tests.e2e.test_outputs import bot, deliver_one, wavespeed
from tests.fakes.discord_server import FakeDiscord, FakeMessage
from tests.fakes.seaart_server import FakeSeaArt

__all__ = ["bot", "wavespeed"]  # the fixtures, shared with test_outputs

ZH = "zh-CN"


def labels(message: FakeMessage) -> list[str]:
    """The labels of a message's buttons, in order."""
    return [button["label"] for row in message.components for button in row.get("components", [])]


def texts(node: Any) -> list[str]:
    """Every `label` and `title` string anywhere in a component tree (a modal's, say)."""
    found: list[str] = []
    if isinstance(node, dict):
        found += [str(node[key]) for key in ("title", "label") if isinstance(node.get(key), str)]
        for value in node.values():
            found += texts(value)
    elif isinstance(node, list):
        for item in node:
            found += texts(item)
    return found


async def test_history_and_show_answer_a_zh_member_in_chinese(bot: BotUnderTest) -> None:
    fake = bot.discord
    await add_jobs(bot, MEMBER, 12)
    [failed] = await add_jobs(bot, MEMBER, 1, outcome="refund")

    message = await reply(fake, await fake.invoke("history", permissions=PLAIN, locale=ZH))
    assert message.embeds[0]["title"] == "你的任务（最新在前）"
    assert message.embeds[0]["footer"]["text"] == "第 1/2 页 · 共 13 个任务"
    text = description(message)
    assert "❌ 失败" in text and "✅ 已交付" in text and "$0.28" in text and "[消息](" in text
    assert "~~$0.28~~ 已退款" in text and "prompt number 12" in text  # the member's own prompt, as written
    assert labels(message) == ["◀ 较新", "较早 ▶"]

    # Someone else pressing the page buttons is refused in their own language.
    older = page_custom_id(MEMBER, 2, MEMBER)
    press = await fake.click(message.id, older, user_id=OTHER, permissions=PLAIN, locale=ZH)
    refusal = await reply(fake, press)
    assert (
        refusal.content == localise(tr(NOT_YOUR_BUTTONS), ZH) == "这些按钮属于使用这次 /历史 的人：请自己使用 /历史。"
    )
    await fake.click(message.id, older, permissions=PLAIN, locale=ZH)
    await fake.wait_until(lambda: message.embeds[0]["footer"]["text"] == "第 2/2 页 · 共 13 个任务")

    refused = await reply(fake, await fake.invoke("history", {"user": MEMBER}, user_id=OTHER, permissions=PLAIN,
                                                   locale=ZH))  # fmt: skip
    assert refused.content == "只有管理员（拥有“管理消息”权限）才能查看他人的任务。"

    # /show: a refusal, and a refunded job's private re-roll button, in the member's language.
    assert (await show(bot, 99, permissions=PLAIN, locale=ZH)).content == "你没有任务 #99。"
    shown = await show(bot, failed, permissions=PLAIN, locale=ZH)
    assert shown.custom_ids() == [f"hailuo:reroll:{failed}"] and labels(shown) == ["重新生成"]

    # An en-US member in the same server still reads English.
    english = await reply(fake, await fake.invoke("history", permissions=PLAIN))
    assert english.embeds[0]["title"] == "Your jobs, newest first" and labels(english) == ["◀ Newer", "Older ▶"]


async def test_settings_answer_a_zh_member_in_chinese(bot: BotUnderTest) -> None:
    fake = bot.discord
    saved = await reply(fake, await fake.invoke("settings", {"quality": "pro", "notify": "dm"}, locale=ZH))
    lines = saved.content.split("\n")
    assert lines[0] == "已保存。你的默认设置："
    assert "• 画质：**pro**" in lines and "• 通知：**私信**" in lines
    assert "• 时长：未设置（内置默认：6 秒）" in lines and "• 优化提示词：未设置（内置默认：开）" in lines
    assert lines[-1] == "使用 /视频 和 /图生视频 时，未填写的选项会采用这些默认值；你填写的选项始终优先。"
    english = await reply(fake, await fake.invoke("settings", {}))
    assert english.content.startswith("Your defaults:\n• quality: **pro**")


async def test_remix_modal_and_card_refusals_speak_the_members_language(bot: BotUnderTest) -> None:
    fake = bot.discord
    await deliver_one(bot, "a red kite over the dunes [Push in]")
    [card] = finished(fake)

    click = await fake.click(card.id, "hailuo:remix:1", locale=ZH)
    await click.wait_acked()
    assert click.response_type == 9 and click.modal is not None
    assert click.modal["title"] == "改写任务 #1"
    assert "提示词（镜头运动写在 [方括号] 中）" in texts(click.modal["components"])
    [value] = fake.modal_inputs(click).values()
    assert value == "a red kite over the dunes [Push in]"  # the prompt is the member's, never translated

    # Delete by someone who may not manage messages: refused privately in their language.
    stranger = await fake.click(card.id, "hailuo:delete:1", user_id=OTHER, permissions=PLAIN, locale=ZH)
    assert (await reply(fake, stranger)).content == "只有发起这个视频的人（或管理员）才能删除它。"
    english = await fake.click(card.id, "hailuo:delete:1", user_id=OTHER, permissions=PLAIN)
    assert (await reply(fake, english)).content.startswith("Only the person who asked for this video")


async def test_cancel_refusal_and_outcome_in_chinese(tmp_path: Path, discord_fake: FakeDiscord) -> None:
    async with FakeSeaArt(duration_s=5) as seaart:
        providers = {"seaart": (seaart.base_url, seaart.api_key)}
        async with running_bot(
            tmp_path, discord_fake, wavespeed_key=None, providers=providers, order='["seaart"]'
        ) as running:
            await discord_fake.invoke("video", {"prompt": "a slow tide"})
            await running.wait_for_job(1, lambda job: job.provider_task_id is not None)  # not the submit in flight
            await discord_fake.wait_until(lambda: any("hailuo:cancel:1" in m.custom_ids() for m in cards(discord_fake)))
            [card] = cards(discord_fake)
            stranger = await discord_fake.click(card.id, "hailuo:cancel:1", user_id=2002, permissions=0, locale=ZH)
            assert (await reply(discord_fake, stranger)).content == "只有发起这个视频的人（或管理员）才能取消它。"
            click = await discord_fake.click(card.id, "hailuo:cancel:1", locale=ZH)
            answer = await reply(discord_fake, click)
            assert answer.content == localise(tr(MESSAGES[CancelOutcome.REQUESTED]), ZH)
            assert answer.content.startswith("已请求取消。")
            await discord_fake.wait_until(lambda: cards(discord_fake)[0].embeds[0]["title"].startswith("Cancelled"))
            await running.wait_jobs_done()
            await running.assert_ledger_balanced()
