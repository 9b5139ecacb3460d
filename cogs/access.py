"""Who may use the bot at all: the servers it answers in (`access.allowed_guilds`) and whether it answers
in DMs (`access.allow_dms`). One gate for everything a member can send: the command tree asks it before
any command or autocomplete, the button router before any button.

A server that is not listed gets a private refusal for every command and one WARNING in the log (per
server, per run), so an admin sees where the bot was added without a flood of lines. A DM is refused
unless DMs are allowed: a DM has no server budget or provider pin, so a job there escapes both.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import discord

from cogs.funnel import reply_privately
from core.text import N_, tr

log = logging.getLogger("hailuo")

NOT_ENABLED = N_("This bot is not enabled on this server.")
GUILD_ONLY = N_("This bot works in servers only: use its commands in a server channel.")
# Servers warned about at most: ids come from Discord, not from members, but the set must not grow without
# bound over months of a bot added to ever more servers. Past this it starts over (a repeated line, no leak).
MAX_WARNED = 10_000


@dataclass(frozen=True)
class Access:
    """The policy, as config.toml's `[access]` section states it (bot.py builds it from the settings)."""

    allowed_guilds: frozenset[int] = frozenset()  # empty = every server
    leave_unlisted: bool = False
    allow_dms: bool = False

    def serves_guild(self, guild_id: int) -> bool:
        return not self.allowed_guilds or guild_id in self.allowed_guilds

    def refusal(self, guild_id: int | None) -> str | None:
        """What a member is told where the bot does not answer (None: it answers here), a `Text`."""
        if guild_id is None:
            return None if self.allow_dms else tr(GUILD_ONLY)
        return None if self.serves_guild(guild_id) else tr(NOT_ENABLED)


class AccessGate:
    """Applies an `Access` to interactions, remembering which unlisted servers were logged already (one gate
    per bot, shared by the command tree and the button router, so a server is warned about once)."""

    def __init__(self, access: Access) -> None:
        self.access = access
        self._warned: set[int] = set()

    async def admit(self, interaction: discord.Interaction) -> bool:
        """True when the bot answers this interaction; otherwise the member is refused privately."""
        refusal = self.access.refusal(interaction.guild_id)
        if refusal is None:
            return True
        if interaction.guild_id is None:
            log.info("interaction %d: refused in a DM (user %d)", interaction.id, interaction.user.id)
        elif interaction.guild_id not in self._warned:
            if len(self._warned) >= MAX_WARNED:
                self._warned.clear()
            self._warned.add(interaction.guild_id)
            log.warning(
                "server %d is not in access.allowed_guilds: refusing its commands (logged once per server; "
                "add the id to allow it, or set access.leave_unlisted = true to leave such servers)",
                interaction.guild_id,
            )
        await _refuse(interaction, refusal)
        return False


async def _refuse(interaction: discord.Interaction, text: str) -> None:
    if interaction.type is discord.InteractionType.autocomplete:
        # An autocomplete cannot carry a message: no choices is the quiet answer (the command itself is
        # refused with the text when it is sent).
        try:
            await interaction.response.autocomplete([])
        except discord.HTTPException:
            log.info("interaction %d: could not answer the autocomplete", interaction.id)
        return
    await reply_privately(interaction, text)  # in the member's language
