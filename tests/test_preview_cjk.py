"""The preview renderer draws Chinese prompts as characters, not empty boxes: with a font that lacks them,
every CJK character is the same box, so two different prompts would render alike."""

from __future__ import annotations

import os

import pytest

from providers.preview_render import load_font, render_card

NEEDS_FONT = "no CJK font: scripts/setup.sh installs fonts-wqy-microhei when it runs as root"


@pytest.fixture(autouse=True)
def cjk_font_installed() -> None:
    glyphs = load_font(40)
    if bytes(glyphs.getmask("灯塔")) == bytes(glyphs.getmask("风雨")):
        if os.geteuid() == 0:  # the setup could install it (as in CI): its absence is a failure
            pytest.fail(NEEDS_FONT)
        pytest.skip(NEEDS_FONT)


def test_different_chinese_prompts_render_differently() -> None:
    size = (640, 360)
    lighthouse = render_card("暴风雨中的灯塔 [推进]", [["Push in"]], size)
    boat = render_card("河上的纸船", [], size)
    assert lighthouse.tobytes() != boat.tobytes()


def test_a_long_chinese_prompt_without_spaces_wraps_inside_the_card() -> None:
    card = render_card("一只红狐狸在雪地里奔跑" * 30, [], (640, 360))
    assert card.size == (640, 360)
