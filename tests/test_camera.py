"""Camera directives: parsing, canonical rewriting, refusals with suggestions, autocomplete, help."""

from __future__ import annotations

import pytest

from core import camera
from core.errors import UserError


def test_fifteen_canonical_moves_with_chinese_forms_in_the_documented_order() -> None:
    assert len(camera.CANONICAL) == 15
    assert len(set(camera.CANONICAL)) == 15
    assert list(camera.CHINESE_BY_CANONICAL) == list(camera.CANONICAL)
    assert camera.CHINESE_BY_CANONICAL["Truck left"] == "左移"
    assert camera.CHINESE_BY_CANONICAL["Pan left"] == "左摇"
    assert camera.CHINESE_BY_CANONICAL["Pedestal up"] == "上升"
    assert camera.CHINESE_BY_CANONICAL["Zoom out"] == "变焦拉远"
    assert camera.CHINESE_BY_CANONICAL["Static shot"] == "固定"


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        pytest.param("A cat [Pan left]", "A cat [Pan left]", id="already-canonical"),
        pytest.param("[pUsH In] a ship", "[Push in] a ship", id="mixed-case"),
        pytest.param("[  zoom    OUT ]", "[Zoom out]", id="extra-spaces"),
        pytest.param("[Pan left, Pedestal up]", "[Pan left,Pedestal up]", id="comma-space-removed"),
        pytest.param("[左摇，上升]", "[Pan left,Pedestal up]", id="chinese-fullwidth-comma"),
        pytest.param("[推进、晃动]", "[Push in,Shake]", id="ideographic-comma"),
        pytest.param("【tracking shot】", "[Tracking shot]", id="lenticular-brackets"),
        pytest.param("［static shot］", "[Static shot]", id="fullwidth-square-brackets"),
        pytest.param("[push-in]", "[Push in]", id="hyphen-for-space"),
        pytest.param("[Shake, shake]", "[Shake]", id="duplicate-counted-once"),
        pytest.param("[Pan left,]", "[Pan left]", id="trailing-separator-ignored"),
        pytest.param("[变焦推近,Tilt down,固定]", "[Zoom in,Tilt down,Static shot]", id="three-mixed-languages"),
        pytest.param(
            "A man picks up a book [pedestal UP], then reads [static shot].",
            "A man picks up a book [Pedestal up], then reads [Static shot].",
            id="sequential-groups-text-untouched",
        ),
        pytest.param("no camera moves here", "no camera moves here", id="no-brackets"),
    ],
)
def test_normalise_rewrites_groups_canonically(prompt: str, expected: str) -> None:
    assert camera.normalise_prompt(prompt) == expected


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        pytest.param("[左摇，上升]", "[左摇,上升]", id="chinese-stays-chinese"),
        pytest.param("[Pan left,Pedestal up]", "[左摇,上升]", id="english-to-chinese"),
        pytest.param("go [zoom out] now", "go [变焦拉远] now", id="inside-text"),
    ],
)
def test_normalise_to_chinese_forms(prompt: str, expected: str) -> None:
    assert camera.normalise_prompt(prompt, chinese=True) == expected


@pytest.mark.parametrize("move", camera.CANONICAL)
def test_every_move_round_trips_through_chinese(move: str) -> None:
    chinese = camera.normalise_prompt(f"[{move.upper()}]", chinese=True)
    assert chinese == f"[{camera.CHINESE_BY_CANONICAL[move]}]"
    assert camera.normalise_prompt(chinese) == f"[{move}]"


