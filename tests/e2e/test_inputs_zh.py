"""End to end, for a member whose Discord is in Simplified Chinese: /camera lists the moves with their
Chinese names first, and a bad image or an unknown camera move is refused privately in Chinese (and in
English for everyone else, as before)."""

from __future__ import annotations

from pathlib import Path

from core import camera
from tests.e2e.harness import running_bot
from tests.e2e.test_generation_flows import jpeg
from tests.fakes.discord_server import LOADING, FakeDiscord, FakeInteraction


# /video and /animate hand their refusals to Discord in cogs/generate.py, outside this change: until those
# replies go through `to_member` (the i18n-flows branch), they reach a zh-CN member in English.
async def private_reply(fake: FakeDiscord, interaction: FakeInteraction) -> str:
    def answered() -> bool:
        reply = interaction.original()
        return reply is not None and not reply.flags & LOADING and bool(reply.content)

    await fake.wait_until(answered, timeout=15)
    reply = interaction.original()
    assert reply is not None and reply.ephemeral
    return reply.content


async def test_camera_help_for_a_zh_cn_member_lists_the_chinese_names_first(
    tmp_path: Path, discord_fake: FakeDiscord
) -> None:
    async with running_bot(tmp_path, discord_fake, wavespeed_key=None):
        chinese = await private_reply(discord_fake, await discord_fake.invoke("camera", locale="zh-CN"))
        english = await private_reply(discord_fake, await discord_fake.invoke("camera", locale="en-US"))
    assert chinese.startswith("**镜头运动**")
    for move, name in camera.CHINESE_BY_CANONICAL.items():
        assert f"`[{name}]` {move} — " in chinese
        assert f"`[{move}]` {name} — " in english
    assert english == camera.HELP_TEXT


async def test_a_zh_cn_member_gets_bad_images_refused_in_chinese(tmp_path: Path, discord_fake: FakeDiscord) -> None:
    fake = discord_fake
    async with running_bot(tmp_path, fake, wavespeed_key=None):
        # Refused from what Discord declares (no download), and from the bytes (in an image worker).
        empty = fake.add_attachment(jpeg(), "empty.jpg", "image/jpeg", declared_size=0)
        declared = await private_reply(fake, await fake.invoke("animate", {"image": empty}, locale="zh-CN"))
        text = fake.add_attachment(b"these are not the pixels you are looking for\n" * 20, "cat.jpg", "image/jpeg")
        checked = await private_reply(fake, await fake.invoke("animate", {"image": text}, locale="zh-CN"))
        same = fake.add_attachment(b"these are not the pixels you are looking for\n" * 20, "cat.jpg", "image/jpeg")
        english = await private_reply(fake, await fake.invoke("animate", {"image": same}))
    assert declared == "`empty.jpg` 为空（0 字节），请重新上传图片。"
    assert checked.startswith("这个文件看起来是一个文本文件，不是 JPEG、PNG 或 WebP 图片。"), checked
    assert english.startswith("This file looks like a text file, not a JPEG, PNG or WebP image."), english


async def test_a_zh_cn_member_gets_an_unknown_camera_move_refused_in_chinese(
    tmp_path: Path, discord_fake: FakeDiscord
) -> None:
    async with running_bot(tmp_path, discord_fake, wavespeed_key=None):
        reply = await private_reply(
            discord_fake, await discord_fake.invoke("video", {"prompt": "a cat [Pan lefft]"}, locale="zh-CN")
        )
    assert reply.startswith("`[Pan lefft]` 不是镜头指令。你是想写 `[Pan left]` 吗？"), reply
