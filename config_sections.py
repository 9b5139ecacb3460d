"""The sections of config.toml and the value types they are made of (dollar amounts, ids, seconds):
each key's type, range and default, checked by pydantic when `settings.load_config` reads the file.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    create_model,
    field_validator,
)

from providers.kit.entry import Count, FiniteFloat, ProviderSection
from providers.registry import ENTRIES

MICROS_PER_USD = 1_000_000
KNOWN_PROVIDERS = tuple(entry.name for entry in ENTRIES)
PAID_PROVIDERS = tuple(entry.name for entry in ENTRIES if entry.paid)


class SettingsError(Exception):
    pass


# The largest dollar amounts accepted: far above any real price or budget, far below what would overflow
# the database's 64-bit integers (micro-dollars), and low enough that a slipped digit ("1e30") is refused.
MAX_PRICE_USD = Decimal(10_000)  # one clip
MAX_LIMIT_USD = Decimal(1_000_000)  # a quota
# Discord ids (snowflakes) are positive 64-bit integers.
Snowflake = Annotated[int, Field(gt=0, lt=2**63)]


def _quoted_id(value: Any) -> Any:
    # Table keys are strings in TOML (`[guilds."123…"]`), so an admin may quote ids in a list too: digits in
    # quotes are an id. Anything else goes to the strict check, which refuses true/false and floats (a float
    # loses the last digits of an 18-digit id, so it would name another server).
    return int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else value


# An id as a value (not a table key): an integer, or its digits in quotes.
SnowflakeValue = Annotated[StrictInt, BeforeValidator(_quoted_id), Field(gt=0, le=2**63 - 1)]
Seconds = Annotated[FiniteFloat, Field(ge=0)]


def usd_to_micros(value: Any, *, cap: Decimal = MAX_LIMIT_USD) -> int | None:
    """'0.28' -> 280000. Strings (or numbers) in dollars, at most `cap`; '' or None disables a limit."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a dollar amount ({value!r})")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not a dollar amount ({value!r})") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"must be a positive dollar amount ({value!r})")
    if amount > cap:
        raise ValueError(f"more than ${cap:,} ({value!r})")
    micros = amount * MICROS_PER_USD
    if micros != micros.to_integral_value():
        raise ValueError(f"has more than 6 decimal places ({value!r})")
    return int(micros)


def _price_to_micros(value: Any) -> int | None:
    return usd_to_micros(value, cap=MAX_PRICE_USD)


Micros = Annotated[int | None, BeforeValidator(usd_to_micros)]  # a limit, up to MAX_LIMIT_USD
RequiredMicros = Annotated[int, BeforeValidator(_price_to_micros)]  # a price, up to MAX_PRICE_USD


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Every number has bounds (README "Config ranges"); integers are strict (`true` is not 1), floats finite.
class BotSection(Section):
    dev_guild_id: Count = Field(0, ge=0, lt=2**63)
    data_dir: Path = Path("data")  # must be a directory, or a path to create one: checked by load_settings
    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    # "text": one human-readable line per record; "json": one JSON object per line, for a log shipper.
    log_format: Literal["text", "json"] = "text"
    job_deadline_seconds: Count = Field(900, ge=30, le=86_400)
    max_output_mib: Count = Field(200, ge=1, le=2048)
    progress_edit_interval: Seconds = Field(2.0, le=60)
    progress_edits_per_second: FiniteFloat = Field(50.0, ge=0.1, le=1000)
    token_handover_seconds: Count = Field(840, ge=0, le=900)
    # Polling: every `poll_dense_seconds` around where jobs of the same kind usually finish, at most
    # every `poll_sparse_cap_seconds` before that (services/polling.py explains the schedule).
    poll_dense_seconds: FiniteFloat = Field(1.5, ge=0.1, le=60)
    poll_sparse_cap_seconds: FiniteFloat = Field(15.0, ge=0.1, le=300)
    # Finished clips downloaded and uploaded at the same time (the rest wait their turn).
    max_concurrent_deliveries: Count = Field(32, ge=1, le=256)
    # Of those, clips being re-encoded to fit the upload limit at the same time (CPU-bound: ~ cores).
    max_concurrent_reencodes: Count = Field(2, ge=1, le=64)
    # Seconds between two "event-loop lag" log lines (0 = never).
    health_log_seconds: Seconds = Field(60, le=86_400)
    # Gateway shards (Discord requires sharding from 2,500 servers). 0: one connection, no sharding. With a
    # count, this process connects the shards in `shard_ids` (all of them when empty) with discord.py's
    # AutoShardedBot; Discord sends each server's events and commands to shard (server id >> 22) % count.
    shard_count: Count = Field(0, ge=0, le=65_536)
    shard_ids: list[Count] = Field(default_factory=list, max_length=65_536)

    @field_validator("shard_ids")
    @classmethod
    def _shards_of_the_count(cls, ids: list[int], info: ValidationInfo) -> list[int]:
        count = info.data.get("shard_count", 0)
        if ids and not count:
            raise ValueError("needs bot.shard_count (how many shards there are in all)")
        if any(not 0 <= shard < count for shard in ids):
            raise ValueError(f"each shard id must be 0 to {count - 1} (bot.shard_count is {count})")
        if len(set(ids)) != len(ids):
            raise ValueError("a shard id is listed twice")
        return ids


