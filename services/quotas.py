"""Quota arithmetic: which limits apply to a member, whether a new job fits, and when windows reset.

Pure functions over `Usage` (read by storage inside the reservation transaction), so the same rules
serve the atomic reservation and the /quota summary.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from core.admin import AdminStore, LimitOverride, Pool, PoolDraw, PoolPeriod
from core.errors import QuotaExceeded
from core.jobs import Usage
from core.store import JobStore, ReservationCheck
from core.text import N_, Text, tr
from services.pricing import format_usd

LIMIT_KEYS = (
    "user_daily_videos",
    "user_daily_usd",
    "user_monthly_usd",
    "guild_monthly_usd",
    "global_monthly_usd",
    "user_max_in_flight",
)


@dataclass(frozen=True)
class Limits:
    """Quota limits; None means no limit. Dollar limits are in micro-dollars."""

    user_daily_videos: int | None = None
    user_daily_usd: int | None = None
    user_monthly_usd: int | None = None
    guild_monthly_usd: int | None = None
    global_monthly_usd: int | None = None
    user_max_in_flight: int | None = None


@dataclass(frozen=True)
class QuotaPolicy:
    """The base limits, and per role the keys that role overrides (a value of None lifts the limit)."""

    base: Limits = field(default_factory=Limits)
    roles: Mapping[int, Mapping[str, int | None]] = field(default_factory=dict)
    max_variants: int = 4  # the most variants one command may ask for (config.toml quotas.max_variants)

    def for_member(self, role_ids: Iterable[int] = ()) -> Limits:
        """The base limits, overridden key by key by the member's roles; among several roles that set
        the same key the most generous wins (no limit beats any number)."""
        overrides = [self.roles[role] for role in role_ids if role in self.roles]
        changes: dict[str, int | None] = {}
        for key in LIMIT_KEYS:
            chosen = [override[key] for override in overrides if key in override]
            if chosen:
                changes[key] = None if None in chosen else max(value for value in chosen if value is not None)
        return replace(self.base, **changes)


def effective_limits(
    policy: QuotaPolicy, overrides: Iterable[LimitOverride], role_ids: Iterable[int], user_id: int | None
) -> tuple[Limits, dict[str, str]]:
    """A member's limits and where each comes from: config.toml (with its role tables), then what admins
    stored for the server, for the member's roles (the most generous among them, as in config) and for
    the member, each overriding the one before."""
    roles = set(role_ids)
    limits = policy.for_member(roles)
    sources = {key: "config role" if _set_by_role(policy, roles, key) else "config" for key in LIMIT_KEYS}
    stored = list(overrides)
    layers: tuple[tuple[str, list[LimitOverride]], ...] = (
        ("server", [o for o in stored if o.scope == "server"]),
        ("role", [o for o in stored if o.scope == "role" and o.target_id in roles]),
        ("member", [o for o in stored if o.scope == "user" and o.target_id == user_id]),
    )
    changes: dict[str, int | None] = {}
    for source, layer in layers:
        for key in {o.key for o in layer}:
            values = [o.value for o in layer if o.key == key]
            changes[key] = None if None in values else max(v for v in values if v is not None)
            sources[key] = source
    return replace(limits, **changes), sources


def _set_by_role(policy: QuotaPolicy, roles: set[int], key: str) -> bool:
    return any(key in policy.roles[role] for role in roles if role in policy.roles)


def next_day(now: datetime) -> datetime:
    return datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)


def next_month(now: datetime) -> datetime:
    return datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=UTC)


# "this day / this week / this month": a pool's period as the member reads it.
THIS_PERIOD = {
    "day": N_("this day"),
    "week": N_("this week"),
    "month": N_("this month"),
    "contest": N_("this contest"),
}


def this_period(period: PoolPeriod) -> Text:
    return tr(THIS_PERIOD[period])


@dataclass(frozen=True)
class Refusal:
    limit: str  # the config key
    message: Text
    resets_at: datetime | None


def monthly_allowance(limits: Limits, usage: Usage) -> int | None:
    """The member's monthly dollar limit with this month's grants on top (None: no limit)."""
    monthly = limits.user_monthly_usd
    return None if monthly is None else monthly + usage.user_month_grants


def find_refusal(limits: Limits, usage: Usage, cost: int, now: datetime, *, personal: bool = True) -> Refusal | None:
    """The first limit a new job of `cost` micros would break, or None if it fits. With `personal`
    False (a pool pays), the member's own dollar limits are left out; counts and the server's and the
    bot's budgets still apply."""
    day_end, month_end = next_day(now), next_month(now)
    if limits.user_max_in_flight is not None and usage.user_in_flight >= limits.user_max_in_flight:
        return Refusal(
            "user_max_in_flight",
            tr(
                "You already have {count} video(s) generating (the limit is {limit} at a time). "
                "Wait for one to finish.",
                count=usage.user_in_flight,
                limit=limits.user_max_in_flight,
            ),
            None,
        )
    if limits.user_daily_videos is not None and usage.user_day_videos + 1 > limits.user_daily_videos:
        return Refusal(
            "user_daily_videos",
            tr("You have used your {count} videos for today.", count=limits.user_daily_videos),
            day_end,
        )
    monthly = monthly_allowance(limits, usage)
    personal_checks = (
        ("user_daily_usd", limits.user_daily_usd, usage.user_day_micros, tr("your daily budget"), day_end),
        ("user_monthly_usd", monthly, usage.user_month_micros, tr("your monthly budget"), month_end),
    )
    money_checks = (
        *(personal_checks if personal else ()),
        (
            "guild_monthly_usd",
            limits.guild_monthly_usd,
            usage.guild_month_micros,
            tr("this server's monthly budget"),
            month_end,
        ),
        (
            "global_monthly_usd",
            limits.global_monthly_usd,
            usage.global_month_micros,
            tr("the bot's monthly budget"),
            month_end,
        ),
    )
    for key, limit, used, label, resets in money_checks:
        if limit is not None and used + cost > limit:
            left = max(limit - used, 0)
            return Refusal(
                key,
                tr(
                    "This video costs {cost} but {budget} has {left} left (of {limit}).",
                    cost=format_usd(cost),
                    budget=label,
                    left=format_usd(left),
                    limit=format_usd(limit),
                ),
                resets,
            )
    return None


