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

from cogs.access import Access, AccessGate
from cogs.admin import AdminCog
from cogs.buttons import JobButton
from cogs.card_actions import CardActionsCog
from cogs.contests import ContestCog
from cogs.context import CogContext
from cogs.generate import GenerateCog
from cogs.held import HeldReporter, LazyGallery
from cogs.history import HistoryCog
from cogs.launch import NEEDED_PERMISSIONS
from cogs.member_settings import MemberSettingsCog
from cogs.moderation import ModerationCog
from cogs.quota import QuotaCog
from cogs.reporter import reporter_for_resumed
from cogs.speech import to_server
from cogs.translator import CatalogueTranslator
from core.jobs import JobRecord
from core.metrics import NO_METRICS, Metrics
from core.text import N_, tr
from services.loopwatch import LoopWatch, freeze_startup_objects
from services.reporter import JobReporter
from services.runner import JobRunner
from services.variants import VariantSet

log = logging.getLogger("hailuo")

# Every cog is built the same way, from the bot and the context: a new cog is one line here.
COGS: tuple[Callable[[commands.Bot, CogContext], commands.Cog], ...] = (
    GenerateCog,
    CardActionsCog,
    QuotaCog,
    AdminCog,
    HistoryCog,
    MemberSettingsCog,
    ModerationCog,
    ContestCog,
)

# Notices on the cards of running jobs (the server's language).
RESTART_NOTICE = N_("The bot is restarting; this job will carry on when it is back (usually within a minute).")
RESUMED_NOTICE = N_("The bot restarted while this job was running; it carried on.")
TMP_SWEEP_SECONDS = 3600


class CommandHashes(Protocol):
    """Where the hash of the last synced command definitions is kept (a key-value table)."""

    async def get_meta(self, key: str) -> str | None: ...

    async def set_meta(self, key: str, value: str) -> None: ...


# The invite asks for exactly the channel permissions the bot checks before a job (cogs.launch), which
# are the ones the README lists (a test holds the two together).
INVITE_PERMISSIONS = discord.Permissions(**dict.fromkeys(NEEDED_PERMISSIONS, True))
OPEN_TO_ALL = (
    "access.allowed_guilds is empty: the bot serves every server it is added to "
    "(anyone with the invite link can add it and spend your budget)"
)


def invite_url(client_id: int) -> str:
    return discord.utils.oauth_url(client_id, permissions=INVITE_PERMISSIONS, scopes=("bot", "applications.commands"))


class AccessTree(app_commands.CommandTree["HailuoBot"]):
    """Every command and autocomplete passes the bot's access gate first (cogs.access). The commands are
    registered for server contexts (and DMs only with `access.allow_dms`), so Discord's clients do not offer
    them elsewhere; what arrives anyway (an old registration, a modified client, a server that is not
    listed) is refused here, before any cog sees it."""

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return await self.client.gate.admit(interaction)