class ProvidersBase(Section):
    order: list[str] = Field(default_factory=lambda: list(KNOWN_PROVIDERS), min_length=1)
    # Consecutive outage-type failures after which a provider is rested for `cooldown_seconds`.
    failure_threshold: Count = Field(3, ge=1, le=1000)
    cooldown_seconds: Seconds = Field(300, le=86_400)

    def model_post_init(self, _context: Any) -> None:
        unknown = [name for name in self.order if name not in KNOWN_PROVIDERS]
        if unknown:
            raise ValueError(f"order: unknown provider {unknown[0]!r} (known: {', '.join(KNOWN_PROVIDERS)})")

    def section(self, name: str) -> ProviderSection:
        """`[providers.<name>]`, with the provider's own defaults where config.toml is silent."""
        section: ProviderSection = getattr(self, name)
        return section


# One `[providers.<name>]` table per provider the registry knows, typed by the provider's own section model.
ProvidersSection = create_model(
    "ProvidersSection",
    __base__=ProvidersBase,
    **{entry.name: (entry.section, Field(default_factory=entry.section)) for entry in ENTRIES},  # type: ignore[call-overload]
)


class Limits(Section):
    """Quota limits; None means no limit."""

    user_daily_videos: Count | None = Field(None, ge=0, le=1_000_000)
    user_daily_usd: Micros = None
    user_monthly_usd: Micros = None
    guild_monthly_usd: Micros = None
    global_monthly_usd: Micros = None
    user_max_in_flight: Count | None = Field(None, ge=1, le=1_000_000)


class QuotasSection(Limits):
    user_daily_videos: Count | None = Field(10, ge=0, le=1_000_000)
    user_max_in_flight: Count | None = Field(2, ge=1, le=1_000_000)
    # The most `variants:` one /video or /animate may ask for on this bot (1 turns variants off).
    max_variants: Count = Field(4, ge=1, le=4)
    roles: dict[Snowflake, Limits] = Field(default_factory=dict)


class GuildSection(Section):
    # The providers this server may use, in order (overrides `providers.order` for it).
    providers: list[str] = Field(min_length=1)

    def model_post_init(self, _context: Any) -> None:
        unknown = [name for name in self.providers if name not in KNOWN_PROVIDERS]
        if unknown:
            raise ValueError(f"providers: unknown provider {unknown[0]!r}")


