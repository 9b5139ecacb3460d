"""hailuo-bot: the entry point. Reads settings, composes the app (`app.py`), runs it.

python bot.py              run the bot (`bot.py run`, with per-process flags: process_flags.py)
python bot.py worker       run jobs handed over by gateway processes (workers.separate)
python bot.py sync         push the slash command definitions to Discord now, then exit
python bot.py generate ... run one job from the terminal (same checks, provider and delivery)

A mistake an operator can fix (no token, a wrong token, no network, a port in use, a missing file)
ends the process with one sentence naming it, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

import aiohttp
import discord
import yarl
from discord.ext import commands

import logsafe
from app import App, open_app
from cogs.access import Access, AccessGate
from cogs.attachments import cdn_origins
from cogs.buttons import ButtonRouter
from cogs.client import HailuoBot, ShardedHailuoBot
from cogs.context import CogContext
from cogs.funnel import ErrorFunnel
from core.errors import StorageError, UserError
from core.spec import MODELS
from ops_server import ListenError, Readiness
from process_flags import FlagError, add_process_flags, apply_process_flags
from settings import Settings, SettingsError, load_settings
from storage.defaults import SqlDefaultsStore
from storage.reports import SqlSpendReader

log = logging.getLogger("hailuo")

TOKEN_HELP = """DISCORD_TOKEN is not set.
Create an application at https://discord.com/developers/applications, open "Bot", press
"Reset Token", and put the token in the environment (or in a .env file next to config.toml):
    DISCORD_TOKEN=your-token-here