class HailuoBot(commands.Bot):
    def __init__(
        self,
        context: CogContext,
        runner: JobRunner,
        hashes: CommandHashes,
        *,
        gate: AccessGate | None = None,
        dev_guild_id: int = 0,
        health_log_seconds: float = 0,
        metrics: Metrics = NO_METRICS,
        force_sync: bool = False,
        resumes_jobs: bool = True,
        takes_commands: bool = True,
        **options: Any,
    ) -> None:
        # The same gate as the button router's (bot.build_bot), so a server is warned about once.
        gate = gate or AccessGate(Access())
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),  # no privileged intents needed
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
            tree_cls=AccessTree,
            # Group DMs (private_channel) need a user install, which the bot does not offer.
            allowed_contexts=app_commands.AppCommandContext(
                guild=True, dm_channel=gate.access.allow_dms, private_channel=False
            ),
            **options,
        )
        self.context = context
        self.gate = gate
        self.runner = runner
        self.buttons = context.buttons  # JobButton finds the router here
        self.hashes = hashes
        self.dev_guild_id = dev_guild_id
        self.health_log_seconds = health_log_seconds
        self.metrics = metrics
        self.force_sync = force_sync
        self.tree.error(context.funnel.command_error)
        self._background: list[asyncio.Task[None]] = []
        # With workers (workers.separate), jobs are resumed by the job engine, not by whoever starts first.
        self.resumes_jobs = resumes_jobs
        self.takes_commands = takes_commands  # a worker process only reports: it never syncs commands
        self.reporter_for: Callable[[JobRecord], JobReporter | None] = lambda job: None
        self._announced = False
        # A worker has no gateway, so no cache of servers: their languages are fetched over REST, once each.
        self.fetched_locales: dict[int, str] = {}

    async def learn_locale(self, guild_id: int | None) -> None:
        """Fetch a server's language when this process has no gateway cache of it (a worker); English if
        Discord will not say."""
        if guild_id is None or guild_id in self.fetched_locales or self.get_guild(guild_id) is not None:
            return
        try:
            guild = await self.fetch_guild(guild_id, with_counts=False)
        except discord.HTTPException as exc:
            log.info("server %d: could not fetch its language (%s); its cards are in English", guild_id, exc.status)
            return
        self.fetched_locales[guild_id] = guild.preferred_locale.value

    async def setup_hook(self) -> None:
        if self.context.notices is not None:
            self.context.notices.attach(self._post_notice)
        for make in COGS:
            await self.add_cog(make(self, self.context))
        self.add_dynamic_items(JobButton)
        await self.tree.set_translator(CatalogueTranslator())
        if self.takes_commands:
            await self.sync_commands_if_changed()
        log.debug("froze %d start-up objects out of garbage collection", freeze_startup_objects())
        # Alone, nothing runs yet: every leftover is an orphan. With workers, other processes may be writing
        # in the shared data directory now: only what is older than any running job's file goes.
        self.runner.sweep_tmp(older_than=0 if self.resumes_jobs else TMP_SWEEP_SECONDS)
        await self.runner.sweep_outputs()
        sets: dict[int, VariantSet] = {}  # the variants resumed together share the card listing them
        gallery = LazyGallery(self)

        def reporter_for(job: JobRecord) -> JobReporter | None:
            fetched = self.fetched_locales.get(job.guild_id) if job.guild_id else None
            public = reporter_for_resumed(
                self, self.context.jobs, job, defaults=self.context.defaults, sets=sets, locale=fetched
            )
            # A contest entry or a clip held for review goes where it went before the restart.
            return None if public is None else HeldReporter(public, self, self.context, gallery, job.id)

        self.reporter_for = reporter_for  # a worker process reports every job it takes this way
        if self.resumes_jobs:
            resumed = await self.runner.resume(reporter_for, tr(RESUMED_NOTICE))
            if resumed:
                log.info("resumed %d unfinished job(s)", resumed)
        self._background.append(asyncio.create_task(self._sweep_periodically(), name="tmp-sweeper"))
        # Lag is sampled for the log lines, for /metrics, or both (NO_METRICS: the endpoint is off).
        if self.health_log_seconds or self.metrics is not NO_METRICS:
            watch = LoopWatch(report_every=self.health_log_seconds, metrics=self.metrics)
            self._background.append(asyncio.create_task(watch.run(), name="loop-watch"))

    async def _post_notice(self, channel_id: int, text: str) -> None:
        """An admin notice in a server's log channel: public in the server, so in the server's language;
        never pings anyone it names."""
        channel = self.get_channel(channel_id) or await self.fetch_channel(channel_id)
        if not isinstance(channel, discord.abc.Messageable):
            raise TypeError(f"channel {channel_id} cannot take messages")
        said = to_server(getattr(channel, "guild", None), text)  # localise first, then cut
        await channel.send(said[:2000], allowed_mentions=discord.AllowedMentions.none())

    async def on_ready(self) -> None:
        """Each READY (the first, and after a reconnect that could not resume): say who the bot is and how to
        invite it (once), and apply the access policy to the servers it is in, including any it was added to
        while it was away (discord.py reports those only here, not as a join)."""
        access = self.gate.access
        if not self._announced and self.user is not None:
            self._announced = True
            count = len(self.guilds)
            log.info(
                "logged in as %s (%d) in %d server%s%s; invite: %s",
                self.user.name,
                self.user.id,
                count,
                "" if count == 1 else "s",
                self.shards_in_words(),
                invite_url(self.application_id or self.user.id),
            )
            if not access.allowed_guilds:
                log.warning(OPEN_TO_ALL)
                if access.leave_unlisted:  # a server list was meant, and is missing: say so, leave nothing
                    log.warning("access.leave_unlisted has no effect while access.allowed_guilds is empty")
            elif self.dev_guild_id and not access.serves_guild(self.dev_guild_id):
                log.warning(
                    "bot.dev_guild_id %d is not in access.allowed_guilds: commands there are refused", self.dev_guild_id
                )
        unlisted = [guild for guild in self.guilds if not access.serves_guild(guild.id)]
        if not unlisted:
            return
        if not access.leave_unlisted:
            log.info(
                "in %d server(s) not in access.allowed_guilds, where every command is refused: %s "
                "(access.leave_unlisted = true leaves them)",
                len(unlisted),
                ", ".join(str(guild.id) for guild in unlisted),
            )
            return
        for guild in unlisted:
            await self._leave(guild)

    def shards_in_words(self) -> str:
        """ " on shards 0, 1 of 2" for a sharded bot (its servers are those shards' only), else nothing."""
        if self.shard_count is None or not isinstance(self, commands.AutoShardedBot):
            return ""
        ids = sorted(self.shards)
        return f" on shard{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))} of {self.shard_count}"

    async def on_guild_join(self, guild: discord.Guild) -> None:
        access = self.gate.access
        if access.serves_guild(guild.id):
            log.info("added to server %s (%d); now in %d servers", guild.name, guild.id, len(self.guilds))
        elif access.leave_unlisted:
            await self._leave(guild)
        else:
            log.info(
                "added to server %s (%d), which is not in access.allowed_guilds: its commands are refused",
                guild.name,
                guild.id,
            )

    async def _leave(self, guild: discord.Guild) -> None:
        try:
            await guild.leave()
        except discord.HTTPException as exc:  # it stays, and its commands are still refused
            log.warning(
                "could not leave server %s (%d), which is not in access.allowed_guilds: %s", guild.name, guild.id, exc
            )
            return
        log.warning(
            "left server %s (%d): not in access.allowed_guilds (access.leave_unlisted = true)", guild.name, guild.id
        )

    async def close(self) -> None:
        for task in self._background:
            task.cancel()
        # After READY discord.py waits for the servers (guild_ready_timeout) before dispatching on_ready, and
        # close() does not stop that wait: it would then dispatch into the closed client (an AttributeError,
        # and an on_ready coroutine never awaited). Cancelled, it dispatches nothing.
        ready = self._connection._ready_task
        if ready is not None:
            ready.cancel()
        await super().close()

    async def _sweep_periodically(self) -> None:
        while True:
            await asyncio.sleep(TMP_SWEEP_SECONDS)
            self.runner.sweep_tmp(older_than=TMP_SWEEP_SECONDS)
            await self.runner.sweep_outputs()

    async def stop_gracefully(self) -> None:
        """SIGTERM / Ctrl-C: stop taking commands, tell users in flight, persist, close (within 10 s)."""
        log.info("stopping: %d job(s) in flight will resume on the next start", self.runner.in_flight)
        await self.runner.suspend(tr(RESTART_NOTICE), grace=5.0)
        await self.close()

    async def sync_commands_if_changed(self) -> None:
        """Sync only when the definitions changed since the last sync (Discord limits creates per day)."""
        guild = discord.Object(self.dev_guild_id) if self.dev_guild_id else None
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
        # The translated payload, so a change to the catalogue syncs the new names and descriptions too.
        translator = CatalogueTranslator()
        payload = [await command.get_translated_payload(self.tree, translator) for command in self.tree.get_commands()]
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        key = f"commands_hash:{self.dev_guild_id or 'global'}"
        if not self.force_sync and await self.hashes.get_meta(key) == digest:
            log.info("slash commands unchanged; not syncing")
            return
        synced = await self.tree.sync(guild=guild)
        await self.hashes.set_meta(key, digest)
        log.info("synced %d slash commands (%s)", len(synced), f"guild {self.dev_guild_id}" if guild else "global")


class ShardedHailuoBot(HailuoBot, commands.AutoShardedBot):
    """The same bot over several gateway connections (`bot.shard_count`, `bot.shard_ids`): discord.py's
    AutoShardedBot runs one connection per shard in this process and routes each server to its shard."""
