"""The Discord client: loads the cogs from one list, installs the button router and the error funnel,
syncs slash commands only when they changed, and resumes the jobs a previous run left unfinished."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

import discord
from discord import app_commands
from discord.ext import commands

from cogs.admin import AdminCog
from cogs.buttons import JobButton
from cogs.card_actions import CardActionsCog
from cogs.context import CogContext
from cogs.funnel import reply_privately
from cogs.generate import GenerateCog
from cogs.quota import QuotaCog
from cogs.reporter import reporter_for_resumed
from services.loopwatch import LoopWatch, freeze_startup_objects
from services.runner import JobRunner

log = logging.getLogger("hailuo")

# Every cog is built the same way, from the bot and the context: a new cog is one line here.
COGS: tuple[Callable[[commands.Bot, CogContext], commands.Cog], ...] = (GenerateCog, CardActionsCog, QuotaCog, AdminCog)

RESTART_NOTICE = "The bot is restarting; this job will carry on when it is back (usually within a minute)."
RESUMED_NOTICE = "The bot restarted while this job was running; it carried on."
TMP_SWEEP_SECONDS = 3600


class CommandHashes(Protocol):
    """Where the hash of the last synced command definitions is kept (a key-value table)."""

    async def get_meta(self, key: str) -> str | None: ...

    async def set_meta(self, key: str, value: str) -> None: ...


GUILD_ONLY = "This bot works in servers only: use its commands in a server channel."


class GuildOnlyTree(app_commands.CommandTree["HailuoBot"]):
    """The commands are registered for server contexts only, so Discord's clients do not offer them in
    DMs; a DM interaction that arrives anyway (an old registration, a modified client) is refused here.
    In a DM no server budget or provider pin applies, so a DM job would escape them."""

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.guild_id is not None:
            return True
        log.info("interaction %d: refused a command outside a server (user %d)", interaction.id, interaction.user.id)
        await reply_privately(interaction, GUILD_ONLY)
        return False


class HailuoBot(commands.Bot):
    def __init__(
        self,
        context: CogContext,
        runner: JobRunner,
        hashes: CommandHashes,
        *,
        dev_guild_id: int = 0,
        health_log_seconds: float = 0,
        force_sync: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),  # no privileged intents needed
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
            tree_cls=GuildOnlyTree,
            allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=False, private_channel=False),
            **options,
        )
        self.context = context
        self.runner = runner
        self.buttons = context.buttons  # JobButton finds the router here
        self.hashes = hashes
        self.dev_guild_id = dev_guild_id
        self.health_log_seconds = health_log_seconds
        self.force_sync = force_sync
        self.tree.error(context.funnel.command_error)
        self._background: list[asyncio.Task[None]] = []

    async def setup_hook(self) -> None:
        if self.context.notices is not None:
            self.context.notices.attach(self._post_notice)
        for make in COGS:
            await self.add_cog(make(self, self.context))
        self.add_dynamic_items(JobButton)
        await self.sync_commands_if_changed()
        log.debug("froze %d start-up objects out of garbage collection", freeze_startup_objects())
        self.runner.sweep_tmp(older_than=0)  # nothing runs yet: every leftover is an orphan
        resumed = await self.runner.resume(
            lambda job: reporter_for_resumed(self, self.context.jobs, job), RESUMED_NOTICE
        )
        if resumed:
            log.info("resumed %d unfinished job(s)", resumed)
        self._background.append(asyncio.create_task(self._sweep_periodically(), name="tmp-sweeper"))
        if self.health_log_seconds:
            watch = LoopWatch(report_every=self.health_log_seconds)
            self._background.append(asyncio.create_task(watch.run(), name="loop-watch"))

    async def _post_notice(self, channel_id: int, text: str) -> None:
        """An admin notice in a server's log channel: never pings anyone it names."""
        channel = self.get_channel(channel_id) or await self.fetch_channel(channel_id)
        if not isinstance(channel, discord.abc.Messageable):
            raise TypeError(f"channel {channel_id} cannot take messages")
        await channel.send(text[:2000], allowed_mentions=discord.AllowedMentions.none())

    async def close(self) -> None:
        for task in self._background:
            task.cancel()
        await super().close()

    async def _sweep_periodically(self) -> None:
        while True:
            await asyncio.sleep(TMP_SWEEP_SECONDS)
            self.runner.sweep_tmp(older_than=TMP_SWEEP_SECONDS)

    async def stop_gracefully(self) -> None:
        """SIGTERM / Ctrl-C: stop taking commands, tell users in flight, persist, close (within 10 s)."""
        log.info("stopping: %d job(s) in flight will resume on the next start", self.runner.in_flight)
        await self.runner.suspend(RESTART_NOTICE, grace=5.0)
        await self.close()

    async def sync_commands_if_changed(self) -> None:
        """Sync only when the definitions changed since the last sync (Discord limits creates per day)."""
        guild = discord.Object(self.dev_guild_id) if self.dev_guild_id else None
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
        payload = [command.to_dict(self.tree) for command in self.tree.get_commands()]
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        key = f"commands_hash:{self.dev_guild_id or 'global'}"
        if not self.force_sync and await self.hashes.get_meta(key) == digest:
            log.info("slash commands unchanged; not syncing")
            return
        synced = await self.tree.sync(guild=guild)
        await self.hashes.set_meta(key, digest)
        log.info("synced %d slash commands (%s)", len(synced), f"guild {self.dev_guild_id}" if guild else "global")
