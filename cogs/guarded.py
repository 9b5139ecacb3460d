"""Commands only some members may use (/admin, /mod, /contest), checked in the bot for every command.

Discord hides a group from members without its default permission, but anyone can replay an interaction
payload, and a group's `interaction_check` runs only for its direct children (/mod block add is a
grandchild): so each command's callback is wrapped, and a cog refuses to load if one is not.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

import discord
from discord import app_commands
from discord.ext import commands

from cogs.speech import to_member
from core.errors import UserError

log = logging.getLogger(__name__)

NO_PINGS = discord.AllowedMentions.none()
P = ParamSpec("P")
CogT = TypeVar("CogT", bound=commands.Cog)


@dataclass(frozen=True)
class Reply:
    """An answer with attachments (a chart, a CSV); a plain str is an answer in text only."""

    text: str
    files: tuple[discord.File, ...] = ()


Body = Callable[Concatenate[CogT, discord.Interaction, P], Awaitable[str | Reply]]
Callback = Callable[Concatenate[CogT, discord.Interaction, P], Coroutine[Any, Any, None]]


def guarded(
    may: Callable[[CogT, discord.Interaction], bool], refused: str, ready: Callable[[CogT], str | None]
) -> Callable[[Body[CogT, P]], Callback[CogT, P]]:
    """Wrap a command's body: refuse privately (nothing changed) unless `may`; answer `ready`'s message when
    the feature is not set up; else defer privately, run the body and show what it returns (or the
    UserError's message), in the member's language."""

    def wrap(body: Body[CogT, P]) -> Callback[CogT, P]:
        @functools.wraps(body)
        async def command(cog: CogT, interaction: discord.Interaction, /, *args: P.args, **kwargs: P.kwargs) -> None:
            if not may(cog, interaction):
                name = interaction.command.qualified_name if interaction.command else "?"
                log.info("interaction %d: refused /%s to user %d", interaction.id, name, interaction.user.id)
                await interaction.response.send_message(
                    to_member(interaction, refused), ephemeral=True, allowed_mentions=NO_PINGS
                )
                return
            missing = ready(cog)
            if missing is not None:
                await interaction.response.send_message(to_member(interaction, missing), ephemeral=True)
                return
            await interaction.response.defer(ephemeral=True, thinking=True)
            try:
                answer = await body(cog, interaction, *args, **kwargs)
            except UserError as exc:
                answer = exc.message
            reply = answer if isinstance(answer, Reply) else Reply(answer)
            await interaction.edit_original_response(
                content=to_member(interaction, reply.text)[:2000],
                attachments=list(reply.files),
                allowed_mentions=NO_PINGS,
            )

        # discord.py reads the options from the signature, resolving string annotations in the callback's
        # module, which would be this one: hand it the body's signature resolved in the body's module.
        command.__signature__ = inspect.signature(body, eval_str=True)  # type: ignore[attr-defined]
        command.__guarded__ = True  # type: ignore[attr-defined]
        return command

    return wrap


def require_guards(cog: commands.Cog) -> None:
    """Refuse to load a cog with a command that skipped the check."""
    unguarded = [
        command.qualified_name
        for command in cog.walk_app_commands()
        if isinstance(command, app_commands.Command) and not getattr(command.callback, "__guarded__", False)
    ]
    if unguarded:
        raise TypeError(f"commands without the permission check: {unguarded}")


def has_role(interaction: discord.Interaction, role_ids: frozenset[int]) -> bool:
    return any(role.id in role_ids for role in getattr(interaction.user, "roles", []))
