"""What a server's admins can do at runtime: limits per server, role or member, grants, freezes, a pause,
budget pools, the quote threshold and the log channel — each stored (it overrides config.toml from the
next command on), audited in the same transaction, and announced in the log channel.

Values come as the admin typed them and are checked here: a bad one is a UserError that names the
problem, and nothing is stored.
"""

from __future__ import annotations

import re
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
    PoolPeriod,
    Scope,
)
from core.errors import UserError
from core.text import N_, Text, tr
from services.notices import LogChannel
from services.pricing import format_usd, parse_usd
from services.quotas import LIMIT_KEYS, QuotaPolicy, effective_limits, period_key

MAX_COUNT = 1_000_000
MAX_POOL_NAME = 32
SOURCES = {"config": N_("config.toml"), "config role": N_("config.toml (role)"), "server": N_("server"),
           "role": N_("role"), "member": N_("member")}  # fmt: skip
NO_LIMIT = N_("no limit")
# The words an audit line's values are stored with (in English, as data), said again in the reader's
# language when the line is shown or announced.
AUDIT_WORDS = {
    word: template
    for word, template in (
        ("no limit", NO_LIMIT),
        ("inherited", N_("inherited")),
        ("default", N_("default")),
        ("frozen", N_("frozen")),
        ("paused", N_("paused")),
        ("running", N_("not paused")),  # the server state, not a job's (which has its own word)
        ("off", N_("off")),
        ("exists", N_("exists")),
        ("deleted", N_("deleted")),
        ("server", N_("server")),
    )
}
PER_PERIOD = {
    "day": N_("{amount} a day"),
    "week": N_("{amount} a week"),
    "month": N_("{amount} a month"),
    "contest": N_("{amount} for the contest"),
}


@dataclass(frozen=True)
class LimitLine:
    key: str
    value: str  # as shown: "$2.00", "10", "no limit" (a Text)
    source: Text  # config.toml, config.toml (role), server, role, member


@dataclass(frozen=True)
class PoolStanding:
    pool: Pool
    spent_micros: int  # in its current period


def show(key: str, value: int | None) -> str:
    if value is None:
        return tr(NO_LIMIT)
    return format_usd(value) if key.endswith("_usd") else str(value)


