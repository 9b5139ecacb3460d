"""Prompt validation, quality/duration checks, and making user text safe to show in Discord.

Cleaning (in this order): line breaks are unified to `\\n`; every invisible format character (Unicode
category Cf: zero-width spaces and joiners, bidi controls, the soft hyphen, word joiners, the BOM, tag
characters U+E0000–U+E007F, interlinear annotation marks...) is removed, except a zero-width joiner
between two emoji (it glues 👩‍💻-style sequences and is not a spoofing risk there); variation selectors
are removed too (U+FE00–U+FE0E, U+E0100–U+E01EF: invisible, they can smuggle data past a reader),
except U+FE0F, which asks for an emoji's colour form; blank "filler" letters (the Hangul fillers
U+115F, U+1160, U+3164, U+FFA0, and the blank Braille pattern U+2800) become spaces, so they can never
pass for words; tabs become spaces; every other control character is removed; whitespace-only runs of
3+ line breaks become one blank line; the ends are stripped. Nothing else about the text is changed.
Flags made of tag sequences (England, Scotland, Wales) lose their tags and show as a plain black flag.

The 2000-character limit (upstream, docs/providers/minimax.md §4) is checked on what the provider will receive,
i.e. after cleaning and after camera moves are written canonically (`[左摇]` becomes `[Pan left]`).
A required prompt (text to video) must contain at least one letter or digit outside camera brackets:
camera moves alone say nothing about the scene. For image to video the prompt is optional, so
`[Push in]` alone is fine there.
"""

from __future__ import annotations

import re
import unicodedata

from core import camera
from core.errors import UserError
from core.spec import (
    DURATIONS,
    DURATIONS_BY_RESOLUTION,
    MODEL_HAILUO_23,
    MODEL_LABELS,
    QUALITIES_BY_MODE,
    QUALITIES_BY_MODEL,
    RESOLUTION_BY_QUALITY,
)
from core.text import N_, Text, tr

MAX_PROMPT_CHARS = 2000
EXAMPLE = N_("`A lighthouse in a storm at night [Push in]`")

_VARIATION_SELECTORS = frozenset([*range(0xFE00, 0xFE0F), *range(0xE0100, 0xE01F0)])  # not U+FE0F
_FILLERS = frozenset([0x115F, 0x1160, 0x3164, 0xFFA0, 0x2800])  # letters (or a symbol) that draw nothing
_ZWJ = "\u200d"
_LINE_BREAKS = re.compile(r"\r\n|[\r\x85\u2028\u2029]")
_BLANK_RUN = re.compile(r"\n(?:[^\S\n]*\n){2,}")  # 3+ line breaks with only spaces between them
_GROUP = re.compile(r"\[[^\]]*\]")  # after normalisation every group is plain [...]
_COMMANDS = {"t2v": N_("/video (text to video)"), "i2v": N_("/animate (image to video)")}


# ----- prompt -------------------------------------------------------------------------------------------


def _is_emoji_part(char: str) -> bool:
    # So = emoji and other symbols, Sk = skin-tone modifiers; FE0F selects the emoji presentation.
    return char == "\ufe0f" or unicodedata.category(char) in ("So", "Sk")


def _keep(text: str, index: int, out: list[str]) -> bool:
    char = text[index]
    category = unicodedata.category(char)
    if category == "Cf":
        following = text[index + 1] if index + 1 < len(text) else ""
        return char == _ZWJ and bool(out) and _is_emoji_part(out[-1]) and bool(following) and _is_emoji_part(following)
    return (char == "\n" or category != "Cc") and ord(char) not in _VARIATION_SELECTORS


def clean(raw: str) -> str:
    """The cleaning steps from the module docstring, without any length or content rule."""
    text = _LINE_BREAKS.sub("\n", raw).replace("\t", " ")
    out: list[str] = []
    for index in range(len(text)):
        if ord(text[index]) in _FILLERS:
            out.append(" ")
        elif _keep(text, index, out):
            out.append(text[index])
    return _BLANK_RUN.sub("\n\n", "".join(out)).strip()


