"""Slash-command names, descriptions and choices in the member's language, from the message catalogue.

discord.py asks the tree's translator for every name and description when it syncs; the catalogue keys
them by their place (`command_name`, `parameter_description`, …), so "video" the command and "video" a
choice can be translated differently.
"""

from __future__ import annotations

from collections.abc import Iterable

import discord
from discord import app_commands

from services.i18n import CATALOGUES, translate_command_string

CommandLike = app_commands.Command | app_commands.Group | app_commands.ContextMenu


class CatalogueTranslator(app_commands.Translator):
    async def translate(
        self, string: app_commands.locale_str, locale: discord.Locale, context: app_commands.TranslationContextTypes
    ) -> str | None:
        return translate_command_string(string.message, context.location.name, locale.value)


class _Recorder(app_commands.Translator):
    """Records what discord.py asks to translate, in order, without translating anything."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    async def translate(
        self, string: app_commands.locale_str, locale: discord.Locale, context: app_commands.TranslationContextTypes
    ) -> str | None:
        if locale.value == next(iter(CATALOGUES)):  # discord.py asks once per locale: record one round
            self.asked.append((context.location.name, string.message))
        return None


async def command_strings(tree: app_commands.CommandTree, commands: Iterable[CommandLike]) -> list[tuple[str, str]]:
    """Every (place, English string) a sync of `commands` would ask the translator for, each once."""
    recorder = _Recorder()
    for command in commands:
        await command.get_translated_payload(tree, recorder)
    return list(dict.fromkeys(recorder.asked))
