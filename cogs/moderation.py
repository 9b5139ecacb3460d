"""/mod: a server's blocklist (and, later, review mode). Thin: Discord options in, `ModerationService`
calls, private replies out. Every command checks Manage Messages (or an admin role) itself (cogs.guarded)."""

from __future__ import annotations

from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from cogs.context import CogContext
from cogs.guarded import guarded, has_role, require_guards
from cogs.held import LazyGallery
from cogs.review import ReviewActions
from core.moderation import BlockRule
from core.text import N_, Text, tr, tr_n
from services.moderation import ModerationService
from services.review import ReviewService

REFUSED = N_("You need the Manage Messages permission to use /mod.")
NOT_SET_UP = N_("Moderation is not set up on this bot.")
SHOWN_RULES = 50


def may_moderate(cog: ModerationCog, interaction: discord.Interaction) -> bool:
    granted = interaction.permissions
    return granted.manage_messages or granted.administrator or has_role(interaction, cog.admin_role_ids)


def _ready(cog: ModerationCog) -> str | None:
    return tr(NOT_SET_UP) if cog.moderation is None or cog.review is None else None


mod_only = guarded(may_moderate, tr(REFUSED), _ready)


class ModerationCog(commands.Cog):
    mod_group = app_commands.Group(
        name="mod",
        description="Moderation: the server's blocklist and review (private replies).",
        default_permissions=discord.Permissions(manage_messages=True),
        guild_only=True,
    )
    block_group = app_commands.Group(
        name="block",
        description="Words and patterns that refuse a prompt before anything is charged.",
        parent=mod_group,
    )

    review_group = app_commands.Group(
        name="review", description="Hold new clips for a moderator before they are posted.", parent=mod_group
    )

    def __init__(self, bot: commands.Bot, context: CogContext) -> None:
        self.moderation = context.moderation
        self.review = context.review
        self.admin_role_ids = context.admin_role_ids
        self.actions = ReviewActions(context, LazyGallery(bot))
        require_guards(self)

    @property
    def service(self) -> ModerationService:
        assert self.moderation is not None  # mod_only answers before any body runs without it
        return self.moderation

    @property
    def reviews(self) -> ReviewService:
        assert self.review is not None  # mod_only answers before any body runs without it
        return self.review

    @block_group.command(name="add", description="Refuse prompts containing a word or matching a pattern.")
    @app_commands.describe(
        kind="word: matched whole, ignoring case and disguises; regex: an RE2 pattern", pattern="The word or pattern"
    )
    @mod_only
    async def block_add(
        self, interaction: discord.Interaction, kind: Literal["word", "regex"], pattern: app_commands.Range[str, 1, 200]
    ) -> str:
        return await self.service.add_rule(_guild(interaction), interaction.user.id, kind, pattern)

    @block_group.command(name="remove", description="Take a word or pattern off the blocklist.")
    @app_commands.describe(kind="What it was added as", pattern="The word or pattern, as listed")
    @mod_only
    async def block_remove(
        self, interaction: discord.Interaction, kind: Literal["word", "regex"], pattern: app_commands.Range[str, 1, 200]
    ) -> str:
        return await self.service.remove_rule(_guild(interaction), interaction.user.id, kind, pattern)

    @block_group.command(name="list", description="The server's blocklist.")
    @mod_only
    async def block_list(self, interaction: discord.Interaction) -> str:
        return render_rules(await self.service.rules(_guild(interaction)))

    @review_group.command(name="on", description="Hold new clips for review, in a channel or the whole server.")
    @app_commands.describe(channel="Only this channel (the whole server when left out)")
    @mod_only
    async def review_on(self, interaction: discord.Interaction, channel: discord.TextChannel | None = None) -> str:
        channel_id = channel.id if channel else None
        return await self.reviews.set_review(_guild(interaction), interaction.user.id, True, channel_id)

    @review_group.command(name="off", description="Post new clips as soon as they are made again.")
    @app_commands.describe(channel="Only this channel (the whole server when left out)")
    @mod_only
    async def review_off(self, interaction: discord.Interaction, channel: discord.TextChannel | None = None) -> str:
        channel_id = channel.id if channel else None
        return await self.reviews.set_review(_guild(interaction), interaction.user.id, False, channel_id)

    @review_group.command(name="queue", description="Where held clips wait for Approve or Reject.")
    @app_commands.describe(channel="A channel only moderators can see")
    @mod_only
    async def review_queue(self, interaction: discord.Interaction, channel: discord.TextChannel) -> str:
        return await self.reviews.set_queue(_guild(interaction), interaction.user.id, channel.id)


def render_rules(rules: list[BlockRule]) -> Text:
    if not rules:
        return tr("The blocklist is empty: no prompt is refused for its words.")
    shown = "\n".join(f"• {rule.kind} `{rule.pattern}`" for rule in rules[:SHOWN_RULES])
    more = len(rules) - SHOWN_RULES
    if more > 0:
        return tr_n("{rules}\n…and {n} more.", "{rules}\n…and {n} more.", more, rules=shown)
    return tr_n("{n} rule:\n{rules}", "{n} rules:\n{rules}", len(rules), rules=shown)


def _guild(interaction: discord.Interaction) -> int:
    assert interaction.guild_id is not None  # guild_only, and the tree refuses DMs before any command runs
    return interaction.guild_id
