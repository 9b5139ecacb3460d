"""Typed settings: config.toml for everything, the environment for secrets only.

Loading validates every value at start; a bad value raises `SettingsError` naming the key and the
problem, e.g. `config.toml: quotas.user_daily_usd: not a dollar amount ("two")`.
"""

from __future__ import annotations

import os
import tomllib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

MICROS_PER_USD = 1_000_000
PAID_PROVIDERS = ("wavespeed", "seaart", "minimax", "toapis")
KNOWN_PROVIDERS = (*PAID_PROVIDERS, "preview")


class SettingsError(Exception):
    pass


def usd_to_micros(value: Any) -> int | None:
    """'0.28' -> 280000. Strings (or numbers) in dollars; '' or None disables a limit."""
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
    micros = amount * MICROS_PER_USD
    if micros != micros.to_integral_value():
        raise ValueError(f"has more than 6 decimal places ({value!r})")
    return int(micros)


Micros = Annotated[int | None, BeforeValidator(usd_to_micros)]
RequiredMicros = Annotated[int, BeforeValidator(usd_to_micros)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BotSection(_Section):
    dev_guild_id: int = Field(0, ge=0)
    data_dir: Path = Path("data")
    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    job_deadline_seconds: int = Field(900, ge=30)
    max_output_mib: int = Field(200, ge=1, le=2048)
    progress_edit_interval: float = Field(2.0, ge=0.0)
    progress_edits_per_second: float = Field(50.0, gt=0.0)
    token_handover_seconds: int = Field(840, ge=0, le=900)
    # Polling: every `poll_dense_seconds` around where jobs of the same kind usually finish, at most
    # every `poll_sparse_cap_seconds` before that (services/polling.py explains the schedule).
    poll_dense_seconds: float = Field(1.5, gt=0, le=60)
    poll_sparse_cap_seconds: float = Field(15.0, gt=0, le=300)
    # Finished clips downloaded and uploaded at the same time (the rest wait their turn).
    max_concurrent_deliveries: int = Field(32, ge=1, le=256)
    # Of those, clips being re-encoded to fit the upload limit at the same time (CPU-bound: ~ cores).
    max_concurrent_reencodes: int = Field(2, ge=1, le=64)
    # Seconds between two "event-loop lag" log lines (0 = never).
    health_log_seconds: float = Field(60, ge=0)


class PaidProviderSection(_Section):
    base_url: str = Field(pattern="^https?://")
    timeout: float = Field(30.0, gt=0)
    typical_seconds: float = Field(75, gt=0)
    # Status polls of all jobs together, at most this many per second (see services/polling.py PollPacer).
    max_polls_per_second: float = Field(250, gt=0)


def _paid(base_url: str, **defaults: float) -> Any:
    return Field(default_factory=lambda: PaidProviderSection(base_url=base_url, **defaults))


class PreviewSection(_Section):
    min_runtime_seconds: float = Field(0, ge=0)
    fps: int = Field(24, ge=1, le=60)
    typical_seconds: float = Field(8, gt=0)


class ProvidersSection(_Section):
    order: list[str] = Field(default_factory=lambda: [*PAID_PROVIDERS, "preview"], min_length=1)
    # Consecutive outage-type failures after which a provider is rested for `cooldown_seconds`.
    failure_threshold: int = Field(3, ge=1)
    cooldown_seconds: float = Field(300, ge=0)
    wavespeed: PaidProviderSection = _paid("https://api.wavespeed.ai")
    seaart: PaidProviderSection = _paid("https://cloud.seaart.ai/model")
    minimax: PaidProviderSection = _paid("https://api.minimax.io")
    toapis: PaidProviderSection = _paid("https://toapis.com", max_polls_per_second=40)  # its query limit: 50/s
    preview: PreviewSection = Field(default_factory=PreviewSection)

    def model_post_init(self, _context: Any) -> None:
        unknown = [name for name in self.order if name not in KNOWN_PROVIDERS]
        if unknown:
            raise ValueError(f"order: unknown provider {unknown[0]!r} (known: {', '.join(KNOWN_PROVIDERS)})")


class Limits(_Section):
    """Quota limits; None means no limit."""

    user_daily_videos: int | None = Field(None, ge=0)
    user_daily_usd: Micros = None
    user_monthly_usd: Micros = None
    guild_monthly_usd: Micros = None
    global_monthly_usd: Micros = None
    user_max_in_flight: int | None = Field(None, ge=1)


class QuotasSection(Limits):
    user_daily_videos: int | None = Field(10, ge=0)
    user_max_in_flight: int | None = Field(2, ge=1)
    roles: dict[int, Limits] = Field(default_factory=dict)


class GuildSection(_Section):
    # The providers this server may use, in order (overrides `providers.order` for it).
    providers: list[str] = Field(min_length=1)

    def model_post_init(self, _context: Any) -> None:
        unknown = [name for name in self.providers if name not in KNOWN_PROVIDERS]
        if unknown:
            raise ValueError(f"providers: unknown provider {unknown[0]!r}")


class WebhooksSection(_Section):
    # Off unless set: the public https base URL that reaches `listen_host:listen_port` (e.g. through a
    # reverse proxy). Polling keeps working without it.
    public_base_url: str = Field("", pattern="^(https?://.*)?$")
    listen_host: str = "0.0.0.0"
    listen_port: int = Field(8080, ge=0, le=65535)


class Config(_Section):
    bot: BotSection = Field(default_factory=BotSection)
    guilds: dict[int, GuildSection] = Field(default_factory=dict)
    webhooks: WebhooksSection = Field(default_factory=WebhooksSection)
    providers: ProvidersSection = Field(default_factory=ProvidersSection)
    prices: dict[str, dict[str, dict[str, RequiredMicros]]] = Field(default_factory=dict)
    quotas: QuotasSection = Field(default_factory=QuotasSection)


class Secrets(BaseSettings):
    """Secrets, only ever from the environment (or .env). Never logged: SecretStr hides them."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    discord_token: SecretStr | None = None
    wavespeed_api_key: SecretStr | None = None
    seaart_api_key: SecretStr | None = None
    minimax_api_key: SecretStr | None = None
    toapis_api_key: SecretStr | None = None
    # ToAPIs signs callbacks with a secret set in its console (providers.md §4.5).
    toapis_webhook_secret: SecretStr | None = None
    # Not secrets, but environment by design: point discord.py at a proxy or a local stand-in.
    discord_api_base: str | None = None
    discord_gateway_url: str | None = None


class Settings(BaseModel):
    config: Config
    secrets: Secrets
    config_path: Path

    @property
    def database_path(self) -> Path:
        return self.config.bot.data_dir / "hailuo.db"

    def api_key(self, provider: str) -> str | None:
        secret: SecretStr | None = getattr(self.secrets, f"{provider}_api_key", None)
        return secret.get_secret_value() if secret else None

    def enabled_providers(self) -> list[str]:
        """Providers from `providers.order` that can run: paid ones need their key."""
        return [p for p in self.config.providers.order if p == "preview" or self.api_key(p)]


def _describe(error: ValidationError, source: str) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{source}: {key}: {message}" if key else f"{source}: {message}")
    return "\n".join(lines)


def check_prices(config: Config, offers: dict[str, frozenset[tuple[str, str]]], source: str) -> None:
    """Every paid provider that will run must price everything it can make (quotas are in dollars)."""
    from services.pricing import required_price_keys  # local import: services import settings types

    for provider, offered in offers.items():
        for model, keys in required_price_keys(offered).items():
            table = config.prices.get(provider, {}).get(model, {})
            missing = [key for key in keys if key not in table]
            if missing:
                raise SettingsError(f"{source}: prices.{provider}.{model}: missing {', '.join(missing)}")


def load_config(path: Path) -> Config:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"{path}: config file not found (set HAILUO_CONFIG or create it)") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, path.name)) from None
    return config


def load_settings(config_path: str | Path | None = None, *, env_file: str | Path | None = ".env") -> Settings:
    path = Path(config_path or os.environ.get("HAILUO_CONFIG") or "config.toml")
    config = load_config(path)
    try:
        secrets = Secrets(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise SettingsError(_describe(exc, "environment")) from None
    if not config.bot.data_dir.is_absolute():
        config.bot.data_dir = (path.parent / config.bot.data_dir).resolve()
    return Settings(config=config, secrets=secrets, config_path=path)
