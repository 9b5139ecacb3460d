"""Typed settings: config.toml for everything, the environment for secrets only.

Loading validates every value at start; a bad value raises `SettingsError` naming the key and the
problem, e.g. `config.toml: quotas.user_daily_usd: not a dollar amount ("two")`.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from config_sections import (
    AccessSection,
    AdminSection,
    BotSection,
    DatabaseSection,
    GuildSection,
    ModerationSection,
    OpsSection,
    ProvidersBase,
    ProvidersSection,
    QuotasSection,
    RequiredMicros,
    Section,
    SettingsError,
    Snowflake,
    StorageSection,
    WebhooksSection,
    WorkersSection,
)
from providers.registry import BY_NAME, ENTRIES
from storage.urls import dialect_of, sqlite_path, url_password


class Config(Section):
    bot: BotSection = Field(default_factory=BotSection)
    database: DatabaseSection = Field(default_factory=DatabaseSection)
    storage: StorageSection = Field(default_factory=StorageSection)
    access: AccessSection = Field(default_factory=AccessSection)
    admin: AdminSection = Field(default_factory=AdminSection)
    moderation: ModerationSection = Field(default_factory=ModerationSection)
    guilds: dict[Snowflake, GuildSection] = Field(default_factory=dict)
    webhooks: WebhooksSection = Field(default_factory=WebhooksSection)
    ops: OpsSection = Field(default_factory=OpsSection)
    workers: WorkersSection = Field(default_factory=WorkersSection)
    providers: ProvidersBase = Field(default_factory=ProvidersSection)
    prices: dict[str, dict[str, dict[str, RequiredMicros]]] = Field(default_factory=dict)
    quotas: QuotasSection = Field(default_factory=QuotasSection)

    @field_validator("providers", mode="before")
    @classmethod
    def _provider_sections(cls, value: Any) -> Any:
        # The table is validated by the model built from the registry (one typed section per provider).
        return ProvidersSection.model_validate(value) if isinstance(value, dict) else value

    def model_post_init(self, _context: Any) -> None:
        # Both servers would bind the port: say which key to change rather than "address already in use".
        ops, hooks = self.ops, self.webhooks
        if ops.port and hooks.public_base_url and ops.port == hooks.listen_port:
            raise ValueError(f"ops.port: {ops.port} is webhooks.listen_port too; give the endpoint a port of its own")


class _SecretsBase(BaseSettings):
    """Secrets, only ever from the environment (or .env). Never logged: SecretStr hides them."""

    # No .env unless one is named: load_settings reads the one beside config.toml.
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    discord_token: SecretStr | None = None
    # The database's URL when it carries a password (wins over config.toml's database.url).
    database_url: SecretStr | None = None
    # Not secrets, but environment by design: point discord.py at a proxy or a local stand-in.
    discord_api_base: str | None = None
    discord_gateway_url: str | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # `DISCORD_TOKEN=` copied from .env.example means "not set", not "an empty token".
        return None if isinstance(value, str) and not value.strip() else value

    def secret(self, variable: str) -> str | None:
        value = getattr(self, variable.lower(), None)
        return value.get_secret_value() if isinstance(value, SecretStr) else None

    def secret_values(self) -> list[str]:
        """Every secret that is set (the bot token, provider keys, webhook secrets): what logs must never show."""
        found = (getattr(self, name) for name in type(self).model_fields)
        return [value.get_secret_value() for value in found if isinstance(value, SecretStr)]


# Every provider's key variable and the other secrets its entry reads (e.g. TOAPIS_WEBHOOK_SECRET).
_PROVIDER_SECRETS = [entry.key_variable for entry in ENTRIES if entry.key_variable] + [
    variable for entry in ENTRIES for variable in entry.extra_secrets
]
Secrets = create_model(
    "Secrets",
    __base__=_SecretsBase,
    **{variable.lower(): (SecretStr | None, None) for variable in _PROVIDER_SECRETS},  # type: ignore[call-overload]
)


class Settings(BaseModel):
    config: Config
    secrets: _SecretsBase
    config_path: Path

    @property
    def database_path(self) -> Path:
        """The default database: SQLite in bot.data_dir."""
        return self.config.bot.data_dir / "hailuo.db"

    @property
    def database_url(self) -> str:
        """DATABASE_URL from the environment, else database.url, else SQLite at `database_path`. A relative
        SQLite path is relative to config.toml, like bot.data_dir."""
        url = self.secrets.secret("DATABASE_URL") or self.config.database.url
        if not url:
            return f"sqlite:///{self.database_path}"
        if dialect_of(url) == "sqlite":
            return f"sqlite:///{self.config_path.parent / sqlite_path(url)}"
        return url

    def secret_values(self) -> list[str]:
        """What logs must never show: every secret, and the database URL's password wherever it was set."""
        password = url_password(self.secrets.secret("DATABASE_URL") or self.config.database.url)
        return [*self.secrets.secret_values(), *([password] if password else [])]

    def api_key(self, provider: str) -> str | None:
        variable = BY_NAME[provider].key_variable
        return self.secrets.secret(variable) if variable else None

    def enabled_providers(self) -> list[str]:
        """Providers from `providers.order` that can run: paid ones need their key."""
        return [p for p in self.config.providers.order if not BY_NAME[p].paid or self.api_key(p)]


