"""A member's personal defaults (/settings), the store behind them, and how they merge into a request.

Defaults are per member (Discord user id), the same in every server and in DMs. They are plain values
(strings, ints, a bool); the commands fill an option the member left out from them, and an explicit
option always wins. A default this server cannot serve (a model its providers do not make, a quality
the mode or model lacks, a duration the resolution lacks) falls back to the built-in default with a
note: never an error. `notify` (off, channel, dm) is read when a job ends, by cogs.notify.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields
from typing import Literal, Protocol

from core.spec import (
    DURATIONS,
    DURATIONS_BY_RESOLUTION,
    MODEL_HAILUO_23,
    MODEL_LABELS,
    QUALITIES_BY_MODE,
    QUALITIES_BY_MODEL,
    RESOLUTION_BY_QUALITY,
    Mode,
)
from core.text import Text, tr

Notify = Literal["off", "channel", "dm"]
NOTIFY_CHOICES: tuple[str, ...] = ("off", "channel", "dm")
QUALITIES: tuple[str, ...] = QUALITIES_BY_MODE["i2v"]  # every quality some command offers
FIELDS: tuple[str, ...] = ("quality", "duration", "model", "optimize_prompt", "notify")

# What a command uses when neither the member nor their defaults chose (as before /settings existed).
BUILT_IN_QUALITY = "standard"
BUILT_IN_DURATION = 6
BUILT_IN_MODEL = MODEL_HAILUO_23
BUILT_IN_OPTIMIZE = True


@dataclass(frozen=True)
class MemberDefaults:
    """What a member set; None: not set (the built-in default applies)."""

    quality: str | None = None
    duration: int | None = None
    model: str | None = None
    optimize_prompt: bool | None = None
    notify: str | None = None

    @property
    def empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


class DefaultsStore(Protocol):
    async def get(self, user_id: int) -> MemberDefaults:
        """The member's defaults (all None when they never set any)."""
        ...

    async def update(self, user_id: int, values: Mapping[str, object], clear: Collection[str] = ()) -> MemberDefaults:
        """Clear the `clear` fields, then set `values` (field -> value), in one transaction; returns the result."""
        ...


def check_value(name: str, value: object) -> None:
    """Raise ValueError unless `value` is one the commands accept for `name` (so nothing invalid is stored)."""
    allowed: Collection[object] = {
        "quality": QUALITIES,
        "duration": DURATIONS,
        "model": tuple(MODEL_LABELS),
        "optimize_prompt": (True, False),
        "notify": NOTIFY_CHOICES,
    }.get(name, ())
    if name not in FIELDS or value not in allowed or (name == "duration" and isinstance(value, bool)):
        raise ValueError(f"invalid default {name}={value!r}")


@dataclass(frozen=True)
class Chosen:
    """The options a member typed in one command; None: left out."""

    quality: str | None = None
    duration: int | None = None
    model: str | None = None
    optimize_prompt: bool | None = None


@dataclass(frozen=True)
class Merged:
    """The options a command runs with, which of the member's defaults made them, and why some did not."""

    quality: str
    duration: int
    model: str
    optimize_prompt: bool
    applied: tuple[Text, ...] = ()  # e.g. ("quality pro", "duration 10 s"), for the card
    notes: tuple[Text, ...] = ()  # fallbacks, for the member's private receipt

    @property
    def card_line(self) -> str:
        """The applied defaults as one line for the card (a Text, so it renders in the server's language;
        "" when none applied)."""
        if not self.applied:
            return ""
        line = self.applied[0]
        for item in self.applied[1:]:
            line = tr("{list}, {item}", list=line, item=item)
        return line


def merge(mode: Mode, chosen: Chosen, defaults: MemberDefaults, served_models: Collection[str]) -> Merged:
    """Fill what `chosen` left out from `defaults`, keeping only defaults this request can use here.

    The explicit options are not checked here (the command's own validation does that, as before)."""
    applied: list[Text] = []
    notes: list[Text] = []

    model = chosen.model
    if model is None:
        model = BUILT_IN_MODEL
        if defaults.model is not None:
            if defaults.model in served_models:
                model = defaults.model
                applied.append(tr("model {model}", model=MODEL_LABELS.get(model, model)))
            else:
                label = MODEL_LABELS.get(defaults.model, defaults.model)
                notes.append(
                    tr(
                        "Your default model `{label}` is not offered here; used `{model}`.",
                        label=label,
                        model=MODEL_LABELS.get(model, model),
                    )
                )

    quality = chosen.quality
    if quality is None:
        quality = BUILT_IN_QUALITY
        wanted = defaults.quality
        if wanted is not None:
            offered = QUALITIES_BY_MODEL.get(model, QUALITIES_BY_MODE)[mode]
            fits = chosen.duration is None or chosen.duration in _durations(wanted)
            if wanted in offered and fits:
                quality = wanted
                applied.append(tr("quality {quality}", quality=quality))
            elif wanted not in QUALITIES_BY_MODE[mode]:
                notes.append(
                    tr("Your default quality `{wanted}` is for /animate only; used `{quality}`.", wanted=wanted,
                       quality=quality)
                )  # fmt: skip
            elif wanted not in offered:
                label = MODEL_LABELS.get(model, model)
                notes.append(
                    tr("Your default quality `{wanted}` is not offered by {label}; used `{quality}`.", wanted=wanted,
                       label=label, quality=quality)
                )  # fmt: skip
            else:
                notes.append(
                    tr("Your default quality `{wanted}` cannot make {duration} s clips; used `{quality}`.",
                       wanted=wanted, duration=chosen.duration, quality=quality)
                )  # fmt: skip

    duration = chosen.duration
    if duration is None:
        duration = BUILT_IN_DURATION
        wanted_s = defaults.duration
        if wanted_s is not None:
            if wanted_s in _durations(quality):
                duration = wanted_s
                applied.append(tr("duration {duration} s", duration=duration))
            else:
                notes.append(
                    tr("Your default duration `{wanted} s` is not made at `{quality}` quality ({resolution}); "
                       "used `{duration} s`.", wanted=wanted_s, quality=quality,
                       resolution=RESOLUTION_BY_QUALITY.get(quality, "?"), duration=duration)
                )  # fmt: skip

    optimize = chosen.optimize_prompt
    if optimize is None:
        optimize = BUILT_IN_OPTIMIZE
        if defaults.optimize_prompt is not None:
            optimize = defaults.optimize_prompt
            applied.append(tr("optimize_prompt on") if optimize else tr("optimize_prompt off"))
    return Merged(quality, duration, model, optimize, tuple(applied), tuple(notes))


def _durations(quality: str) -> tuple[int, ...]:
    return DURATIONS_BY_RESOLUTION.get(RESOLUTION_BY_QUALITY.get(quality, ""), ())
