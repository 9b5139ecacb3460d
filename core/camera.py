"""Camera directives: the 15 bracketed moves Hailuo understands, parsed and written canonically.

Syntax (docs/providers/minimax.md §6): `[Pan left]` anywhere in a prompt; up to 3 moves in one bracket happen at
once (`[Pan left,Pedestal up]`); separate brackets happen one after another.

What we accept from users, and rewrite to the canonical form before it reaches a provider:
- any letter case and extra spaces (`[ pUsH   In ]`); `-` or `_` in place of a space (`[push-in]`);
- separators `,` (ASCII), `，` (full-width) and `、` (ideographic); empty items are ignored (`[Pan left,]`);
- brackets `[]`, full-width `［］` and `【】`, mixed freely;
- the Chinese names (`[左摇]`), which the Chinese docs use; the mapping is by category order and is
  UNCONFIRMED as an official 1:1 table (docs/providers/minimax.md §6);
- a move repeated in one bracket counts once (`[Shake, shake]` → `[Shake]`).

Canonical output is `[Pan left,Pedestal up]`: English names in the documented case, a comma without a
space, as in the official example; with `chinese=True` the same with the Chinese names
(`[左摇,上升]`, ASCII comma) for providers that want those.

Rule for brackets that are not camera moves: every `[...]` group is a directive group, because the
provider parses it as one, so `[a note]` or a markdown link `[text](url)` is refused with a suggestion
(and a hint to use parentheses) rather than sent on to be misread or silently ignored.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from core.errors import UserError
from core.text import N_, Text, tr

CANONICAL: tuple[str, ...] = (
    "Truck left",
    "Truck right",
    "Pan left",
    "Pan right",
    "Push in",
    "Pull out",
    "Pedestal up",
    "Pedestal down",
    "Tilt up",
    "Tilt down",
    "Zoom in",
    "Zoom out",
    "Shake",
    "Tracking shot",
    "Static shot",
)
_CHINESE: tuple[str, ...] = (
    "左移",
    "右移",
    "左摇",
    "右摇",
    "推进",
    "拉远",
    "上升",
    "下降",
    "上摇",
    "下摇",
    "变焦推近",
    "变焦拉远",
    "晃动",
    "跟随",
    "固定",
)
CHINESE_BY_CANONICAL: dict[str, str] = dict(zip(CANONICAL, _CHINESE, strict=True))

MAX_PER_GROUP = 3  # "recommended ≤ 3" upstream; resellers enforce it, so we do too
OPENERS = "[［【"
CLOSERS = "]］】"
SEPARATORS = ",，、"
_HELP_HINT = N_("Use /camera or the autocomplete to see all 15.")

# Lookup key -> canonical name. English keys are case-folded with single spaces; Chinese keys have no spaces.
_LOOKUP: dict[str, str] = {name.casefold(): name for name in CANONICAL} | {
    chinese: name for name, chinese in CHINESE_BY_CANONICAL.items()
}

# One message, so a translation can put the Chinese names first and describe the moves in its language.
HELP_TEXT = N_(
    "**Camera moves** — write them in square brackets anywhere in your prompt.\n"
    "`[Truck left]` 左移 — the camera slides left\n"
    "`[Truck right]` 右移 — slides right\n"
    "`[Pan left]` 左摇 — turns left on the spot\n"
    "`[Pan right]` 右摇 — turns right on the spot\n"
    "`[Push in]` 推进 — moves closer\n"
    "`[Pull out]` 拉远 — moves back\n"
    "`[Pedestal up]` 上升 — rises straight up\n"
    "`[Pedestal down]` 下降 — lowers straight down\n"
    "`[Tilt up]` 上摇 — tilts to look up\n"
    "`[Tilt down]` 下摇 — tilts to look down\n"
    "`[Zoom in]` 变焦推近 — the lens zooms in\n"
    "`[Zoom out]` 变焦拉远 — the lens zooms out\n"
    "`[Shake]` 晃动 — handheld shake\n"
    "`[Tracking shot]` 跟随 — follows the subject\n"
    "`[Static shot]` 固定 — the camera holds still\n"
    "\n"
    "**How to write them**\n"
    "• Up to 3 moves in one bracket happen at once: `[Pan left, Pedestal up]`\n"
    "• Separate brackets happen in order: `A boat drifts [Truck left], then [Push in]`\n"
    "• Any letter case; separate with `,` `，` or `、`; 【】 and the Chinese names work too\n"
    "• Every `[...]` is read as camera moves, so use ( ) for anything else\n"
    "• Or pick moves with the `camera` option: start typing to see them"
)


def help_text() -> Text:
    """What /camera shows: every move with both names, and how to write them (render it for the member)."""
    return tr(HELP_TEXT)


@dataclass(frozen=True)
class _Group:
    start: int  # index of the opening bracket
    end: int  # index just past the closing bracket
    moves: tuple[str, ...]  # canonical English, in the user's order


def _quote(text: str, limit: int = 40, *, keep_end: bool = False) -> str:
    """User text made safe to show inside a `code span` of an error message (no backticks, one line)."""
    flat = " ".join(text.replace("`", "'").split())
    if len(flat) <= limit:
        return flat
    return "…" + flat[1 - limit :] if keep_end else flat[: limit - 1] + "…"


def _key(item: str) -> str:
    return " ".join(item.replace("-", " ").replace("_", " ").split()).casefold()


def _lookup(item: str) -> str | None:
    key = _key(item)
    return _LOOKUP.get(key) or _LOOKUP.get(key.replace(" ", ""))


def _closest(item: str) -> str | None:
    """The nearest valid spelling, shown as the user would write it (Chinese if they wrote Chinese)."""
    key = _key(item)
    match = difflib.get_close_matches(key, list(_LOOKUP), n=1, cutoff=0.6)
    if not match:
        return None
    name = _LOOKUP[match[0]]
    return f"`[{match[0]}]` ({name})" if match[0] in _CHINESE else f"`[{name}]`"


def _unknown(item: str) -> UserError:
    shown, hint = _quote(item), tr(_HELP_HINT)
    closest = _closest(item)
    if closest:
        return UserError(
            tr(
                "`[{shown}]` is not a camera directive. Did you mean {closest}? {hint}",
                shown=shown,
                closest=closest,
                hint=hint,
            )
        )
    return UserError(
        tr(
            "`[{shown}]` is not a camera directive. Square brackets are reserved for camera moves such as "
            "`[Pan left]` or `[Push in]`; use ( ) for other text. {hint}",
            shown=shown,
            hint=hint,
        )
    )


def _spans(prompt: str) -> list[tuple[int, int]]:
    """(start, end) of every bracket group; raises on unbalanced or nested brackets."""
    spans: list[tuple[int, int]] = []
    open_at: int | None = None
    for index, char in enumerate(prompt):
        if char in OPENERS:
            if open_at is not None:
                shown = _quote(prompt[open_at : index + 1], keep_end=True)
                raise UserError(
                    tr(
                        "A `{bracket}` at character {position} opens a bracket inside another one (`{shown}`). "
                        "Close each camera bracket before the next, e.g. `[Pan left] … [Push in]`.",
                        bracket=char,
                        position=index + 1,
                        shown=shown,
                    )
                )
            open_at = index
        elif char in CLOSERS:
            if open_at is None:
                shown = _quote(prompt[max(index - 20, 0) : index + 1], keep_end=True)
                raise UserError(
                    tr(
                        "There is a `{bracket}` at character {position} without a matching `[` (`{shown}`). "
                        "Camera moves are written like `[Pan left]`; remove the stray bracket.",
                        bracket=char,
                        position=index + 1,
                        shown=shown,
                    )
                )
            spans.append((open_at, index + 1))
            open_at = None
    if open_at is not None:
        raise UserError(
            tr(
                "The `{bracket}` at character {position} is never closed (`{shown}`). "
                "Close it with `]`, e.g. `[Pan left]`.",
                bracket=prompt[open_at],
                position=open_at + 1,
                shown=_quote(prompt[open_at : open_at + 20]),
            )
        )
    return spans


def _split(inner: str) -> list[str]:
    for separator in SEPARATORS[1:]:
        inner = inner.replace(separator, SEPARATORS[0])
    return [item for item in (part.strip() for part in inner.split(SEPARATORS[0])) if item]


def _parse_group(inner: str) -> tuple[str, ...]:
    items = _split(inner)
    if not items:
        raise UserError(
            tr("There is an empty camera bracket `[]`. Put a move inside, e.g. `[Push in]`, or remove the brackets.")
        )
    moves: list[str] = []
    for item in items:
        name = _lookup(item)
        if name is None:
            raise _unknown(item)
        if name not in moves:
            moves.append(name)
    if len(moves) > MAX_PER_GROUP:
        raise UserError(
            tr(
                "`[{moves}]` has {count} camera moves; at most {most} can happen at once. Split them into separate "
                "brackets to make them happen one after another, e.g. `[{first}] … [{then}]`.",
                moves=",".join(moves),
                count=len(moves),
                most=MAX_PER_GROUP,
                first=",".join(moves[:2]),
                then=",".join(moves[2:4]),
            )
        )
    return tuple(moves)


def _groups(prompt: str) -> list[_Group]:
    return [_Group(start, end, _parse_group(prompt[start + 1 : end - 1])) for start, end in _spans(prompt)]


def parse_directives(prompt: str) -> list[list[str]]:
    """Each bracket group's moves, canonical English, in prompt order. Raises UserError like normalise_prompt."""
    return [list(group.moves) for group in _groups(prompt)]


