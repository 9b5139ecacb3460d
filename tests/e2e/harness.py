"""Runs the real bot (real discord.py, real sockets, real SQLite, real ffmpeg) against the local
Discord and provider stand-ins, and checks the ledger balances when each test ends."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import discord
import discord.gateway
import discord.http
from pydantic import SecretStr

from app import App, open_app
from bot import build_bot, point_discord_at
from cogs.client import HailuoBot
from core.jobs import TERMINAL_STATUSES, JobRecord
from settings import Secrets, Settings, load_config
from tests.fakes.discord_server import FakeDiscord

# With `--database postgresql` (tests/e2e/conftest.py): the database of every bot `running_bot` starts
# without one of its own; None: each bot's SQLite file in its data directory.
DEFAULT_DATABASE_URL: str | None = None

CONFIG = """
[bot]
data_dir = "{data_dir}"
log_level = "DEBUG"
job_deadline_seconds = {deadline}
progress_edit_interval = 0.2
poll_dense_seconds = {dense}
poll_sparse_cap_seconds = {sparse_cap}
token_handover_seconds = {handover}
{bot_extra}

[providers]
order = {order}

[providers.wavespeed]
base_url = "{wavespeed_url}"
timeout = 5
typical_seconds = {typical}

[providers.preview]
fps = 8
typical_seconds = 2
min_runtime_seconds = {preview_min_runtime}
{provider_sections}

{prices}
[quotas]
user_daily_videos = {daily_videos}
user_daily_usd = "{daily_usd}"
user_monthly_usd = "20.00"
guild_monthly_usd = "100.00"
global_monthly_usd = "300.00"
user_max_in_flight = {max_in_flight}
{extra}
"""


@dataclass
class BotUnderTest:
    app: App
    bot: HailuoBot
    discord: FakeDiscord
    task: asyncio.Task[None]

    async def wait_jobs_done(self, timeout: float = 60) -> None:
        """Wait until every job has reached a terminal state and the runner holds no task."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end:
            unfinished = await self.app.store.unfinished()
            if not unfinished and self.app.runner.in_flight == 0:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"jobs still running: {[(j.id, j.status) for j in await self.app.store.unfinished()]}")

    async def wait_for_job(self, job_id: int, condition: Callable[[JobRecord], bool], timeout: float = 30) -> JobRecord:
        """Wait until the stored job meets `condition` (a state, never a time); returns it."""
        async with asyncio.timeout(timeout):
            while True:
                job = await self.app.store.get(job_id)
                if job is not None and condition(job):
                    return job
                await asyncio.sleep(0.02)

    async def assert_ledger_balanced(self) -> None:
        """Charges equal the cost of delivered jobs, and nothing stays reserved."""
        await self.wait_jobs_done()
        totals = await self.app.store.ledger_totals()
        rows = await self.app.db.fetchall("SELECT status, cost_micros FROM jobs")
        delivered = sum(row["cost_micros"] for row in rows if row["status"] == "delivered")
        assert all(row["status"] in TERMINAL_STATUSES for row in rows)
        assert totals.outstanding == 0, totals
        assert totals.settled == delivered, (totals, delivered)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def webhooks_config(port: int) -> str:
    """A `[webhooks]` table whose public URL is the receiver itself, on 127.0.0.1 (pass as `extra`)."""
    return f'[webhooks]\npublic_base_url = "http://127.0.0.1:{port}"\nlisten_host = "127.0.0.1"\nlisten_port = {port}\n'


def repo_prices() -> str:
    """The price tables of the committed config.toml, so tests price exactly what ships."""
    text = (Path(__file__).resolve().parents[2] / "config.toml").read_text(encoding="utf-8")
    return text[text.index("[prices.") : text.index("[webhooks]")]


def write_config(tmp_path: Path, **overrides: object) -> Path:
    values: dict[str, object] = {
        "data_dir": str(tmp_path / "data"),
        "deadline": 60,
        "handover": 840,
        "order": '["wavespeed", "preview"]',
        "wavespeed_url": "http://127.0.0.1:9",
        "daily_videos": 10,
        "daily_usd": "2.00",
        "provider_sections": "",
        "extra": "",
        "dense": 0.2,
        "sparse_cap": 0.5,
        "typical": 2,
        "preview_min_runtime": 0,
        "max_in_flight": 2,
        "bot_extra": "",  # more `[bot]` keys, one per line
    }
    values.update(overrides)
    path = tmp_path / "config.toml"
    text = textwrap.dedent(CONFIG).format(**values, prices="{prices}")
    path.write_text(text.replace("{prices}", repo_prices()), encoding="utf-8")
    return path


@contextlib.asynccontextmanager
async def running_bot(
    tmp_path: Path,
    fake: FakeDiscord,
    *,
    wavespeed_key: str | None = "ws-test-key",
    providers: dict[str, tuple[str, str]] | None = None,
    secrets: dict[str, str] | None = None,
    admin_role_ids: frozenset[int] = frozenset(),
    before_start: Callable[[App], Awaitable[None]] | None = None,
    **config: object,
) -> AsyncIterator[BotUnderTest]:
    """`providers` adds other paid providers: name -> (base URL of its stand-in, API key); `admin_role_ids`
    are the roles that may use /admin besides Manage Server (set on the bot's context before it starts);
    `before_start` looks at the composed app before the Discord client connects."""
    saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    if DEFAULT_DATABASE_URL is not None and "database_url" not in (secrets or {}):
        secrets = {**(secrets or {}), "database_url": DEFAULT_DATABASE_URL}
    providers = dict(providers or {})
    if "wavespeed" in providers:  # the template has its section already
        config["wavespeed_url"] = providers["wavespeed"][0]
    typical = config.get("typical", 2)
    sections = "".join(
        f'\n[providers.{name}]\nbase_url = "{url}"\ntimeout = 5\ntypical_seconds = {typical}\n'
        for name, (url, _) in providers.items()
        if name != "wavespeed"
    )
    path = write_config(tmp_path, provider_sections=sections, **config)
    keys = {f"{name}_api_key": SecretStr(key) for name, (_, key) in providers.items()}
    if wavespeed_key:
        keys.setdefault("wavespeed_api_key", SecretStr(wavespeed_key))
    settings = Settings(
        config=load_config(path),
        secrets=Secrets(
            _env_file=None,  # type: ignore[call-arg]
            discord_token=SecretStr(fake.bot_token),
            discord_api_base=fake.base_url,  # as in production: attachments are fetched from this origin only
            **keys,
            **{name: SecretStr(value) for name, value in (secrets or {}).items()},
        ),
        config_path=path,
    )
    point_discord_at(fake.base_url, fake.gateway_url)
    try:
        async with open_app(settings) as app:
            bot = build_bot(app, guild_ready_timeout=0.05, chunk_guilds_at_startup=False)
            if admin_role_ids:
                bot.context = dataclasses.replace(bot.context, admin_role_ids=admin_role_ids)
            if before_start is not None:
                await before_start(app)
            task = asyncio.create_task(bot.start(fake.bot_token))
            try:
                await fake.wait_ready(timeout=15)
                yield BotUnderTest(app, bot, fake, task)
            finally:
                await bot.close()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, 10)
    finally:
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved
