"""/settings: a member's personal defaults for /video and /animate. Private.

Per member (Discord user id), the same in every server and in DMs. The options use the commands' own
choices, so nothing invalid can be stored; `reset` clears one default or all of them first, then the
given options are set; with no options the current defaults are shown. `notify` is stored and shown.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from cogs.context import CogContext
from cogs.options import DURATIONS, MODELS, NOTIFY, QUALITY_I2V
from core.defaults import (
    BUILT_IN_DURATION,
    BUILT_IN_MODEL,
    BUILT_IN_OPTIMIZE,
    BUILT_IN_QUALITY,
    FIELDS,
    DefaultsStore,
    MemberDefaults,
)
from core.errors import StorageError
from core.spec import MODEL_LABELS

log = logging.getLogger(__name__)

NO_PINGS = discord.AllowedMentions.none()
NOT_SET_UP = "Personal defaults are not set up on this bot."
UNAVAILABLE = "The bot's database is busy right now, so I could not read or save your defaults. Try again in a minute."
RESET = [app_commands.Choice(name=name, value=name) for name in FIELDS] + [
    app_commands.Choice(name="all of them", value="all")
]


def describe(defaults: MemberDefaults, heading: str) -> str:
    """The member's defaults, one a line; what is not set shows the built-in default it leaves in place."""

    def line(name: str, value: str | None, built_in: str) -> str:
        return f"• {name}: **{value}**" if value is not None else f"• {name}: not set (built-in: {built_in})"

    model = MODEL_LABELS.get(defaults.model, defaults.model) if defaults.model else None
    optimize = None if defaults.optimize_prompt is None else ("on" if defaults.optimize_prompt else "off")
    lines = [
        heading,
        line("quality", defaults.quality, BUILT_IN_QUALITY),
        line("duration", f"{defaults.duration} s" if defaults.duration else None, f"{BUILT_IN_DURATION} s"),
        line("model", model, MODEL_LABELS[BUILT_IN_MODEL]),
        line("optimize_prompt", optimize, "on" if BUILT_IN_OPTIMIZE else "off"),
        line("notify", defaults.notify, "off"),
        "",
        "/video and /animate use these when you leave an option out; an option you give always wins.",
    ]
    return "\n".join(lines)


class MemberSettingsCog(commands.Cog):
    def __init__(self, bot: commands.Bot, context: CogContext) -> None:
        self.store: DefaultsStore | None = context.defaults
        models = context.jobs.offer().models
        params = self.settings._params  # as cogs.options.offer_only_what_is_served: only served models
        if len(models) <= 1:
            params.pop("model", None)
        else:
            params["model"].choices = [choice for choice in MODELS if choice.value in models]  # type: ignore[misc]

    @app_commands.command(name="settings", description="Your personal defaults for /video and /animate (private).")
    @app_commands.describe(
        quality="Default quality (fast and fast-pro are for /animate; /video falls back to standard)",
        duration="Default length of the clip (10 s only at 768P)",
        model="Default Hailuo model",
        optimize_prompt="Let the service expand and refine your prompts by default",
        notify="How you would like to hear that a video is ready: off, channel or dm",
        reset="Clear one default, or all of them (before setting any options given here)",
    )
    @app_commands.choices(quality=QUALITY_I2V, model=MODELS, notify=NOTIFY, reset=RESET)
    @app_commands.choices(duration=DURATIONS)
    async def settings(
        self,
        interaction: discord.Interaction,
        quality: app_commands.Choice[str] | None = None,
        duration: app_commands.Choice[int] | None = None,
        model: app_commands.Choice[str] | None = None,
        optimize_prompt: bool | None = None,
        notify: app_commands.Choice[str] | None = None,
        reset: app_commands.Choice[str] | None = None,
    ) -> None:
        if self.store is None:
            await interaction.response.send_message(NOT_SET_UP, ephemeral=True, allowed_mentions=NO_PINGS)
            return
        values: dict[str, object] = {
            name: choice.value for name, choice in (("quality", quality), ("duration", duration),
                                                     ("model", model), ("notify", notify)) if choice is not None
        }  # fmt: skip
        if optimize_prompt is not None:
            values["optimize_prompt"] = optimize_prompt
        clear = () if reset is None else FIELDS if reset.value == "all" else (reset.value,)
        user_id = interaction.user.id
        try:
            if values or clear:
                current = await self.store.update(user_id, values, clear)
                heading = "Saved. Your defaults:" if values else "Cleared. Your defaults:"
            else:
                current = await self.store.get(user_id)
                heading = "Your defaults:"
        except StorageError as exc:
            log.warning("/settings of user %d: %s", user_id, exc)
            await interaction.response.send_message(UNAVAILABLE, ephemeral=True, allowed_mentions=NO_PINGS)
            return
        except ValueError:  # a replayed payload with a value the choices do not have
            await interaction.response.send_message(
                "That is not one of the choices.", ephemeral=True, allowed_mentions=NO_PINGS
            )
            return
        await interaction.response.send_message(describe(current, heading), ephemeral=True, allowed_mentions=NO_PINGS)
