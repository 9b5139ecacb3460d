"""/admin: what a server's admins change at runtime — limits, grants, freezes, a pause, budget pools, the
quote threshold, the log channel — and the audit trail. Thin: Discord options in, `AdminService` calls,
private replies out (rendered by `cogs.admin_views`). Every change is stored and applies from the next
command on, without a restart.

Who may use it holds for every command, nested ones included. The group's default permission (Manage
Server) makes Discord hide /admin from other members, and the bot checks again in every callback
(`admin_only`): anyone can replay an interaction payload, and a group's `interaction_check` runs only for
its direct children, so a check on /admin alone would not protect /admin pool create. The cog refuses to
load if one of its commands lacks the check.
"""

from __future__ import annotations

import functools
import io
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Concatenate, Literal, ParamSpec

import discord
from discord import app_commands
from discord.ext import commands

from cogs.admin_views import Say, name_in, render_audit, render_limits, render_pools
from cogs.context import CogContext
from cogs.speech import to_member
from core.admin import OnEmpty, Period, Scope
from core.errors import UserError
from core.text import N_, tr
from services.admin import AdminService
from services.spend import spend_report

log = logging.getLogger(__name__)

REFUSED = N_("You need the Manage Server permission to use /admin.")
NOT_SET_UP = N_("Admin controls are not set up on this bot.")
NO_PINGS = discord.AllowedMentions.none()
LimitKey = Literal["user_daily_videos", "user_daily_usd", "user_monthly_usd", "user_max_in_flight", "guild_monthly_usd"]

P = ParamSpec("P")


@dataclass(frozen=True)
class AdminReply:
    """An answer with attachments (a chart, a CSV); a plain str is an answer in text only (a `Text`, or
    text already in the member's language)."""

    text: str
    files: tuple[discord.File, ...] = ()


Body = Callable[Concatenate["AdminCog", discord.Interaction, P], Awaitable[str | AdminReply]]
Callback = Callable[Concatenate["AdminCog", discord.Interaction, P], Coroutine[Any, Any, None]]


def may_administer(interaction: discord.Interaction, admin_role_ids: frozenset[int]) -> bool:
    """Manage Server (or Administrator) in the member's permissions as Discord sent them with the
    interaction, or one of the configured admin roles."""
    granted = interaction.permissions
    if granted.manage_guild or granted.administrator:
        return True
    return any(role.id in admin_role_ids for role in getattr(interaction.user, "roles", []))