def check_fits(
    limits: Limits, cost: int, now: datetime, pool: Pool | None = None, funding: Funding | None = None
) -> ReservationCheck:
    """The reservation check (`JobStore.reserve` runs it inside its transaction): raises QuotaExceeded
    when the job does not fit. With a `pool`, the pool pays while it has room; an empty pool either
    refuses or falls back to the member's own allowance (its `on_empty`). `funding` records which."""

    def check(usage: Usage) -> PoolDraw | None:
        if pool is not None:
            draw = PoolDraw(pool.id, period_key(pool.period, now))
            if usage.pool_micros + cost <= pool.amount_micros:
                _raise_if(find_refusal(limits, usage, cost, now, personal=False))
                if funding is not None:
                    funding.pool = pool
                return draw
            left = max(pool.amount_micros - usage.pool_micros, 0)
            empty = tr(
                "The {pool} budget has {left} left {this_period} and this video costs {cost}.",
                pool=pool.name,
                left=format_usd(left),
                this_period=this_period(pool.period),
                cost=format_usd(cost),
            )
            if pool.on_empty == "refuse":
                raise QuotaExceeded(empty, limit="pool", resets_at=period_end(pool.period, now))
            if funding is not None:
                funding.note = tr("{empty} This one comes from your own allowance.", empty=empty)
        _raise_if(find_refusal(limits, usage, cost, now))
        return None

    return check


def _raise_if(refusal: Refusal | None) -> None:
    if refusal is not None:
        raise QuotaExceeded(refusal.message, limit=refusal.limit, resets_at=refusal.resets_at)


@dataclass
class Funding:
    """What paid for a reservation, filled in by its check: a pool, or the member's own allowance (and
    why, when their pool was empty)."""

    pool: Pool | None = None
    note: str = ""  # a Text when there is something to say


def period_key(period: PoolPeriod, now: datetime) -> str:
    """The pool period `now` falls in: a UTC day, ISO week or month; a contest's pool has one period."""
    if period == "contest":
        return "contest"
    if period == "day":
        return now.strftime("%Y-%m-%d")
    if period == "week":
        year, week, _ = now.isocalendar()
        return f"{year}-W{week:02d}"
    return now.strftime("%Y-%m")


