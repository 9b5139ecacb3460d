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
from cogs.speech import to_member
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
from core.text import N_, Text, tr

log = logging.getLogger(__name__)

NO_PINGS = discord.AllowedMentions.none()
NOT_SET_UP = N_("Personal defaults are not set up on this bot.")
UNAVAILABLE = N_(
    "The bot's database is busy right now, so I could not read or save your defaults. Try again in a minute."
)
NOT_A_CHOICE = N_("That is not one of the choices.")
SAVED = N_("Saved. Your defaults:")
CLEARED = N_("Cleared. Your defaults:")
CURRENT = N_("Your defaults:")
FOOTER = N_("/video and /animate use these when you leave an option out; an option you give always wins.")
RESET = [app_commands.Choice(name=name, value=name) for name in FIELDS] + [
    app_commands.Choice(name="all of them", value="all")
]
# The options as the member sees them named (Discord shows a zh-CN member the Chinese option names).
OPTION_NAMES = {
    "quality": N_("quality"),
    "duration": N_("duration"),
    "model": N_("model"),
    "optimize_prompt": N_("optimize_prompt"),
    "notify": N_("notify"),
}
SWITCH = {True: N_("on"), False: N_("off")}
NOTIFY_WORDS = {"off": N_("off"), "channel": N_("channel"), "dm": N_("dm")}


def describe(defaults: MemberDefaults, heading: str) -> list[str]:
    """The member's defaults, one a line; what is not set shows the built-in default it leaves in place.
    Render each line in the member's language and join them with newlines."""

    def line(name: str, value: str | None, built_in: str) -> Text:
        if value is not None:
            return tr("• {name}: **{value}**", name=tr(OPTION_NAMES[name]), value=value)
        return tr("• {name}: not set (built-in: {built_in})", name=tr(OPTION_NAMES[name]), built_in=built_in)

    def seconds(value: int) -> Text:
        return tr("{seconds} s", seconds=value)

    model = MODEL_LABELS.get(defaults.model, defaults.model) if defaults.model else None
    optimize = None if defaults.optimize_prompt is None else tr(SWITCH[defaults.optimize_prompt])
    notify = None if defaults.notify is None else tr(NOTIFY_WORDS.get(defaults.notify, defaults.notify))
    return [
        tr(heading),
        line("quality", defaults.quality, BUILT_IN_QUALITY),
        line("duration", seconds(defaults.duration) if defaults.duration else None, seconds(BUILT_IN_DURATION)),
        line("model", model, MODEL_LABELS[BUILT_IN_MODEL]),
        line("optimize_prompt", optimize, tr(SWITCH[BUILT_IN_OPTIMIZE])),
        line("notify", notify, tr(NOTIFY_WORDS["off"])),
        "",
        tr(FOOTER),
    ]


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
            await self._reply(interaction, tr(NOT_SET_UP))
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
                heading = SAVED if values else CLEARED
            else:
                current = await self.store.get(user_id)
                heading = CURRENT
        except StorageError as exc:
            log.warning("/settings of user %d: %s", user_id, exc)
            await self._reply(interaction, tr(UNAVAILABLE))
            return
        except ValueError:  # a replayed payload with a value the choices do not have
            await self._reply(interaction, tr(NOT_A_CHOICE))
            return
        lines = [to_member(interaction, line) for line in describe(current, heading)]
        await interaction.response.send_message("\n".join(lines), ephemeral=True, allowed_mentions=NO_PINGS)

    async def _reply(self, interaction: discord.Interaction, text: str) -> None:
        await interaction.response.send_message(to_member(interaction, text), ephemeral=True, allowed_mentions=NO_PINGS)
