"""The options of /video and /animate: their choices, the checks that need no I/O, and the `camera`
autocomplete. Pure apart from discord.py's option types."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, cast

from discord import app_commands

from core import camera
from core.defaults import NOTIFY_CHOICES, Chosen, MemberDefaults, Merged, merge
from core.errors import UserError
from core.spec import MODEL_LABELS, GenerationSpec, Mode, Quality
from services.prompts import validate_combination, validate_prompt

QUALITY_T2V = [
    app_commands.Choice(name="standard — 768P", value="standard"),
    app_commands.Choice(name="pro — 1080P (6 s only)", value="pro"),
]
QUALITY_I2V = [
    *QUALITY_T2V,
    app_commands.Choice(name="fast — 768P, cheaper", value="fast"),
    app_commands.Choice(name="fast-pro — 1080P, cheaper (6 s only)", value="fast-pro"),
]
DURATIONS = [
    app_commands.Choice(name="6 seconds", value=6),
    app_commands.Choice(name="10 seconds (768P only)", value=10),
]
MODELS = [app_commands.Choice(name=label, value=model) for model, label in MODEL_LABELS.items()]
NOTIFY = [app_commands.Choice(name=value, value=value) for value in NOTIFY_CHOICES]


@dataclass(frozen=True)
class Options:
    """The common options of /video and /animate, as the user chose them (None: left out)."""

    quality: app_commands.Choice[str] | None
    duration: app_commands.Choice[int] | None
    model: app_commands.Choice[str] | None
    optimize_prompt: bool | None = None

    def chosen(self) -> Chosen:
        return Chosen(
            quality=self.quality.value if self.quality else None,
            duration=self.duration.value if self.duration else None,
            model=self.model.value if self.model else None,
            optimize_prompt=self.optimize_prompt,
        )

    def merged(self, mode: Mode, defaults: MemberDefaults, served_models: Collection[str]) -> Merged:
        """These options, with what was left out filled from the member's defaults (`core.defaults.merge`)."""
        return merge(mode, self.chosen(), defaults, served_models)

    def spec(self, mode: Mode, prompt: str | None, *, required: bool, merged: Merged | None = None) -> GenerationSpec:
        """Checks that need no I/O: the combination, then the prompt. `merged`: the options with the
        member's defaults applied (without it, what was left out takes the built-in defaults)."""
        merged = merged or self.merged(mode, MemberDefaults(), ())
        validate_combination(mode, merged.quality, merged.duration, merged.model)  # so it is one of `Quality`
        return GenerationSpec(
            mode=mode,
            quality=cast(Quality, merged.quality),
            duration=merged.duration,
            prompt=validate_prompt(prompt, required=required),
            optimize_prompt=merged.optimize_prompt,
            model=merged.model,
        )


def offer_only_what_is_served(
    commands: Sequence[app_commands.Command[Any, ..., Any]],
    with_end_image: app_commands.Command[Any, ..., Any],
    models: Sequence[str],
    end_frames: bool,
) -> None:
    """Trim the commands to what the configured providers can make: the `model` option lists only
    served models (and disappears when there is one), `end_image` disappears when no provider takes
    end frames. discord.py builds the options from these parameters when the tree is synced."""
    for command in commands:
        params = command._params  # no public API edits option choices after definition
        if len(models) <= 1:
            params.pop("model", None)
        else:
            served = [choice for choice in MODELS if choice.value in models]
            params["model"].choices = cast(list[app_commands.Choice[str | int | float]], served)
    if not end_frames:
        with_end_image._params.pop("end_image", None)


def suggest_moves(current: str, limit: int = 25) -> list[str]:
    """Autocomplete for the `camera` option: complete the last of the comma-separated moves.

    Only known moves are echoed back (unknown text is dropped), so every choice stays within
    Discord's 100 characters: three moves are at most 45."""
    *typed, last = current[:200].split(",")
    done = [move for move in map(_canonical_move, typed) if move is not None][:3]
    if len(done) == 3:
        return [", ".join(done)]
    return [", ".join([*done, move]) for move in camera.suggest(last.strip(), limit) if move not in done][:limit]


def _canonical_move(text: str) -> str | None:
    try:
        return camera.parse_directives(f"[{text}]")[0][0]
    except (UserError, IndexError):
        return None