def _too_long(count: int, *, expanded: bool) -> UserError:
    numbers = {"count": count, "limit": MAX_PROMPT_CHARS, "over": count - MAX_PROMPT_CHARS}
    if expanded:
        return UserError(
            tr(
                "Your prompt has {count:,} characters once camera moves are written in their standard English "
                "form; the limit is {limit:,}. Shorten it by {over:,} characters.",
                **numbers,
            )
        )
    return UserError(
        tr(
            "Your prompt has {count:,} characters; the limit is {limit:,}. Shorten it by {over:,} characters.",
            **numbers,
        )
    )


def _has_words(text: str) -> bool:
    return any(char.isalnum() for char in _GROUP.sub(" ", text))


def with_camera(prompt: str | None, moves: str | None) -> str | None:
    """The commands' `camera` option (and `--camera`) is a convenience: its moves become a bracket at the
    start of the prompt, then checked like any camera bracket."""
    if not moves:
        return prompt
    return f"[{moves}] {prompt or ''}".strip()


def validate_prompt(raw: str | None, *, required: bool, chinese_directives: bool = False) -> str:
    """The cleaned prompt with camera moves normalised, or UserError saying what to change.

    `required` is True for text to video. An optional, empty prompt comes back as ""."""
    text = clean(raw or "")
    if not text:
        if required:
            raise UserError(
                tr(
                    "The prompt is empty. Describe what should happen in the video, e.g. {example}.",
                    example=tr(EXAMPLE),
                )
            )
        return ""
    if len(text) > MAX_PROMPT_CHARS:
        raise _too_long(len(text), expanded=False)
    text = camera.normalise_prompt(text, chinese=chinese_directives)
    if len(text) > MAX_PROMPT_CHARS:
        raise _too_long(len(text), expanded=True)
    if required and not _has_words(text):
        moves = " ".join(f"`{group}`" for group in _GROUP.findall(text))
        if moves:
            raise UserError(
                tr(
                    "Your prompt only has camera moves ({moves}) and no description. Add what should happen, "
                    "e.g. {example}. (Camera moves alone are enough only when you animate an image.)",
                    moves=moves,
                    example=tr(EXAMPLE),
                )
            )
        raise UserError(
            tr(
                "Your prompt has no words. Describe what should happen in the video, e.g. {example}.",
                example=tr(EXAMPLE),
            )
        )
    return text


# ----- quality and duration ---------------------------------------------------------------------------


def _either(items: list[str]) -> str:
    """`a`, `a or b`, `a, b or c`: a Text (built from templates, so each language joins its own way) when
    there is more than one item."""
    if len(items) == 1:
        return items[0]
    if len(items) == 2:
        return tr("{first} or {last}", first=items[0], last=items[1])
    return tr("{first}, {rest}", first=items[0], rest=_either(items[1:]))


def _describe(quality: str) -> Text:
    resolution = RESOLUTION_BY_QUALITY[quality]
    seconds = _either([str(d) for d in DURATIONS_BY_RESOLUTION[resolution]])
    return tr("`{quality}` ({resolution}, {seconds} s)", quality=quality, resolution=resolution, seconds=seconds)


def _same_tier(quality: str, allowed: list[str]) -> str:
    """The alternative closest to what was asked: fast-pro → fast, pro → standard."""
    tier = "fast" if quality.startswith("fast") else "standard"
    return tier if tier in allowed else allowed[0]


