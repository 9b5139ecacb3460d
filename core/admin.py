"""What server admins change at runtime (with /admin), as every layer sees it, and the store behind it.

`config.toml` holds the defaults; what an admin stores overrides them, per server, role or member, from
the next command on (no restart). Every change is written together with its audit row, in one
transaction, and audit rows are append-only like the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

Scope = Literal["server", "role", "user"]
Period = Literal["day", "week", "month"]  # what an admin picks for /admin pool create
# A contest's budget (/contest create) is a pool whose one period is the contest: it never starts again.
PoolPeriod = Literal["day", "week", "month", "contest"]
OnEmpty = Literal["personal", "refuse"]

# The limits an admin may set per server, role or member (the global monthly cap stays in config.toml:
# it protects the operator's whole account, not one server's share of it).
ADMIN_LIMIT_KEYS = (
    "user_daily_videos",
    "user_daily_usd",
    "user_monthly_usd",
    "user_max_in_flight",
    "guild_monthly_usd",
)
DOLLAR_KEYS = frozenset({"user_daily_usd", "user_monthly_usd", "guild_monthly_usd"})
POOL_ALERT_PERCENTS = (50, 80, 100)


@dataclass(frozen=True)
class LimitOverride:
    scope: Scope
    target_id: int  # the server's id for "server", else the role's or the member's
    key: str
    value: int | None  # None: no limit (dollar limits only); micros for dollar keys


@dataclass(frozen=True)
class Pool:
    """A budget for a channel or a role: "$20 a week for #brainstorm"."""

    id: int
    guild_id: int
    name: str
    amount_micros: int
    period: PoolPeriod
    channel_id: int | None
    role_id: int | None
    on_empty: OnEmpty


@dataclass(frozen=True)
class PoolDraw:
    """A job paid from a pool: which pool, in which of its periods (e.g. "2026-W49")."""

    pool_id: int
    period_key: str


@dataclass(frozen=True)
class ServerControls:
    paused: bool = False
    pause_reason: str = ""
    quote_threshold_micros: int | None = None
    log_channel_id: int | None = None


@dataclass(frozen=True)
class AuditLine:
    """One admin change: who, what, on whom, before → after, and why."""

    guild_id: int
    actor_id: int
    action: str  # e.g. "set-limit", "grant", "freeze", "pool create"
    target: str  # e.g. "user 123: user_daily_usd", "pool brainstorm"
    before: str = ""
    after: str = ""
    reason: str = ""


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    line: AuditLine


@dataclass(frozen=True)
class ServerState:
    """Everything a command in one server is checked against, read once per command."""

    controls: ServerControls
    overrides: tuple[LimitOverride, ...]
    frozen_reason: str | None  # the member's freeze, if any
    pools: tuple[Pool, ...]


class AdminStore(Protocol):
    async def server_state(self, guild_id: int, user_id: int) -> ServerState: ...

    async def overrides(self, guild_id: int) -> list[LimitOverride]: ...

    async def set_override(self, override: LimitOverride, guild_id: int, audit: AuditLine) -> None:
        """Store the override (replacing any for the same scope, target and key)."""
        ...

    async def clear_override(self, scope: Scope, target_id: int, key: str, guild_id: int, audit: AuditLine) -> None: ...

    async def grant(self, guild_id: int, user_id: int, amount_micros: int, now: datetime, audit: AuditLine) -> None:
        """A credit on the member's monthly allowance: a 'grant' row in the ledger, tied to its grant."""
        ...

    async def freeze(self, guild_id: int, user_id: int, reason: str, audit: AuditLine) -> None: ...

    async def unfreeze(self, guild_id: int, user_id: int, audit: AuditLine) -> bool: ...

    async def set_controls(self, guild_id: int, controls: ServerControls, audit: AuditLine) -> None: ...

    async def create_pool(self, pool: Pool, audit: AuditLine) -> Pool:
        """Store a new pool (its `id` is assigned); UserError-free: the caller checks the name is free."""
        ...

    async def delete_pool(self, guild_id: int, name: str, audit: AuditLine) -> bool: ...

    async def pool_spent(self, pool_id: int, period_key: str) -> int: ...

    async def mark_pool_alert(self, pool_id: int, period_key: str, percent: int) -> bool:
        """Record that this alert went out; False when it already had (alerts go once per period)."""
        ...

    async def audit(self, guild_id: int, count: int) -> list[AuditEntry]: ...

    async def controls(self, guild_id: int) -> ServerControls: ...

    async def pools(self, guild_id: int) -> list[Pool]: ...