@pytest.mark.parametrize(
    ("prompt", "fragments"),
    [
        pytest.param(
            "[pan lefft]",
            ["`[pan lefft]` is not a camera directive", "Did you mean `[Pan left]`?", "/camera"],
            id="typo",
        ),
        pytest.param("[static]", ["Did you mean `[Static shot]`?"], id="partial-name"),
        pytest.param("[Push in, zom out]", ["`[zom out]`", "Did you mean `[Zoom out]`?"], id="typo-second-item"),
        pytest.param(
            "[左摇摇]", ["`[左摇摇]`", "Did you mean `[左摇]` (Pan left)?"], id="chinese-typo-suggests-chinese"
        ),
        pytest.param(
            "[hello world]", ["`[hello world]` is not a camera directive", "use ( ) for other text"], id="not-a-move"
        ),
        pytest.param("see [docs](https://x.y)", ["`[docs]` is not a camera directive"], id="markdown-link"),
        pytest.param("[a,b,c,d]", ["`[a]` is not a camera directive"], id="four-unknown-names-first"),
        pytest.param("[Pan left,Pan right,Push in,Shake]", ["has 4 camera moves", "at most 3"], id="more-than-three"),
        pytest.param("[]", ["empty camera bracket"], id="empty"),
        pytest.param("a [ , 、 ] b", ["empty camera bracket"], id="only-separators"),
        pytest.param("[Pan left", ["never closed", "character 1"], id="unclosed"),
        pytest.param("A cat ]", ["`]` at character 7 without a matching `[`"], id="stray-closer"),
        pytest.param("]", ["without a matching"], id="lone-closer"),
        pytest.param("[[Pan left]]", ["inside another one"], id="nested"),
        pytest.param("【Pan left", ["never closed"], id="unclosed-fullwidth"),
    ],
)
def test_malformed_directives_are_refused_with_a_helpful_message(prompt: str, fragments: list[str]) -> None:
    with pytest.raises(UserError) as caught:
        camera.normalise_prompt(prompt)
    for fragment in fragments:
        assert fragment in caught.value.message


def test_refusal_does_not_echo_backticks_that_would_break_formatting() -> None:
    with pytest.raises(UserError) as caught:
        camera.normalise_prompt("[`oops` @everyone]")
    assert caught.value.message.count("`") % 2 == 0
    assert "`oops`" not in caught.value.message


def test_exactly_three_moves_in_one_bracket_is_allowed() -> None:
    assert camera.normalise_prompt("[Pan left, Push in, Shake]") == "[Pan left,Push in,Shake]"


def test_parse_directives_returns_groups_in_order() -> None:
    prompt = "A [pan left, 上升] then [Shake] and [static shot]"
    assert camera.parse_directives(prompt) == [["Pan left", "Pedestal up"], ["Shake"], ["Static shot"]]


def test_camera_moves_flattens_in_prompt_order() -> None:
    assert camera.camera_moves("[Push in] x [Pan left,Tilt up]") == ["Push in", "Pan left", "Tilt up"]
    assert camera.camera_moves("no moves") == []


def test_parse_directives_raises_like_normalise() -> None:
    with pytest.raises(UserError):
        camera.parse_directives("[Pan sideways]")


@pytest.mark.parametrize(
    ("partial", "expected_start"),
    [
        pytest.param("", list(camera.CANONICAL), id="empty-lists-all"),
        pytest.param("pa", ["Pan left", "Pan right"], id="prefix"),
        pytest.param("PUSH", ["Push in"], id="case-insensitive"),
        pytest.param("left", ["Truck left", "Pan left"], id="substring"),
        pytest.param(
            "p", ["Pan left", "Pan right", "Push in", "Pull out", "Pedestal up", "Pedestal down"], id="prefix-first"
        ),
        pytest.param("左", ["Truck left", "Pan left"], id="chinese-prefix"),
        pytest.param("变焦", ["Zoom in", "Zoom out"], id="chinese-two-chars"),
        pytest.param("pann", ["Pan left"], id="typo-tolerant"),
    ],
)
def test_suggest_for_autocomplete(partial: str, expected_start: list[str]) -> None:
    assert camera.suggest(partial)[: len(expected_start)] == expected_start


def test_suggest_puts_prefix_matches_before_substring_matches() -> None:
    # "t": Truck/Tilt/Tracking start with it; "Static shot" and others only contain it.
    result = camera.suggest("t")
    prefix = [name for name in result if name.casefold().startswith("t")]
    assert result[: len(prefix)] == prefix
    assert "Static shot" in result[len(prefix) :]


def test_suggest_respects_limit_and_never_returns_nonsense() -> None:
    assert len(camera.suggest("", limit=5)) == 5
    assert camera.suggest("xyzzy") == []


def test_help_text_lists_every_move_and_fits_a_discord_message() -> None:
    assert len(camera.HELP_TEXT) < 1900
    for move, chinese in camera.CHINESE_BY_CANONICAL.items():
        assert f"[{move}]" in camera.HELP_TEXT
        assert chinese in camera.HELP_TEXT
    assert "3" in camera.HELP_TEXT  # the per-bracket limit is explained


def test_nested_bracket_message_shows_where_the_second_bracket_is() -> None:
    with pytest.raises(UserError) as caught:
        camera.normalise_prompt("[Pan left and a very long description of the scene [Push in]")
    assert "scene [`" in caught.value.message
