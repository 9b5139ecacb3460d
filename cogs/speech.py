"""Which language to answer in: the member's own for what only they see, the server's for public cards.

Every member-facing string is a `core.text.Text` (built with `tr`); these helpers render it with the
message catalogue (`services.i18n`). Plain strings pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import discord

from services.i18n import localise


def member_locale(interaction: discord.Interaction) -> str:
    """The member's Discord language (`interaction.locale`): for private replies, modals and their views."""
    return interaction.locale.value


def server_locale(source: discord.Interaction | discord.Guild | None) -> str:
    """The server's language (its community locale, `en-US` unless set): for public cards and posts."""
    if isinstance(source, discord.Interaction):
        if source.guild_locale is not None:
            return source.guild_locale.value
        source = source.guild
    if isinstance(source, discord.Guild):
        return source.preferred_locale.value
    return discord.Locale.american_english.value


def to_member(interaction: discord.Interaction, text: str) -> str:
    return localise(text, member_locale(interaction))


def to_server(source: discord.Interaction | discord.Guild | None, text: str) -> str:
    return localise(text, server_locale(source))


# A language known now, or asked for when needed: jobs resumed at start are set up before the gateway has
# sent their servers, so their server's language is looked up at each card instead of once.
LocaleSource = str | Callable[[], str]


def locale_now(source: LocaleSource) -> str:
    return source() if callable(source) else source


def guild_language(client: discord.Client, guild_id: int | None) -> Callable[[], str]:
    """The server's language as the client knows it when asked (English until the server is known)."""

    def current() -> str:
        return server_locale(client.get_guild(guild_id) if guild_id else None)

    return current