def validate_combination(mode: str, quality: str, duration: int, model: str = MODEL_HAILUO_23) -> None:
    """Refuse a quality the model and mode do not offer, or a duration its resolution does not allow."""
    if mode not in QUALITIES_BY_MODE:
        raise UserError(
            tr("Unknown mode `{mode}`; expected one of {modes}.", mode=mode, modes=", ".join(QUALITIES_BY_MODE))
        )
    if model not in QUALITIES_BY_MODEL:
        raise UserError(
            tr("Unknown model `{model}`; choose {models}.", model=model[:30], models=_either(list(QUALITIES_BY_MODEL)))
        )
    qualities = QUALITIES_BY_MODEL[model][mode]
    offered = _either([_describe(q) for q in qualities])
    if quality in QUALITIES_BY_MODE[mode] and quality not in qualities:
        raise UserError(
            tr(
                "{model} does not offer quality `{quality}`. Choose {offered}.",
                model=MODEL_LABELS[model],
                quality=quality,
                offered=offered,
            )
        )
    if quality not in qualities:
        elsewhere = [m for m, qs in QUALITIES_BY_MODE.items() if quality in qs]
        shown = quality.replace("`", "'")[:30]  # echoed inside a code span
        if elsewhere:
            raise UserError(
                tr(
                    "{command} does not offer quality `{quality}`. Quality `{quality}` is only for {other}. "
                    "Choose {offered}.",
                    command=tr(_COMMANDS[mode]),
                    quality=shown,
                    other=tr(_COMMANDS[elsewhere[0]]),
                    offered=offered,
                )
            )
        raise UserError(
            tr(
                "{command} does not offer quality `{quality}`. Choose {offered}.",
                command=tr(_COMMANDS[mode]),
                quality=shown,
                offered=offered,
            )
        )
    if duration not in DURATIONS:
        raise UserError(
            tr(
                "A clip can be {durations} seconds long, not {duration}.",
                durations=_either([str(d) for d in DURATIONS]),
                duration=duration,
            )
        )
    resolution = RESOLUTION_BY_QUALITY[quality]
    if duration in DURATIONS_BY_RESOLUTION[resolution]:
        return
    allowed = [q for q in qualities if duration in DURATIONS_BY_RESOLUTION[RESOLUTION_BY_QUALITY[q]]]
    keep = _either([str(d) for d in DURATIONS_BY_RESOLUTION[resolution]])
    if not allowed:
        raise UserError(
            tr(
                "{duration}-second clips are only available at no resolution. "
                "Keep `{quality}` ({resolution}) with {keep} seconds.",
                duration=duration,
                quality=quality,
                resolution=resolution,
                keep=keep,
            )
        )
    raise UserError(
        tr(
            "{duration}-second clips are only available at {at}. Choose quality {suggested} "
            "or keep `{quality}` ({resolution}) with {keep} seconds.",
            duration=duration,
            at=_either(sorted({RESOLUTION_BY_QUALITY[q] for q in allowed})),
            suggested=_describe(_same_tier(quality, allowed)),
            quality=quality,
            resolution=resolution,
            keep=keep,
        )
    )


# ----- display ------------------------------------------------------------------------------------------

_ALWAYS_ESCAPED = frozenset("\\*_~|`[]()")
_LINE_MARKERS = re.compile(r"(?m)^[ \t]*([#>-])")  # headings, quotes, lists, -# subtext: only at line start
_ORDERED_LIST = re.compile(r"(?m)^[ \t]*\d+(\.)(?=[ \t])")  # "1. item"
_MASS_MENTION = re.compile(r"@(?=everyone|here)", re.IGNORECASE)
_ANGLE_MENTION = re.compile(r"<(?=[@#/:]|a:|t:|id:)")  # users, roles, channels, commands, emoji, timestamps
_ZWSP = "\u200b"


def _units(text: str) -> list[str]:
    """The escaped text as indivisible pieces, so truncation never splits an escape from its character."""
    escape_at = {m.start(1) for m in _LINE_MARKERS.finditer(text)} | {m.start(1) for m in _ORDERED_LIST.finditer(text)}
    break_after = {m.start() for m in _MASS_MENTION.finditer(text)} | {m.start() for m in _ANGLE_MENTION.finditer(text)}
    units: list[str] = []
    for index, char in enumerate(text):
        unit = "\\" + char if char in _ALWAYS_ESCAPED or index in escape_at else char
        units.append(unit + _ZWSP if index in break_after else unit)
    return units


def display_safe(text: str, limit: int) -> str:
    """`text` with Discord markdown escaped and mentions broken, at most `limit` characters (… if cut).

    Defence in depth: messages are also sent with allowed_mentions=none."""
    units = _units(text)
    if sum(len(unit) for unit in units) <= limit:
        return "".join(units)
    kept: list[str] = []
    budget = limit - 1  # room for the ellipsis
    for unit in units:
        if len(unit) > budget:
            break
        kept.append(unit)
        budget -= len(unit)
    return "".join(kept).rstrip() + "…"
