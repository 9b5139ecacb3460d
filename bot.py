"""hailuo-bot: the one place that assembles the app (settings, logging, database, providers, bot).

python bot.py              run the bot
python bot.py sync         push the slash command definitions to Discord now, then exit
python bot.py generate ... run one job from the terminal (same checks, provider and delivery)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import discord
import yarl
from discord.ext import commands

from providers.base import Provider
from providers.registry import build_providers
from services.errors import UserError
from services.jobs import JobService
from services.loopwatch import LoopWatch, freeze_startup_objects
from services.polling import PollPolicy
from services.pricing import PriceTable
from services.routing import ProviderRouter
from settings import PaidProviderSection, Settings, SettingsError, check_prices, load_settings
from storage.db import Database
from storage.jobs import JobRepository

if TYPE_CHECKING:
    from webhooks import WebhookReceiver

log = logging.getLogger("hailuo")

TOKEN_HELP = """DISCORD_TOKEN is not set.
Create an application at https://discord.com/developers/applications, open "Bot", press
"Reset Token", and put the token in the environment (or in a .env file next to config.toml):
    DISCORD_TOKEN=your-token-here
See the README ("Create the Discord application") for the scopes and permissions to invite it with."""


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    # httpx logs every request line at INFO; provider URLs are harmless but noisy.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("discord.http").setLevel(logging.WARNING)


def point_discord_at(api_base: str | None, gateway_url: str | None) -> None:
    """Send discord.py to another endpoint (a proxy or a local stand-in): discord.md B2.1."""
    if api_base:
        discord.http.Route.BASE = f"{api_base.rstrip('/')}/api/v10"
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


@dataclass
class App:
    settings: Settings
    db: Database
    repo: JobRepository
    providers: dict[str, Provider]
    jobs: JobService


@asynccontextmanager
async def open_app(settings: Settings) -> AsyncIterator[App]:
    """Database, providers, router, job service and (when configured) the webhook receiver."""
    cfg = settings.config
    db = await Database(settings.database_path).open()
    repo = JobRepository(db)
    receiver: WebhookReceiver | None = None
    providers: dict[str, Provider] = {}
    jobs: JobService | None = None
    try:
        webhook_url_for = None
        if cfg.webhooks.public_base_url:
            token = await webhook_path_token(repo)
            base = cfg.webhooks.public_base_url.rstrip("/")
            webhook_url_for = lambda name: f"{base}/webhooks/{name}/{token}"  # noqa: E731
        providers = build_providers(settings, webhook_url_for)
        check_prices(cfg, {n: p.capabilities.offers for n, p in providers.items() if not p.capabilities.free},
                     settings.config_path.name)  # fmt: skip
        router = ProviderRouter(
            providers,
            pins={guild: section.providers for guild, section in cfg.guilds.items()},
            failure_threshold=cfg.providers.failure_threshold,
            cooldown_seconds=cfg.providers.cooldown_seconds,
        )
        with_webhooks = frozenset(name for name, p in providers.items() if p.capabilities.webhooks)
        jobs = JobService(
            repo,
            router,
            PriceTable(cfg.prices),
            cfg.quotas,
            cfg.bot.data_dir,
            deadline_seconds=cfg.bot.job_deadline_seconds,
            max_output_bytes=cfg.bot.max_output_mib * 1024 * 1024,
            typical_seconds={name: getattr(cfg.providers, name).typical_seconds for name in providers},
            edit_interval=cfg.bot.progress_edit_interval,
            edits_per_second=cfg.bot.progress_edits_per_second,
            poll_policy=PollPolicy(dense=cfg.bot.poll_dense_seconds, sparse_cap=cfg.bot.poll_sparse_cap_seconds),
            polls_per_second={
                name: section.max_polls_per_second
                for name in providers
                if isinstance(section := getattr(cfg.providers, name), PaidProviderSection)
            },
            webhook_providers=with_webhooks,
            max_concurrent_deliveries=cfg.bot.max_concurrent_deliveries,
            max_concurrent_reencodes=cfg.bot.max_concurrent_reencodes,
        )
        if webhook_url_for is not None and with_webhooks:
            receiver = await start_receiver(settings, repo, jobs, {n: providers[n] for n in with_webhooks})
        log.info("providers in use: %s", ", ".join(providers) or "none")
        yield App(settings, db, repo, providers, jobs)
    finally:
        if jobs is not None:
            await jobs.shutdown()  # jobs stop where they stand; the next start resumes them
        if receiver is not None:
            await receiver.stop()
        for provider in providers.values():
            await provider.aclose()
        await db.close()


async def webhook_path_token(repo: JobRepository) -> str:
    """A secret path segment for callback URLs, made once and kept: it guards providers that do not
    sign their callbacks (MiniMax), and makes every other URL unguessable too."""
    token = await repo.get_meta("webhook_path_token")
    if token is None:
        token = secrets.token_urlsafe(24)
        await repo.set_meta("webhook_path_token", token)
    return token


async def start_receiver(
    settings: Settings, repo: JobRepository, jobs: JobService, providers: dict[str, Provider]
) -> WebhookReceiver:
    from webhooks import WebhookReceiver

    async def on_signal(provider: str, task_id: str) -> bool:
        return jobs.on_webhook(provider, task_id)

    for provider in providers.values():
        await provider.prepare_webhooks()  # type: ignore[attr-defined]
    section = settings.config.webhooks
    receiver = WebhookReceiver(
        providers,  # type: ignore[arg-type]
        on_signal,
        path_token=await webhook_path_token(repo),
        host=section.listen_host,
        port=section.listen_port,
        # WaveSpeed echoes the job's input (our image as a data URL) in its callback; the path
        # token is checked before any of the body is read.
        max_body=32 * 1024 * 1024,
    )
    await receiver.start()
    log.info("webhook receiver listening on %s:%d", section.listen_host, receiver.port)
    return receiver


RESTART_NOTICE = "The bot is restarting; this job will carry on when it is back (usually within a minute)."
RESUMED_NOTICE = "The bot restarted while this job was running; it carried on."


class HailuoBot(commands.Bot):
    def __init__(self, app: App, *, force_sync: bool = False, **options: object) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),  # no privileged intents needed
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
            **options,  # type: ignore[arg-type]
        )
        self.app = app
        self.force_sync = force_sync
        self.tree.on_error = self.on_app_command_error  # type: ignore[method-assign]

    async def setup_hook(self) -> None:
        from cogs.generate import GenerateCog
        from cogs.quota import QuotaCog
        from cogs.views import CancelButton, DeleteButton, RerollButton

        cfg = self.app.settings.config
        generate = GenerateCog(self, self.app.jobs, handover_seconds=cfg.bot.token_handover_seconds)
        await self.add_cog(generate)
        await self.add_cog(QuotaCog(self.app.repo, cfg.quotas))
        self.add_dynamic_items(RerollButton, DeleteButton, CancelButton)
        await self.sync_commands_if_changed()
        log.debug("froze %d start-up objects out of garbage collection", freeze_startup_objects())
        self.app.jobs.sweep_tmp(older_than=0)  # nothing runs yet: every leftover is an orphan
        resumed = await self.app.jobs.resume(generate.reporter_for_resumed, RESUMED_NOTICE)
        if resumed:
            log.info("resumed %d unfinished job(s)", resumed)
        self._background = [asyncio.create_task(self._sweep_periodically(), name="tmp-sweeper")]
        if cfg.bot.health_log_seconds:
            watch = LoopWatch(report_every=cfg.bot.health_log_seconds)
            self._background.append(asyncio.create_task(watch.run(), name="loop-watch"))

    async def close(self) -> None:
        for task in getattr(self, "_background", []):
            task.cancel()
        await super().close()

    async def _sweep_periodically(self) -> None:
        while True:
            await asyncio.sleep(3600)
            self.app.jobs.sweep_tmp(older_than=3600)

    async def stop_gracefully(self) -> None:
        """SIGTERM / Ctrl-C: stop taking commands, tell users in flight, persist, close (within 10 s)."""
        log.info("stopping: %d job(s) in flight will resume on the next start", self.app.jobs.in_flight)
        await self.app.jobs.suspend(RESTART_NOTICE, grace=5.0)
        await self.close()

    async def sync_commands_if_changed(self) -> None:
        """Sync only when the definitions changed since the last sync (Discord limits creates per day)."""
        guild_id = self.app.settings.config.bot.dev_guild_id
        guild = discord.Object(guild_id) if guild_id else None
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
        payload = [command.to_dict(self.tree) for command in self.tree.get_commands()]
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        key = f"commands_hash:{guild_id or 'global'}"
        if not self.force_sync and await self.app.repo.get_meta(key) == digest:
            log.info("slash commands unchanged; not syncing")
            return
        synced = await self.tree.sync(guild=guild)
        await self.app.repo.set_meta(key, digest)
        log.info("synced %d slash commands (%s)", len(synced), f"guild {guild_id}" if guild else "global")

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: discord.app_commands.AppCommandError
    ) -> None:
        """One funnel for unexpected errors: a short private apology, the details only in the log."""
        if isinstance(error, discord.app_commands.TransformerError):
            # A value outside the offered choices (a modified client): say what to fix, no alarm.
            log.info("interaction %d: refused option value (%s)", interaction.id, type(error).__name__)
            await self._reply_privately(
                interaction, "That isn't one of the offered choices for an option. Pick one from the list."
            )
            return
        log.error(
            "command %s failed (interaction %d)",
            getattr(interaction.command, "name", "?"),
            interaction.id,
            exc_info=error,
        )
        await self._reply_privately(
            interaction, f"Sorry, something went wrong on our side (reference {interaction.id}). Nothing was charged."
        )

    @staticmethod
    async def _reply_privately(interaction: discord.Interaction, text: str) -> None:
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException:
            log.info("interaction %d: could not send the private reply", interaction.id)


async def run_bot(settings: Settings, *, sync_only: bool = False) -> None:
    token = settings.secrets.discord_token
    if token is None:
        print(TOKEN_HELP, file=sys.stderr)
        raise SystemExit(2)
    point_discord_at(settings.secrets.discord_api_base, settings.secrets.discord_gateway_url)
    async with open_app(settings) as app:
        bot = HailuoBot(app, force_sync=sync_only)
        async with bot:
            if sync_only:
                await bot.login(token.get_secret_value())  # setup_hook runs here and syncs
                return
            await run_until_signalled(bot, token.get_secret_value())


async def run_until_signalled(bot: HailuoBot, token: str) -> None:
    """Run the bot; on SIGTERM or SIGINT stop gracefully (jobs resume on the next start)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = asyncio.create_task(bot.start(token), name="discord")
    stopper = asyncio.create_task(stop.wait(), name="signals")
    done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if stopper in done:
        try:
            await asyncio.wait_for(bot.stop_gracefully(), timeout=8)
        except TimeoutError:
            log.warning("graceful stop took too long; closing now")
            await bot.close()
    else:
        stopper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner


