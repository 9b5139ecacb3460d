"""What a server's admins can do at runtime: limits per server, role or member, grants, freezes, a pause,
budget pools, the quote threshold and the log channel — each stored (it overrides config.toml from the
next command on), audited in the same transaction, and announced in the log channel.

Values come as the admin typed them and are checked here: a bad one is a UserError that names the
problem, and nothing is stored.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from core.admin import (
    ADMIN_LIMIT_KEYS,
    DOLLAR_KEYS,
    AdminStore,
    AuditEntry,
    AuditLine,
    LimitOverride,
    OnEmpty,
    Period,
    Pool,
    Scope,
)
from core.errors import UserError
from services.notices import LogChannel
from services.pricing import format_usd, parse_usd
from services.quotas import LIMIT_KEYS, QuotaPolicy, effective_limits, period_key

MAX_COUNT = 1_000_000
MAX_POOL_NAME = 32
SOURCES = {"config": "config.toml", "config role": "config.toml (role)", "server": "server", "role": "role",
           "member": "member"}  # fmt: skip


@dataclass(frozen=True)
class LimitLine:
    key: str
    value: str  # as shown: "$2.00", "10", "no limit"
    source: str  # config.toml, config.toml (role), server, role, member


@dataclass(frozen=True)
class PoolStanding:
    pool: Pool
    spent_micros: int  # in its current period


def show(key: str, value: int | None) -> str:
    if value is None:
        return "no limit"
    return format_usd(value) if key.endswith("_usd") else str(value)


def parse_limit(key: str, raw: str) -> int | None:
    """An admin's value for `key`: dollars for dollar limits ("none" lifts them), a whole number else."""
    text = raw.strip().lower()
    if key not in ADMIN_LIMIT_KEYS:
        raise UserError(f"`{key}` is not a limit admins can set ({', '.join(ADMIN_LIMIT_KEYS)}).")
    if key in DOLLAR_KEYS:
        if text in ("none", "no limit", "unlimited"):
            return None
        return parse_usd(raw, what=key)
    if text in ("none", "no limit", "unlimited"):
        raise UserError(f"`{key}` needs a number; only dollar limits can be lifted with `none`.")
    if not text.isdigit():
        raise UserError(f"`{key}` needs a whole number (got `{raw.strip()[:40]}`).")
    value = int(text)
    if key == "user_max_in_flight" and value < 1:
        raise UserError("`user_max_in_flight` must be at least 1 (use freeze to stop a member).")
    if value > MAX_COUNT:
        raise UserError(f"`{key}` can be at most {MAX_COUNT:,}.")
    return value