def parse_limit(key: str, raw: str) -> int | None:
    """An admin's value for `key`: dollars for dollar limits ("none" lifts them), a whole number else."""
    text = raw.strip().lower()
    if key not in ADMIN_LIMIT_KEYS:
        raise UserError(
            tr("`{key}` is not a limit admins can set ({keys}).", key=key, keys=", ".join(ADMIN_LIMIT_KEYS))
        )
    if key in DOLLAR_KEYS:
        if text in ("none", "no limit", "unlimited"):
            return None
        return parse_usd(raw, what=key)
    if text in ("none", "no limit", "unlimited"):
        raise UserError(tr("`{key}` needs a number; only dollar limits can be lifted with `none`.", key=key))
    if not text.isdigit():
        raise UserError(tr("`{key}` needs a whole number (got `{raw}`).", key=key, raw=raw.strip()[:40]))
    value = int(text)
    if key == "user_max_in_flight" and value < 1:
        raise UserError(tr("`user_max_in_flight` must be at least 1 (use freeze to stop a member)."))
    if value > MAX_COUNT:
        raise UserError(tr("`{key}` can be at most {most:,}.", key=key, most=MAX_COUNT))
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
        return [LimitLine(key, show(key, getattr(limits, key)), tr(SOURCES[sources[key]])) for key in LIMIT_KEYS]

    async def set_limit(self, guild_id: int, actor_id: int, scope: Scope, target_id: int, key: str, raw: str) -> Text:
        """Store a limit for the server, a role or a member; `default` removes it (the inherited value
        applies again). Returns what to tell the admin."""
        if key == "guild_monthly_usd" and scope != "server":
            raise UserError(tr("`guild_monthly_usd` is the server's budget: set it with scope `server`."))
        target = _target(scope, target_id)
        before = _stored(await self.store.overrides(guild_id), scope, target_id, key)
        if raw.strip().lower() == "default":
            line = AuditLine(guild_id, actor_id, "set-limit", f"{target}: {key}", str(before), "default")
            await self.store.clear_override(scope, target_id, key, guild_id, line)
            said = tr("{target}: `{key}` is back to the inherited value.", target=target, key=key)
        else:
            value = parse_limit(key, raw)
            line = AuditLine(guild_id, actor_id, "set-limit", f"{target}: {key}", str(before), str(show(key, value)))
            await self.store.set_override(LimitOverride(scope, target_id, key, value), guild_id, line)
            said = tr(
                "{target}: `{key}` is now {value} (was {before}).",
                target=target,
                key=key,
                value=show(key, value),
                before=before,
            )
        await self._announce(guild_id, line)
        return said

    # ----- members ----------------------------------------------------------------------------------------

    async def grant(self, guild_id: int, actor_id: int, user_id: int, raw_amount: str, reason: str) -> Text:
        amount = parse_usd(raw_amount, what="amount")
        if amount == 0:
            raise UserError(tr(MORE_THAN_ZERO))
        line = AuditLine(guild_id, actor_id, "grant", f"user {user_id}", "", format_usd(amount), reason)
        await self.store.grant(guild_id, user_id, amount, datetime.now(UTC), line)
        await self._announce(guild_id, line)
        return tr(
            "Granted {amount} on <@{member}>'s allowance for this month.",
            amount=format_usd(amount),
            member=user_id,
        )

    async def freeze(self, guild_id: int, actor_id: int, user_id: int, reason: str) -> Text:
        line = AuditLine(guild_id, actor_id, "freeze", f"user {user_id}", "", "frozen", reason)
        await self.store.freeze(guild_id, user_id, reason, line)
        await self._announce(guild_id, line)
        return tr("<@{member}> is frozen: their new commands are refused. Jobs in flight finish.", member=user_id)

    async def unfreeze(self, guild_id: int, actor_id: int, user_id: int) -> Text:
        line = AuditLine(guild_id, actor_id, "unfreeze", f"user {user_id}", "frozen", "")
        if not await self.store.unfreeze(guild_id, user_id, line):
            return tr("<@{member}> was not frozen.", member=user_id)
        await self._announce(guild_id, line)
        return tr("<@{member}> can make videos again.", member=user_id)

    # ----- the server -------------------------------------------------------------------------------------

    async def pause(self, guild_id: int, actor_id: int, reason: str) -> Text:
        controls = await self.store.controls(guild_id)
        line = AuditLine(guild_id, actor_id, "pause", "server", _paused(controls.paused), "paused", reason)
        await self.store.set_controls(guild_id, replace(controls, paused=True, pause_reason=reason), line)
        await self._announce(guild_id, line)
        return tr("New videos are paused on this server; jobs in flight finish. `/admin resume` starts them again.")

    async def resume(self, guild_id: int, actor_id: int) -> Text:
        controls = await self.store.controls(guild_id)
        line = AuditLine(guild_id, actor_id, "resume", "server", _paused(controls.paused), "running")
        await self.store.set_controls(guild_id, replace(controls, paused=False, pause_reason=""), line)
        await self._announce(guild_id, line)
        return tr("New videos are allowed again on this server.")

    async def set_quote_threshold(self, guild_id: int, actor_id: int, raw_amount: str) -> Text:
        controls = await self.store.controls(guild_id)
        text = raw_amount.strip().lower()
        threshold = None if text in ("none", "off") else parse_usd(raw_amount, what="amount")
        before = "off" if controls.quote_threshold_micros is None else format_usd(controls.quote_threshold_micros)
        after = "off" if threshold is None else format_usd(threshold)
        line = AuditLine(guild_id, actor_id, "quote-threshold", "server", before, after)
        await self.store.set_controls(guild_id, replace(controls, quote_threshold_micros=threshold), line)
        await self._announce(guild_id, line)
        if threshold is None:
            return tr("Quotes are off: jobs start without asking.")
        return tr("Jobs costing {amount} or more first show a private quote to confirm.", amount=after)

    async def set_log_channel(self, guild_id: int, actor_id: int, channel_id: int) -> Text:
        controls = await self.store.controls(guild_id)
        before = "" if controls.log_channel_id is None else f"<#{controls.log_channel_id}>"
        line = AuditLine(guild_id, actor_id, "log-channel", "server", before, f"<#{channel_id}>")
        await self.store.set_controls(guild_id, replace(controls, log_channel_id=channel_id), line)
        await self._announce(guild_id, line)
        return tr("Audit lines and pool alerts go to <#{channel}>.", channel=channel_id)

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
    ) -> Text:
        name = " ".join(name.split())
        if not name or len(name) > MAX_POOL_NAME:
            raise UserError(tr("A pool needs a name of 1 to {most} characters.", most=MAX_POOL_NAME))
        if channel_id is None and role_id is None:
            raise UserError(tr("A pool pays for a channel or a role: give `channel`, `role` or both."))
        amount = parse_usd(raw_amount, what="amount")
        if amount == 0:
            raise UserError(tr(MORE_THAN_ZERO))
        if any(pool.name == name for pool in await self.store.pools(guild_id)):
            raise UserError(
                tr("There is already a pool named `{name}`; delete it first or choose another name.", name=name)
            )
        what = pool_budget(amount, period, channel_id, role_id)
        line = AuditLine(guild_id, actor_id, "pool create", f"pool {name}", "", f"{what}, when empty: {on_empty}")
        pool = Pool(0, guild_id, name, amount, period, channel_id, role_id, on_empty)
        await self.store.create_pool(pool, line)
        await self._announce(guild_id, line)
        if on_empty == "personal":
            return tr(
                "Pool `{name}` created: {budget}. When it is empty, jobs are paid from the member's own allowance.",
                name=name,
                budget=what,
            )
        return tr("Pool `{name}` created: {budget}. When it is empty, jobs are refused.", name=name, budget=what)

    async def pools(self, guild_id: int) -> list[PoolStanding]:
        now = datetime.now(UTC)
        return [
            PoolStanding(pool, await self.store.pool_spent(pool.id, period_key(pool.period, now)))
            for pool in await self.store.pools(guild_id)
        ]

    async def delete_pool(self, guild_id: int, actor_id: int, name: str) -> Text:
        line = AuditLine(guild_id, actor_id, "pool delete", f"pool {name}", "exists", "deleted")
        if not await self.store.delete_pool(guild_id, name, line):
            raise UserError(tr("There is no pool named `{name}`.", name=name))
        await self._announce(guild_id, line)
        return tr("Pool `{name}` deleted; its jobs in flight are still paid from it.", name=name)

    async def _announce(self, guild_id: int, line: AuditLine) -> None:
        controls = await self.store.controls(guild_id)
        await self.notices.post(controls.log_channel_id, audit_text(line))