def admin_only(body: Body[P]) -> Callback[P]:
    """Wrap a command's body: refuse privately (no error, nothing changed) unless `may_administer`; else
    defer privately, run the body and show what it returns, or the UserError's message, in the member's
    language."""

    @functools.wraps(body)
    async def command(cog: AdminCog, interaction: discord.Interaction, /, *args: P.args, **kwargs: P.kwargs) -> None:
        if not may_administer(interaction, cog.admin_role_ids):
            log.info("interaction %d: refused /%s to user %d", interaction.id, _name(interaction), interaction.user.id)
            await interaction.response.send_message(
                to_member(interaction, tr(REFUSED)), ephemeral=True, allowed_mentions=NO_PINGS
            )
            return
        if cog.admin is None:
            await interaction.response.send_message(to_member(interaction, tr(NOT_SET_UP)), ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            answer = await body(cog, interaction, *args, **kwargs)
        except UserError as exc:
            answer = exc.message
        reply = answer if isinstance(answer, AdminReply) else AdminReply(answer)
        await interaction.edit_original_response(
            content=to_member(interaction, reply.text), attachments=list(reply.files), allowed_mentions=NO_PINGS
        )

    command.__admin_guarded__ = True  # type: ignore[attr-defined]
    return command


def speaker(interaction: discord.Interaction) -> Say:
    """Renders a `Text` in the member's language (for the views that measure what fits in a message)."""
    return functools.partial(to_member, interaction)


def _name(interaction: discord.Interaction) -> str:
    return interaction.command.qualified_name if interaction.command else "admin"


def role_ids(member: discord.Member | discord.User) -> tuple[int, ...]:
    return tuple(role.id for role in getattr(member, "roles", []))


class AdminCog(commands.Cog):
    admin_group = app_commands.Group(
        name="admin",
        description="Server admin controls: limits, grants, pauses, budget pools, audit (private replies).",
        default_permissions=discord.Permissions(manage_guild=True),
        guild_only=True,
    )
    pool_group = app_commands.Group(
        name="pool", description="Budget pools that pay for a channel's or a role's videos.", parent=admin_group
    )

    def __init__(self, bot: commands.Bot, context: CogContext) -> None:
        self.admin = context.admin
        self.admin_role_ids = context.admin_role_ids
        self.spend_reader = context.spend
        unguarded = [
            command.qualified_name
            for command in self.walk_app_commands()
            if isinstance(command, app_commands.Command) and not getattr(command.callback, "__admin_guarded__", False)
        ]
        if unguarded:
            raise TypeError(f"/admin commands without the permission check: {unguarded}")

    @property
    def service(self) -> AdminService:
        assert self.admin is not None  # admin_only answers before any body runs without it
        return self.admin

    # ----- limits ---------------------------------------------------------------------------------------

    @admin_group.command(name="limits", description="The limits in force and where each comes from.")
    @app_commands.describe(user="A member: their limits with their roles", role="A role: the limits it gives")
    @admin_only
    async def limits(
        self,
        interaction: discord.Interaction,
        user: discord.Member | discord.User | None = None,
        role: discord.Role | None = None,
    ) -> str:
        guild_id = _guild(interaction)
        if user is not None and role is not None:
            raise UserError(tr("Give a `user` or a `role`, not both (a member's limits include their roles)."))
        say = speaker(interaction)
        if user is not None:
            lines = await self.service.limits(guild_id, role_ids(user), user.id)
            return render_limits(user.mention, lines, say)
        if role is not None:
            return render_limits(role.mention, await self.service.limits(guild_id, (role.id,)), say)
        return render_limits(tr("this server"), await self.service.limits(guild_id), say)

    @admin_group.command(name="set-limit", description="Set a limit for the server, a role or a member.")
    @app_commands.describe(
        scope="Who the limit is for",
        limit="Which limit",
        value="Dollars (2.50) or a whole number; `none`: no dollar limit; `default`: the inherited value",
        role="The role, with scope role",
        user="The member, with scope user",
    )
    @admin_only
    async def set_limit(
        self,
        interaction: discord.Interaction,
        scope: Scope,
        limit: LimitKey,
        value: app_commands.Range[str, 1, 40],
        role: discord.Role | None = None,
        user: discord.Member | discord.User | None = None,
    ) -> str:
        guild_id = _guild(interaction)
        if scope == "server":
            if role is not None or user is not None:
                raise UserError(tr("Scope `server` takes no `role` or `user`: it sets the limit for everyone here."))
            target = guild_id
        elif scope == "role":
            if role is None or user is not None:
                raise UserError(tr("Scope `role` needs the `role` option (and no `user`)."))
            target = role.id
        else:
            if user is None or role is not None:
                raise UserError(tr("Scope `user` needs the `user` option (and no `role`)."))
            target = user.id
        return await self.service.set_limit(guild_id, interaction.user.id, scope, target, limit, value)

    # ----- members ----------------------------------------------------------------------------------------

    @admin_group.command(name="grant", description="Add dollars to a member's allowance for this month.")
    @app_commands.describe(user="The member", amount="Dollars, e.g. 2.50", reason="Why (kept in the audit)")
    @admin_only
    async def grant(
        self,
        interaction: discord.Interaction,
        user: discord.Member | discord.User,
        amount: app_commands.Range[str, 1, 40],
        reason: app_commands.Range[str, 0, 500] = "",
    ) -> str:
        return await self.service.grant(_guild(interaction), interaction.user.id, user.id, amount, reason)

    @admin_group.command(name="freeze", description="Stop a member's new videos (jobs in flight finish).")
    @app_commands.describe(user="The member", reason="Shown to them when they are refused")
    @admin_only
    async def freeze(
        self,
        interaction: discord.Interaction,
        user: discord.Member | discord.User,
        reason: app_commands.Range[str, 0, 500] = "",
    ) -> str:
        return await self.service.freeze(_guild(interaction), interaction.user.id, user.id, reason)

    @admin_group.command(name="unfreeze", description="Let a frozen member make videos again.")
    @app_commands.describe(user="The member")
    @admin_only
    async def unfreeze(self, interaction: discord.Interaction, user: discord.Member | discord.User) -> str:
        return await self.service.unfreeze(_guild(interaction), interaction.user.id, user.id)

    # ----- the server -------------------------------------------------------------------------------------

    @admin_group.command(name="pause", description="Stop new videos on this server (jobs in flight finish).")
    @app_commands.describe(reason="Shown to members when they are refused")
    @admin_only
    async def pause(self, interaction: discord.Interaction, reason: app_commands.Range[str, 0, 500] = "") -> str:
        return await self.service.pause(_guild(interaction), interaction.user.id, reason)

    @admin_group.command(name="resume", description="Allow new videos on this server again.")
    @admin_only
    async def resume(self, interaction: discord.Interaction) -> str:
        return await self.service.resume(_guild(interaction), interaction.user.id)

    @admin_group.command(name="quote-threshold", description="Jobs from this price on first show a private quote.")
    @app_commands.describe(amount="Dollars, e.g. 1.00; `none` or `off` turns quotes off")
    @admin_only
    async def quote_threshold(self, interaction: discord.Interaction, amount: app_commands.Range[str, 1, 40]) -> str:
        return await self.service.set_quote_threshold(_guild(interaction), interaction.user.id, amount)

    @admin_group.command(name="log-channel", description="Where admin changes and pool alerts are posted.")
    @app_commands.describe(channel="A text channel the bot can post in")
    @admin_only
    async def log_channel(self, interaction: discord.Interaction, channel: discord.TextChannel) -> str:
        return await self.service.set_log_channel(_guild(interaction), interaction.user.id, channel.id)

    @admin_group.command(name="audit", description="The latest admin changes: who, when, what, before → after.")
    @app_commands.describe(count="How many (1 to 50, default 10)")
    @admin_only
    async def audit(self, interaction: discord.Interaction, count: app_commands.Range[int, 1, 50] = 10) -> str:
        return render_audit(await self.service.audit(_guild(interaction), count), speaker(interaction))

    @admin_group.command(name="spend", description="Spend from the ledger: a table, a chart and a CSV.")
    @app_commands.describe(period="Which window (UTC)", by="What to total by")
    @admin_only
    async def spend(
        self,
        interaction: discord.Interaction,
        period: Literal["today", "7d", "30d", "month"],
        by: Literal["user", "channel", "model", "provider", "day"],
    ) -> AdminReply:
        if self.spend_reader is None:
            raise UserError(tr(NOT_SET_UP))
        guild = interaction.guild
        say = speaker(interaction)
        report = await spend_report(
            self.spend_reader, _guild(interaction), period, by, name_of=lambda key: name_in(guild, by, key), say=say
        )
        files = (
            discord.File(io.BytesIO(report.png), filename=f"{report.filename}.png"),
            discord.File(io.BytesIO(report.csv), filename=f"{report.filename}.csv"),
        )
        return AdminReply(f"**{say(report.title)}**\n{report.table}", files)  # the table is in `say`'s language

    # ----- pools ------------------------------------------------------------------------------------------

    @pool_group.command(name="create", description="A budget that pays for a channel's or a role's videos.")
    @app_commands.describe(
        name="A short name (up to 32 characters)",
        amount="Dollars per period, e.g. 20",
        period="How often the budget starts again (UTC)",
        channel="Pay for videos made in this channel",
        role="Pay for videos made by members with this role",
        on_empty="When it is spent: pay from the member's own allowance (default) or refuse",
    )
    @admin_only
    async def pool_create(
        self,
        interaction: discord.Interaction,
        name: app_commands.Range[str, 1, 32],
        amount: app_commands.Range[str, 1, 40],
        period: Period,
        channel: discord.TextChannel | None = None,
        role: discord.Role | None = None,
        on_empty: OnEmpty = "personal",
    ) -> str:
        return await self.service.create_pool(
            _guild(interaction),
            interaction.user.id,
            name,
            amount,
            period,
            channel.id if channel else None,
            role.id if role else None,
            on_empty,
        )

    @pool_group.command(name="list", description="Each pool: its budget, what it pays for, spent this period.")
    @admin_only
    async def pool_list(self, interaction: discord.Interaction) -> str:
        return render_pools(await self.service.pools(_guild(interaction)), speaker(interaction))

    @pool_group.command(name="delete", description="Delete a pool (its jobs in flight are still paid from it).")
    @app_commands.describe(name="The pool's name")
    @admin_only
    async def pool_delete(self, interaction: discord.Interaction, name: app_commands.Range[str, 1, 32]) -> str:
        return await self.service.delete_pool(_guild(interaction), interaction.user.id, name)


def _guild(interaction: discord.Interaction) -> int:
    if interaction.guild_id is None:  # the tree refuses DMs before any command runs
        raise UserError(tr("/admin works in servers only."))
    return interaction.guild_id