class AdminService:
    def __init__(self, store: AdminStore, policy: QuotaPolicy, notices: LogChannel) -> None:
        self.store = store
        self.policy = policy
        self.notices = notices

    # ----- limits ---------------------------------------------------------------------------------------

    async def limits(
        self, guild_id: int, role_ids: tuple[int, ...] = (), user_id: int | None = None
    ) -> list[LimitLine]:
        """The effective limits for the server (no role, no member), a role, or a member with their roles,
        and where each value comes from."""
        overrides = await self.store.overrides(guild_id)
        limits, sources = effective_limits(self.policy, overrides, role_ids, user_id)
        return [LimitLine(key, show(key, getattr(limits, key)), SOURCES[sources[key]]) for key in LIMIT_KEYS]

    async def set_limit(self, guild_id: int, actor_id: int, scope: Scope, target_id: int, key: str, raw: str) -> str:
        """Store a limit for the server, a role or a member; `default` removes it (the inherited value
        applies again). Returns what to tell the admin."""
        if key == "guild_monthly_usd" and scope != "server":
            raise UserError("`guild_monthly_usd` is the server's budget: set it with scope `server`.")
        target = _target(scope, target_id)
        before = _stored(await self.store.overrides(guild_id), scope, target_id, key)
        if raw.strip().lower() == "default":
            line = AuditLine(guild_id, actor_id, "set-limit", f"{target}: {key}", before, "default")
            await self.store.clear_override(scope, target_id, key, guild_id, line)
            said = f"{target}: `{key}` is back to the inherited value."
        else:
            value = parse_limit(key, raw)
            line = AuditLine(guild_id, actor_id, "set-limit", f"{target}: {key}", before, show(key, value))
            await self.store.set_override(LimitOverride(scope, target_id, key, value), guild_id, line)
            said = f"{target}: `{key}` is now {show(key, value)} (was {before})."
        await self._announce(guild_id, line)
        return said

    # ----- members ----------------------------------------------------------------------------------------

    async def grant(self, guild_id: int, actor_id: int, user_id: int, raw_amount: str, reason: str) -> str:
        amount = parse_usd(raw_amount, what="amount")
        if amount == 0:
            raise UserError("The amount must be more than $0.00.")
        line = AuditLine(guild_id, actor_id, "grant", f"user {user_id}", "", format_usd(amount), reason)
        await self.store.grant(guild_id, user_id, amount, datetime.now(UTC), line)
        await self._announce(guild_id, line)
        return f"Granted {format_usd(amount)} on <@{user_id}>'s allowance for this month."

    async def freeze(self, guild_id: int, actor_id: int, user_id: int, reason: str) -> str:
        line = AuditLine(guild_id, actor_id, "freeze", f"user {user_id}", "", "frozen", reason)
        await self.store.freeze(guild_id, user_id, reason, line)
        await self._announce(guild_id, line)
        return f"<@{user_id}> is frozen: their new commands are refused. Jobs in flight finish."

    async def unfreeze(self, guild_id: int, actor_id: int, user_id: int) -> str:
        line = AuditLine(guild_id, actor_id, "unfreeze", f"user {user_id}", "frozen", "")
        if not await self.store.unfreeze(guild_id, user_id, line):
            return f"<@{user_id}> was not frozen."
        await self._announce(guild_id, line)
        return f"<@{user_id}> can make videos again."

    # ----- the server -------------------------------------------------------------------------------------

    async def pause(self, guild_id: int, actor_id: int, reason: str) -> str:
        controls = await self.store.controls(guild_id)
        line = AuditLine(guild_id, actor_id, "pause", "server", _paused(controls.paused), "paused", reason)
        await self.store.set_controls(guild_id, replace(controls, paused=True, pause_reason=reason), line)
        await self._announce(guild_id, line)
        return "New videos are paused on this server; jobs in flight finish. `/admin resume` starts them again."

    async def resume(self, guild_id: int, actor_id: int) -> str:
        controls = await self.store.controls(guild_id)
        line = AuditLine(guild_id, actor_id, "resume", "server", _paused(controls.paused), "running")
        await self.store.set_controls(guild_id, replace(controls, paused=False, pause_reason=""), line)
        await self._announce(guild_id, line)
        return "New videos are allowed again on this server."

    async def set_quote_threshold(self, guild_id: int, actor_id: int, raw_amount: str) -> str:
        controls = await self.store.controls(guild_id)
        text = raw_amount.strip().lower()
        threshold = None if text in ("none", "off") else parse_usd(raw_amount, what="amount")
        before = "off" if controls.quote_threshold_micros is None else format_usd(controls.quote_threshold_micros)
        after = "off" if threshold is None else format_usd(threshold)
        line = AuditLine(guild_id, actor_id, "quote-threshold", "server", before, after)
        await self.store.set_controls(guild_id, replace(controls, quote_threshold_micros=threshold), line)
        await self._announce(guild_id, line)
        if threshold is None:
            return "Quotes are off: jobs start without asking."
        return f"Jobs costing {after} or more first show a private quote to confirm."

    async def set_log_channel(self, guild_id: int, actor_id: int, channel_id: int) -> str:
        controls = await self.store.controls(guild_id)
        before = "" if controls.log_channel_id is None else f"<#{controls.log_channel_id}>"
        line = AuditLine(guild_id, actor_id, "log-channel", "server", before, f"<#{channel_id}>")
        await self.store.set_controls(guild_id, replace(controls, log_channel_id=channel_id), line)
        await self._announce(guild_id, line)
        return f"Audit lines and pool alerts go to <#{channel_id}>."

    async def audit(self, guild_id: int, count: int) -> list[AuditEntry]:
        return await self.store.audit(guild_id, max(1, min(count, 50)))

    # ----- pools ------------------------------------------------------------------------------------------

    async def create_pool(
        self,
        guild_id: int,
        actor_id: int,
        name: str,
        raw_amount: str,
        period: Period,
        channel_id: int | None,
        role_id: int | None,
        on_empty: OnEmpty = "personal",
    ) -> str:
        name = " ".join(name.split())
        if not name or len(name) > MAX_POOL_NAME:
            raise UserError(f"A pool needs a name of 1 to {MAX_POOL_NAME} characters.")
        if channel_id is None and role_id is None:
            raise UserError("A pool pays for a channel or a role: give `channel`, `role` or both.")
        amount = parse_usd(raw_amount, what="amount")
        if amount == 0:
            raise UserError("The amount must be more than $0.00.")
        if any(pool.name == name for pool in await self.store.pools(guild_id)):
            raise UserError(f"There is already a pool named `{name}`; delete it first or choose another name.")
        what = (
            f"{format_usd(amount)} a {period}"
            + (f" for <#{channel_id}>" if channel_id else "")
            + (f" for <@&{role_id}>" if role_id else "")
        )
        line = AuditLine(guild_id, actor_id, "pool create", f"pool {name}", "", f"{what}, when empty: {on_empty}")
        pool = Pool(0, guild_id, name, amount, period, channel_id, role_id, on_empty)
        await self.store.create_pool(pool, line)
        await self._announce(guild_id, line)
        return f"Pool `{name}` created: {what}. When it is empty, jobs are " + (
            "paid from the member's own allowance." if on_empty == "personal" else "refused."
        )

    async def pools(self, guild_id: int) -> list[PoolStanding]:
        now = datetime.now(UTC)
        return [
            PoolStanding(pool, await self.store.pool_spent(pool.id, period_key(pool.period, now)))
            for pool in await self.store.pools(guild_id)
        ]

    async def delete_pool(self, guild_id: int, actor_id: int, name: str) -> str:
        line = AuditLine(guild_id, actor_id, "pool delete", f"pool {name}", "exists", "deleted")
        if not await self.store.delete_pool(guild_id, name, line):
            raise UserError(f"There is no pool named `{name}`.")
        await self._announce(guild_id, line)
        return f"Pool `{name}` deleted; its jobs in flight are still paid from it."

    async def _announce(self, guild_id: int, line: AuditLine) -> None:
        controls = await self.store.controls(guild_id)
        change = f"{line.before or '—'} → {line.after or '—'}"
        why = f" ({line.reason})" if line.reason else ""
        await self.notices.post(
            controls.log_channel_id, f"<@{line.actor_id}> **{line.action}** {line.target}: {change}{why}"
        )


def _target(scope: Scope, target_id: int) -> str:
    return {"server": "the server", "role": f"role <@&{target_id}>", "user": f"<@{target_id}>"}[scope]


def _stored(overrides: list[LimitOverride], scope: Scope, target_id: int, key: str) -> str:
    for override in overrides:
        if (override.scope, override.target_id, override.key) == (scope, target_id, key):
            return show(key, override.value)
    return "inherited"


def _paused(paused: bool) -> str:
    return "paused" if paused else "running"