class WebhooksSection(Section):
    # Off unless set: the public https base URL that reaches `listen_host:listen_port` (e.g. through a
    # reverse proxy). Polling keeps working without it.
    public_base_url: str = Field("", pattern="^(https?://.*)?$")
    # Loopback by default: a reverse proxy on this machine (TLS, its own limits) is the way in. "0.0.0.0"
    # takes callbacks directly, and is needed inside a container (the proxy is then outside it).
    listen_host: str = "127.0.0.1"
    listen_port: Count = Field(8080, ge=0, le=65535)
    # Open connections at most; the rest of the process's file descriptors stay for the bot's own sockets.
    max_connections: Count = Field(64, ge=1, le=4096)
    # A new connection must send a complete request head within this; later requests on a kept-alive
    # connection within `idle_timeout_seconds` of the previous answer. Slow or silent clients are closed.
    header_timeout_seconds: FiniteFloat = Field(5.0, ge=0.1, le=60)
    idle_timeout_seconds: FiniteFloat = Field(15.0, ge=0.1, le=300)
    # The whole body must arrive within this (a body can be up to 32 MiB: WaveSpeed echoes the inputs).
    body_timeout_seconds: FiniteFloat = Field(30.0, ge=0.1, le=600)

    def model_post_init(self, _context: Any) -> None:
        # The default listen_host was "0.0.0.0" until the receiver moved behind a reverse proxy by default.
        # A config that relied on it and hands providers this very port over plain http at a public address
        # would go quiet (callbacks refused, jobs slowly polled), so it fails loudly here instead.
        if "listen_host" in self.model_fields_set or not self.public_base_url:
            return
        from urllib.parse import urlsplit  # local: only this check needs it

        url = urlsplit(self.public_base_url)
        local = url.hostname in (None, "localhost", "::1") or (url.hostname or "").startswith("127.")
        if url.scheme == "http" and not local and (url.port or 80) == self.listen_port:
            raise ValueError(
                f"public_base_url reaches port {self.listen_port} directly, but listen_host now defaults to "
                '127.0.0.1 (this machine only): set listen_host = "0.0.0.0" to take callbacks directly, '
                "or point public_base_url at your reverse proxy"
            )


class OpsSection(Section):
    # The operator's endpoint (GET /healthz, GET /metrics): off unless a port is set. Loopback by default:
    # Prometheus on this machine, or a proxy; "0.0.0.0" inside a container (publish the port to the scraper).
    listen_host: str = "127.0.0.1"
    port: Count = Field(0, ge=0, le=65535)


class WorkersSection(Section):
    # false: this process runs every job it takes (one process, SQLite or PostgreSQL). true: gateway
    # processes hand each job to `bot.py worker` processes through the job engine (PostgreSQL only).
    separate: StrictBool = False
    # A worker's jobs in flight at once, and how fast a silent worker's jobs move to another one.
    concurrency: Count = Field(1000, ge=1, le=100_000)
    heartbeat_seconds: FiniteFloat = Field(2.0, ge=0.1, le=60)
    stalled_after_seconds: FiniteFloat = Field(10.0, ge=1, le=600)


class AccessSection(Section):
    # The servers the bot answers in; empty = every server it is added to (the start-up log warns).
    allowed_guilds: list[SnowflakeValue] = Field(default_factory=list)
    # Leave any server not in allowed_guilds, at start and when added to one.
    leave_unlisted: StrictBool = False
    # Serve commands in DMs with the bot (no server budget or provider pin applies there).
    allow_dms: StrictBool = False


class AdminSection(Section):
    # Roles whose members may use /admin, besides members with Manage Server.
    role_ids: list[SnowflakeValue] = Field(default_factory=list)


class ModerationSection(Section):
    # Freeze a member after this many blocks within 24 hours (a prompt the blocklist refused, or a job a
    # provider's content filter blocked); 0 = never.
    strikes_to_freeze: Count = Field(0, ge=0, le=1000)


class StorageSection(Section):
    # Delivered clips (and their first frames) kept under data_dir/outputs for /show: this many days
    # (0 = keep none), within this many GiB, the oldest deleted first when over.
    keep_outputs_days: Count = Field(30, ge=0, le=3650)
    max_outputs_gib: FiniteFloat = Field(5.0, ge=0, le=16_384)


class DatabaseSection(Section):
    # sqlite:///path/to/file.db (relative to config.toml) or postgresql://user@host:port/name; empty: SQLite
    # in bot.data_dir/hailuo.db. DATABASE_URL in the environment wins (the place for a URL with a password).
    url: str = ""