MORE_THAN_ZERO = N_("The amount must be more than $0.00.")


def per_period(amount: int, period: PoolPeriod) -> Text:
    """A pool's amount for its period, e.g. "$20.00 a week"."""
    return tr(PER_PERIOD[period], amount=format_usd(amount))


def pool_budget(amount: int, period: PoolPeriod, channel_id: int | None, role_id: int | None) -> Text:
    """A pool's budget as the audit and the answers say it: "$20.00 a week for #channel and @role"."""
    budget = per_period(amount, period)
    if channel_id and role_id:
        return tr("{budget} for <#{channel}> and <@&{role}>", budget=budget, channel=channel_id, role=role_id)
    if channel_id:
        return tr("{budget} for <#{channel}>", budget=budget, channel=channel_id)
    if role_id:
        return tr("{budget} for <@&{role}>", budget=budget, role=role_id)
    return budget


def audit_word(value: str) -> str:
    """An audit value as stored (English data): the known words as a Text, anything else as it is."""
    template = AUDIT_WORDS.get(value)
    return value if template is None else tr(template)


_USER, _POOL = re.compile(r"user (\d+)"), re.compile(r"pool (.+)")
_SERVER_LIMIT, _ROLE_LIMIT = re.compile(r"the server: (\w+)"), re.compile(r"role <@&(\d+)>: (\w+)")


def audit_target(target: str) -> str:
    """An audit line's target as stored ("user 123", "pool brainstorm", "the server: user_daily_usd"),
    said again in the reader's language (anything unknown as it is)."""
    if target in AUDIT_WORDS:
        return audit_word(target)
    if match := _USER.fullmatch(target):
        return tr("user {id}", id=match[1])
    if match := _POOL.fullmatch(target):
        return tr("pool {name}", name=match[1])
    if match := _SERVER_LIMIT.fullmatch(target):
        return tr("the server: {key}", key=match[1])
    if match := _ROLE_LIMIT.fullmatch(target):
        return tr("role <@&{role}>: {key}", role=match[1], key=match[2])
    return target  # a member's limit ("<@123>: key"), or a line from an older version


def audit_text(line: AuditLine) -> Text:
    """The notice for an admin change: who, what, on whom, before → after (and why)."""
    values = {
        "actor": f"<@{line.actor_id}>",
        "action": line.action,
        "target": audit_target(line.target),
        "before": audit_word(line.before) if line.before else "—",
        "after": audit_word(line.after) if line.after else "—",
    }
    if line.reason:
        return tr("{actor} **{action}** {target}: {before} → {after} ({reason})", reason=line.reason, **values)
    return tr("{actor} **{action}** {target}: {before} → {after}", **values)


def _target(scope: Scope, target_id: int) -> str:
    if scope == "server":
        return tr("the server")
    if scope == "role":
        return tr("role <@&{role}>", role=target_id)
    return f"<@{target_id}>"


def _stored(overrides: list[LimitOverride], scope: Scope, target_id: int, key: str) -> str:
    for override in overrides:
        if (override.scope, override.target_id, override.key) == (scope, target_id, key):
            return show(key, override.value)
    return tr(AUDIT_WORDS["inherited"])


def _paused(paused: bool) -> str:
    return "paused" if paused else "running"