async def generate_from_terminal(settings: Settings, args: argparse.Namespace) -> int:
    from cli import run_generate

    async with open_app(settings) as app:
        try:
            return await run_generate(app.jobs, args)
        except UserError as exc:
            print(exc.message, file=sys.stderr)
            return 1


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bot.py", description="hailuo-bot: Hailuo videos on Discord")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the bot (the default)")
    sub.add_parser("sync", help="sync slash commands to Discord now and exit")
    gen = sub.add_parser("generate", help="run one job from the terminal (no Discord)")
    gen.add_argument("--prompt", default="")
    gen.add_argument("--image", type=Path, help="first frame (makes it an /animate job)")
    gen.add_argument("--quality", default="standard", choices=["standard", "pro", "fast", "fast-pro"])
    gen.add_argument("--duration", type=int, default=6, choices=[6, 10])
    gen.add_argument("--no-optimize", action="store_true", help="turn the provider's prompt optimizer off")
    gen.add_argument("--out", type=Path, default=Path("clip.mp4"))
    gen.add_argument("--upload-limit-mib", type=float, help="fit the clip under this size, as Discord would")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"Invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.config.bot.log_level)
    try:
        if args.command == "generate":
            return asyncio.run(generate_from_terminal(settings, args))
        asyncio.run(run_bot(settings, sync_only=args.command == "sync"))
    except SettingsError as exc:  # found while assembling (e.g. a provider's prices)
        print(f"Invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