def _describe(error: ValidationError, source: str, *, show_input: bool = True) -> str:
    """One line per problem, naming the key: `config.toml: bot.max_output_mib: Input should be a valid
    integer (got true)`. `show_input=False` for the environment, whose values may be secrets."""
    lines = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        message = item["msg"].removeprefix("Value error, ")
        if loc[-1:] == ["[key]"]:  # a table key (a server or role id), not a value
            loc, message = loc[:-1], f"not an id: {message}"
        elif show_input and _is_scalar(item.get("input")) and "(" not in message:
            message = f"{message} (got {_toml(item['input'])})"
        key = ".".join(loc)
        lines.append(f"{source}: {key}: {message}" if key else f"{source}: {message}")
    return "\n".join(lines)


def _is_scalar(value: object) -> bool:
    return isinstance(value, bool | int | float) or (isinstance(value, str) and len(value) <= 60)


def _toml(value: object) -> str:
    """A value as it was written in config.toml (`true`, not `True`)."""
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(value) if isinstance(value, str) else repr(value)


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
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read it ({_reason(exc)})") from None
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, path.name)) from None
    return config


def load_settings(config_path: str | Path | None = None, *, env_file: str | Path | None = ".env") -> Settings:
    """config.toml (the argument, else HAILUO_CONFIG, else ./config.toml) and the secrets.

    Secrets come from the environment and from `env_file`, read from the directory of config.toml (as
    the token help says: "a .env file next to config.toml"), wherever the bot is started from; a variable
    set in the environment wins over the file. No other .env is read: a stray one in the working directory
    (another project's DISCORD_TOKEN) is never picked up. `bot.data_dir` is relative to config.toml too."""
    path = Path(config_path or os.environ.get("HAILUO_CONFIG") or "config.toml").absolute()
    config = load_config(path)
    try:
        secrets = Secrets(_env_file=path.parent / env_file if env_file is not None else None)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, "environment", show_input=False)) from None
    if not config.bot.data_dir.is_absolute():
        config.bot.data_dir = (path.parent / config.bot.data_dir).resolve()
    check_data_dir(config.bot.data_dir, path.name)
    check_database_url(secrets.secret("DATABASE_URL"), "environment: DATABASE_URL")
    check_database_url(config.database.url, f"{path.name}: database.url")
    settings = Settings(config=config, secrets=secrets, config_path=path)
    if config.workers.separate and dialect_of(settings.database_url) != "postgresql":
        raise SettingsError(
            f"{path.name}: workers.separate: the job engine needs PostgreSQL (set database.url or DATABASE_URL)"
        )
    return settings


def check_database_url(url: str | None, key: str) -> None:
    """One line naming the key when a database URL is not one we can open; never the URL (a password)."""
    if url:
        try:
            dialect_of(url)
        except ValueError as exc:
            raise SettingsError(f"{key}: {exc}") from None


def check_data_dir(data_dir: Path, source: str) -> None:
    """`bot.data_dir` must be a directory, or a path where one can be created (the database creates it):
    a file there, or in its way, is one line naming the key. Whether it can be written is the database's
    to say when it opens it (a read-only disk, permissions): that check is the real one."""
    existing = data_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == data_dir and not data_dir.is_dir():
        raise SettingsError(f"{source}: bot.data_dir: {data_dir} is a file, not a directory")
    if not existing.is_dir():
        raise SettingsError(f"{source}: bot.data_dir: cannot create {data_dir}: {existing} is a file")


def _reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