def period_end(period: PoolPeriod, now: datetime) -> datetime | None:
    """When the pool's period starts again (None: never, a contest's)."""
    if period == "contest":
        return None
    if period == "day":
        return next_day(now)
    if period == "week":
        start = datetime(now.year, now.month, now.day, tzinfo=UTC) - timedelta(days=now.weekday())
        return start + timedelta(days=7)
    return next_month(now)


def pick_pool(pools: Iterable[Pool], channel_id: int | None, role_ids: Iterable[int]) -> Pool | None:
    """The pool that pays for a job: its channel's first (a running contest's before any other), else one
    of the member's roles' (the first made). Only one pool pays for a job."""
    pools = list(pools)
    by_channel = [pool for pool in pools if pool.channel_id is not None and pool.channel_id == channel_id]
    by_channel.sort(key=lambda pool: pool.period != "contest")  # stable: otherwise the first made
    if by_channel:
        return by_channel[0]
    roles = set(role_ids)
    by_role = [pool for pool in pools if pool.role_id is not None and pool.role_id in roles]
    return by_role[0] if by_role else None


@dataclass(frozen=True)
class QuotaLine:
    label: Text
    used: str
    limit: str | None
    left: str | None
    resets_at: datetime | None


def summarise(limits: Limits, usage: Usage, now: datetime, guild: bool) -> list[QuotaLine]:
    """What /quota shows: each limit with its usage, what is left and when it resets."""
    day_end, month_end = next_day(now), next_month(now)

    def money(label: Text, used: int, limit: int | None, resets: datetime) -> QuotaLine:
        if limit is None:
            return QuotaLine(label, format_usd(used), None, None, resets)
        return QuotaLine(label, format_usd(used), format_usd(limit), format_usd(max(limit - used, 0)), resets)

    videos_limit = limits.user_daily_videos
    lines = [
        QuotaLine(
            tr("Videos today"),
            str(usage.user_day_videos),
            None if videos_limit is None else str(videos_limit),
            None if videos_limit is None else str(max(videos_limit - usage.user_day_videos, 0)),
            day_end,
        ),
        money(tr("Your spend today"), usage.user_day_micros, limits.user_daily_usd, day_end),
        money(tr("Your spend this month"), usage.user_month_micros, limits.user_monthly_usd, month_end),
    ]
    if guild:
        lines.append(
            money(tr("Server budget this month"), usage.guild_month_micros, limits.guild_monthly_usd, month_end)
        )
    return lines


@dataclass(frozen=True)
class QuotaSummary:
    lines: list[QuotaLine]
    in_flight: int
    max_in_flight: int | None


class QuotaBook:
    """Reads a member's standing against their limits (what /quota shows): config.toml's limits with
    what this server's admins stored, and the budget pool a job in this channel would draw from."""

    def __init__(self, store: JobStore, policy: QuotaPolicy, admin: AdminStore | None = None) -> None:
        self._store = store
        self._policy = policy
        self._admin = admin

    async def summary(
        self,
        user_id: int,
        guild_id: int | None,
        role_ids: Iterable[int],
        now: datetime | None = None,
        channel_id: int | None = None,
    ) -> QuotaSummary:
        now = now or datetime.now(UTC)
        roles = tuple(role_ids)
        state = await self._admin.server_state(guild_id, user_id) if self._admin and guild_id else None
        limits, _ = effective_limits(self._policy, state.overrides if state else (), roles, user_id)
        pool = pick_pool(state.pools, channel_id, roles) if state else None
        draw = PoolDraw(pool.id, period_key(pool.period, now)) if pool else None
        usage = await self._store.usage(user_id, guild_id, now, draw)
        lines = summarise(
            replace(limits, user_monthly_usd=monthly_allowance(limits, usage)), usage, now, guild=guild_id is not None
        )
        if pool is not None:
            left = max(pool.amount_micros - usage.pool_micros, 0)
            lines.insert(
                0,
                QuotaLine(
                    tr("Budget pool {pool} (pays for jobs here)", pool=pool.name),
                    format_usd(usage.pool_micros),
                    format_usd(pool.amount_micros),
                    format_usd(left),
                    period_end(pool.period, now),
                ),
            )
        return QuotaSummary(lines, usage.user_in_flight, limits.user_max_in_flight)