See the README ("Create the Discord application") for the scopes and permissions to invite it with."""
WRONG_TOKEN = (
    "Discord refused DISCORD_TOKEN (it is wrong, or was reset): copy a new one from "
    "https://discord.com/developers/applications → your application → Bot → Reset Token."
)
NO_DISCORD = "Could not reach Discord ({reason}): check this machine's network connection and try again."


class StartupError(Exception):
    """A start-up problem the operator can fix; its message is the one sentence they see."""


def configure_logging(
    level: str, secrets: Iterable[str | None] = (), *, stream: TextIO | None = None, fmt: str = "text"
) -> logging.Handler:
    """Log to `stream` (stderr) at `level`, with secrets masked in every record, whichever handler gets it
    (logsafe.py says how). `secrets` are those known at start; the path token is registered once read.
    `fmt` "json": one JSON object per line (`logsafe.JsonFormatter`), else one readable line."""
    logsafe.install(secrets)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        logsafe.JsonFormatter()
        if fmt == "json"
        else logsafe.RedactingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request line at INFO; provider URLs are harmless but noisy.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("discord.http").setLevel(logging.WARNING)
    # aiosqlite logs every statement with its parameters at DEBUG, the path token among them: never useful.
    # (Redaction would mask it all the same; this only keeps DEBUG readable.)
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    return handler


def point_discord_at(api_base: str | None, gateway_url: str | None) -> None:
    """Send discord.py to another endpoint (a proxy or a local stand-in): docs/discord.md."""
    if api_base:
        discord.http.Route.BASE = f"{api_base.rstrip('/')}/api/v10"
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


def access_policy(settings: Settings) -> Access:
    access = settings.config.access
    return Access(frozenset(access.allowed_guilds), leave_unlisted=access.leave_unlisted, allow_dms=access.allow_dms)


def build_bot(app: App, *, force_sync: bool = False, worker: bool = False, **options: object) -> HailuoBot:
    """The Discord client over the composed app."""
    # The bot never joins voice: discord.py's start-up warnings about voice libraries are only noise.
    discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
    funnel = ErrorFunnel()
    # One gate for the command tree and the buttons: who may use the bot at all ([access] in config.toml).
    gate = AccessGate(access_policy(app.settings))
    context = CogContext(
        jobs=app.jobs,
        quotas=app.quotas,
        buttons=ButtonRouter(funnel, gate),
        funnel=funnel,
        handover_seconds=app.settings.config.bot.token_handover_seconds,
        cdn_origins=cdn_origins(app.settings.secrets.discord_api_base),
        admin=app.admin,
        notices=app.notices,
        spend=SqlSpendReader(app.db),
        defaults=SqlDefaultsStore(app.db),
        admin_role_ids=frozenset(app.settings.config.admin.role_ids),
        history=app.history,
        outputs=app.runner.crew.outputs,
        moderation=app.moderation,
        review=app.review,
        contests=app.contests,
    )
    bot = app.settings.config.bot
    if bot.shard_count:
        options |= {"shard_count": bot.shard_count, "shard_ids": bot.shard_ids or None}
    if app.prometheus is not None:  # every REST request discord.py makes, counted by route and status
        options.setdefault("http_trace", app.prometheus.discord_trace())
    client = (ShardedHailuoBot if bot.shard_count else HailuoBot)(
        context,
        app.runner,
        app.store,
        gate=gate,
        dev_guild_id=bot.dev_guild_id,
        health_log_seconds=bot.health_log_seconds,
        metrics=app.metrics,
        force_sync=force_sync,
        resumes_jobs=app.queue is None,  # with workers, the job engine resumes jobs
        takes_commands=not worker,
        **options,
    )
    watch_gateway(client, app.readiness)
    return client


def watch_gateway(client: commands.Bot, readiness: Readiness) -> None:
    """/healthz counts the gateway as up from READY (or RESUMED after a reconnect) until a disconnect; a
    sharded client, once all its shards were ready, while none of them is disconnected."""
    # Listeners (not on_* methods) so the client's own handlers stay as they are.
    if isinstance(client, commands.AutoShardedBot):
        _watch_shards(client, readiness)
        return

    async def up() -> None:
        readiness.up("gateway")

    async def down() -> None:
        readiness.down("gateway", "disconnected; reconnecting")

    client.add_listener(up, "on_ready")
    client.add_listener(up, "on_resumed")
    client.add_listener(down, "on_disconnect")


def _watch_shards(client: commands.AutoShardedBot, readiness: Readiness) -> None:
    # on_ready comes once, when every shard is ready; after that a shard that drops comes back with its own
    # RESUMED or READY (on_shard_resumed / on_shard_ready), which the unsharded events do not tell apart.
    all_ready = False
    lost: set[int] = set()

    def show() -> None:
        if all_ready and not lost:
            readiness.up("gateway")
        elif lost:
            shards = ", ".join(map(str, sorted(lost)))
            readiness.down("gateway", f"shard{'s' if len(lost) > 1 else ''} {shards} disconnected; reconnecting")

    async def ready() -> None:
        nonlocal all_ready
        all_ready = True
        show()

    async def shard_up(shard_id: int) -> None:
        lost.discard(shard_id)
        show()

    async def shard_down(shard_id: int) -> None:
        lost.add(shard_id)
        show()

    client.add_listener(ready, "on_ready")
    client.add_listener(shard_up, "on_shard_ready")
    client.add_listener(shard_up, "on_shard_resumed")
    client.add_listener(shard_down, "on_shard_disconnect")


async def run_bot(settings: Settings, *, sync_only: bool = False) -> None:
    token = settings.secrets.discord_token
    if token is None:
        print(TOKEN_HELP, file=sys.stderr)
        raise SystemExit(2)
    point_discord_at(settings.secrets.discord_api_base, settings.secrets.discord_gateway_url)
    async with open_app(settings, ops=not sync_only) as app, build_bot(app, force_sync=sync_only) as bot:
        try:
            if sync_only:
                await bot.login(token.get_secret_value())  # setup_hook runs here and syncs
                return
            await run_until_signalled(bot, token.get_secret_value())
        except discord.LoginFailure:
            raise StartupError(WRONG_TOKEN) from None
        except (aiohttp.ClientConnectionError, discord.GatewayNotFound, TimeoutError) as exc:
            raise StartupError(NO_DISCORD.format(reason=type(exc).__name__)) from None


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
    """`bot.py generate`: progress on stderr, log lines above it, a refusal as one sentence (exit 1)."""
    from cli import run_generate, terminal_console

    with terminal_console(verbose=args.verbose) as progress:
        async with open_app(settings, ops=False) as app:
            try:
                return await run_generate(
                    app.jobs, args, clips=settings.config.bot.data_dir / "clips", progress=progress
                )
            except UserError as exc:
                progress.line(exc.message)
                return 1


def _variants(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= 4:
        raise argparse.ArgumentTypeError(f"choose 1 to 4 clips, not {text!r}")
    return count


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bot.py", description="hailuo-bot: Hailuo videos on Discord")
    sub = parser.add_subparsers(dest="command")
    add_process_flags(sub.add_parser("run", help="run the bot (the default)"), shards=True)
    sub.add_parser("sync", help="sync slash commands to Discord now and exit")
    worker = sub.add_parser("worker", help="run generation jobs handed over by the bot's gateway processes")
    add_process_flags(worker, shards=False)
    gen = sub.add_parser(
        "generate",
        help="run one job (or a few variants) from the terminal (no Discord)",
        description="Make a clip as /video (or /animate, with --image) would: same checks, provider, charges.",
    )
    gen.add_argument("--prompt", default="")
    gen.add_argument("--image", type=Path, help="first frame (makes it an /animate job)")
    gen.add_argument("--end-image", type=Path, help="last frame (with --image; Hailuo 02 only)")
    gen.add_argument("--model", choices=list(MODELS), help="default hailuo-2.3; only the models a provider serves")
    gen.add_argument("--quality", default="standard", choices=["standard", "pro", "fast", "fast-pro"])
    gen.add_argument("--duration", type=int, default=6, choices=[6, 10])
    gen.add_argument("--camera", help='camera moves put before the prompt, e.g. "Pan left, Tilt up" (up to 3)')
    gen.add_argument("--variants", type=_variants, default=1, metavar="N", help="N clips (1-4), each charged")
    gen.add_argument("--no-optimize", action="store_true", help="turn the provider's prompt optimizer off")
    gen.add_argument(
        "--out", type=Path, help="where to save the clip (default: <data_dir>/clips/<time>-<job id>.mp4); "
        "with --variants, NAME-1.mp4, NAME-2.mp4..."
    )  # fmt: skip
    gen.add_argument("--upload-limit-mib", type=float, help="fit the clip under this size, as Discord would")
    gen.add_argument("--verbose", action="store_true", help="show the log's INFO lines too, above the progress")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"Invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    try:
        flags = apply_process_flags(settings, args)  # what differs between the processes of a deployment
    except FlagError as exc:
        print(exc, file=sys.stderr)
        return 2
    bot = settings.config.bot
    configure_logging(bot.log_level, settings.secret_values(), fmt=bot.log_format)
    if flags:
        log.info("this process: %s", flags)
    try:
        if args.command == "generate":
            return asyncio.run(generate_from_terminal(settings, args))
        if args.command == "worker":
            from worker import run_worker  # imports this module: only when asked for

            asyncio.run(run_worker(settings))
            return 0
        asyncio.run(run_bot(settings, sync_only=args.command == "sync"))
    except SettingsError as exc:  # found while assembling (e.g. a provider's prices)
        print(f"Invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    except (StartupError, ListenError) as exc:
        said = str(exc)
        print(said.replace("ops.port:", "--ops-port:") if "--ops-port" in flags else said, file=sys.stderr)
        return 1
    except StorageError as exc:  # the database could not be opened or migrated: nothing can run
        print(exc, file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        port = settings.config.webhooks.listen_port
        print(f"webhooks.listen_port: port {port} is already in use; free it or choose another.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    # Run through the module `bot`, not `__main__`: worker.py imports `bot`, and the errors it raises must
    # be the classes main() catches (a second copy of this file as `__main__` would define its own).
    import bot

    raise SystemExit(bot.main())