def camera_moves(prompt: str) -> list[str]:
    """All moves in prompt order, flattened (for the preview renderer's animation)."""
    return [move for group in _groups(prompt) for move in group.moves]


def format_group(moves: tuple[str, ...] | list[str], *, chinese: bool = False) -> str:
    names = [CHINESE_BY_CANONICAL[move] for move in moves] if chinese else list(moves)
    return "[" + ",".join(names) + "]"


def normalise_prompt(prompt: str, *, chinese: bool = False) -> str:
    """The prompt with every bracket group rewritten canonically; text outside brackets is untouched.

    Raises UserError for an unknown move (with the closest valid one), more than 3 moves in one bracket,
    an empty bracket, and unbalanced or nested brackets."""
    parts: list[str] = []
    cursor = 0
    for group in _groups(prompt):
        parts.append(prompt[cursor : group.start])
        parts.append(format_group(group.moves, chinese=chinese))
        cursor = group.end
    parts.append(prompt[cursor:])
    return "".join(parts)


def suggest(partial: str, limit: int = 25) -> list[str]:
    """Canonical names for autocomplete: prefix matches first, then substring, then near misses.

    Matches the English (any case) and the Chinese names; always answers with the English name, which is
    what the option inserts into the prompt."""
    key = _key(partial)
    if not key:
        return list(CANONICAL[:limit])
    compact = key.replace(" ", "")

    def names_for(test: str) -> list[str]:
        return [name for name in CANONICAL if _matches(name, key, compact, test)]

    found: list[str] = []
    for name in [*names_for("prefix"), *names_for("substring")]:
        if name not in found:
            found.append(name)
    if not found:  # typo tolerance: "pann" still offers Pan left
        close = difflib.get_close_matches(key, list(_LOOKUP), n=limit, cutoff=0.5)
        found = list(dict.fromkeys(_LOOKUP[match] for match in close))
    return found[:limit]


def _matches(name: str, key: str, compact: str, test: str) -> bool:
    english, chinese = name.casefold(), CHINESE_BY_CANONICAL[name]
    if test == "prefix":
        return english.startswith(key) or chinese.startswith(compact)
    return key in english or compact in chinese
