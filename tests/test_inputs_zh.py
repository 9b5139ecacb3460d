"""Refusals about a member's inputs (camera moves, prompts, options, images, dollar amounts) are `Text`s:
English as before, and Simplified Chinese for a zh-CN member, including a refusal that came back from an
image worker process (pickled), and the /camera help with the Chinese names first."""

from __future__ import annotations

import pickle

import pytest

from core import camera
from core.errors import UserError
from core.spec import GenerationSpec
from core.text import Text
from services.i18n import localise
from services.image_pool import ImageChecker, check_in_worker
from services.images import DEFAULT_BUDGET, check_declared, check_rules, inspect_image
from services.pricing import parse_usd
from services.prompts import validate_combination, validate_prompt
from services.routing import ProviderRouter
from tests.test_images import encode

ZH = "zh-CN"


def refusal(call: object, *args: object, **kwargs: object) -> Text:
    with pytest.raises(UserError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    assert isinstance(caught.value.message, Text), caught.value.message
    return caught.value.message


def test_the_camera_help_lists_the_chinese_names_first_for_a_zh_cn_member() -> None:
    text = camera.help_text()
    assert text == camera.HELP_TEXT  # English as before
    chinese = localise(text, ZH)
    english = localise(text, "en-US")
    assert chinese != english and len(chinese) < 1900
    for move, name in camera.CHINESE_BY_CANONICAL.items():
        assert f"`[{name}]` {move} — " in chinese, move
        assert f"`[{move}]` {name} — " in english, move
    assert "镜头运动" in chinese and "`镜头`" in chinese  # described in Chinese, the option by its zh-CN name
    # The Chinese examples really are camera moves the bot accepts.
    assert camera.normalise_prompt("[左摇,上升] 小船漂流 [左移]，然后 [推进]") == (
        "[Pan left,Pedestal up] 小船漂流 [Truck left]，然后 [Push in]"
    )


def test_an_unknown_camera_move_is_refused_in_chinese_with_its_suggestion() -> None:
    text = refusal(camera.normalise_prompt, "a cat [Pan lefft]")
    assert text == (
        "`[Pan lefft]` is not a camera directive. Did you mean `[Pan left]`? "
        "Use /camera or the autocomplete to see all 15."
    )
    assert (
        localise(text, ZH)
        == "`[Pan lefft]` 不是镜头指令。你是想写 `[Pan left]` 吗？使用 /镜头 或自动补全可查看全部 15 种运镜。"
    )
    other = localise(refusal(camera.normalise_prompt, "see [the note]"), ZH)
    assert other.startswith("`[the note]` 不是镜头指令。方括号专用于镜头运动") and "/镜头" in other


@pytest.mark.parametrize(
    ("prompt", "chinese"),
    [
        ("[Pan left [Push in]", "在另一个括号内又开了一个括号"),
        ("Pan left] now", "没有对应的 `[`"),
        ("[Pan left now", "没有闭合"),
        ("a cat []", "空的镜头括号"),
        ("[Pan left,Pan right,Push in,Shake]", "包含 4 个镜头运动，但最多只能同时进行 3 个"),
    ],
)
def test_every_camera_bracket_refusal_has_a_chinese_form(prompt: str, chinese: str) -> None:
    assert chinese in localise(refusal(camera.normalise_prompt, prompt), ZH)


def test_prompt_and_option_refusals_in_chinese() -> None:
    empty = localise(refusal(validate_prompt, "  ", required=True), ZH)
    assert empty == "提示词为空。请描述视频里要发生什么，例如 `暴风雨之夜的灯塔 [推进]`。"
    assert "2,001 个字符" in localise(refusal(validate_prompt, "a" * 2001, required=True), ZH)
    only_moves = localise(refusal(validate_prompt, "[Push in]", required=True), ZH)
    assert only_moves.startswith("你的提示词只有镜头运动（`[Push in]`）")
    wrong_mode = refusal(validate_combination, "t2v", "fast-pro", 6)
    assert "/video (text to video) does not offer quality `fast-pro`" in wrong_mode  # English unchanged
    zh = localise(wrong_mode, ZH)
    assert zh.startswith("/视频（文字生成视频）不提供画质 `fast-pro`。画质 `fast-pro` 仅适用于 /图生视频")
    assert " 或 " in zh and "秒）" in zh and " or " not in zh
    too_long = localise(refusal(validate_combination, "t2v", "pro", 10), ZH)
    assert too_long.startswith("10 秒的视频仅支持 768P。请选择画质 `standard`（768P，6 或 10 秒）")
    assert (
        localise(refusal(validate_combination, "t2v", "standard", 7), ZH) == "视频时长只能是 6 或 10 秒，不能是 7 秒。"
    )


def test_image_refusals_in_chinese() -> None:
    assert localise(refusal(inspect_image, b""), ZH) == "图片文件为空（0 字节），请重新上传。"
    gif = localise(refusal(inspect_image, encode("GIF", (640, 480))), ZH)
    assert gif.startswith("这个文件看起来是一张 GIF 图片，不是 JPEG、PNG 或 WebP 图片。")
    assert "一个文本文件" in localise(refusal(inspect_image, b"hello, this is not a picture\n" * 4), ZH)
    assert "短边必须大于 300 像素" in localise(refusal(check_rules, 250, 400), ZH)
    assert "比 5:2 更宽" in localise(refusal(check_rules, 1001, 400), ZH)
    assert localise(refusal(check_declared, 0, "empty.jpg"), ZH) == "`empty.jpg` 为空（0 字节），请重新上传图片。"
    assert "`big.jpg` 大小为 25.0 MB，上限为 20 MB" in localise(refusal(check_declared, 25 << 20, "big.jpg"), ZH)


def test_a_refusal_from_a_worker_process_stays_translatable() -> None:
    verdict = check_in_worker(b"GIF89a" + bytes(100), DEFAULT_BUDGET)
    again = pickle.loads(pickle.dumps(verdict))  # what the pool sends back from the worker
    assert isinstance(again.refusal, Text) and again.refusal == verdict.refusal
    assert "一张 GIF 图片" in localise(again.refusal, ZH)


async def test_the_image_pool_refuses_in_the_members_language() -> None:
    checker = ImageChecker()
    try:
        with pytest.raises(UserError) as caught:
            await checker.check(encode("PNG", (250, 400)))
    finally:
        await checker.close()
    assert isinstance(caught.value.message, Text)
    assert localise(caught.value.message, ZH) == "你的图片为 250×400，短边必须大于 300 像素。请上传更大的图片。"


def test_routing_and_dollar_amount_refusals_in_chinese() -> None:
    router = ProviderRouter(providers={})
    spec = GenerationSpec(mode="t2v", quality="pro", duration=6, prompt="a cat")
    nothing = refusal(router.candidates, spec, None)
    assert "text-to-video clips" in nothing
    assert localise(nothing, ZH).endswith("生成文生视频，请换一个模型或画质。")
    assert localise(refusal(parse_usd, "two", what="amount"), ZH) == (
        "`amount` 必须是美元金额，例如 `2.50`（收到的是 `two`）。"
    )
    assert localise(refusal(parse_usd, "2000000", what="user_daily_usd"), ZH) == "`user_daily_usd` 最多为 $1,000,000。"
    assert "小数不能超过 6 位" in localise(refusal(parse_usd, "0.0000001", what="amount"), ZH)
