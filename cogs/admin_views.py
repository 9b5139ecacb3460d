"""How /admin's private answers read: limits with where each comes from, pools with what they spent this
period, and the latest audit lines. Plain text within Discord's 2000 characters."""

from __future__ import annotations

import discord

from core.admin import AuditEntry
from services.admin import LimitLine, PoolStanding
from services.pricing import format_usd

MAX_REPLY = 2000


def fit(header: str, lines: list[str], limit: int = MAX_REPLY) -> str:
    """The header and as many lines as fit in one message, then how many were left out."""
    text = header
    for index, line in enumerate(lines):
        more = f"\n… and {len(lines) - index} more."
        room_after = 0 if index == len(lines) - 1 else len(more)  # keep room to say what is left out
        if len(text) + 1 + len(line) + room_after > limit:
            return text + more
        text += "\n" + line
    return text


def render_limits(whom: str, lines: list[LimitLine]) -> str:
    return fit(
        f"**Limits for {whom}** (value · set by)",
        [f"`{line.key}`: {line.value} · {line.source}" for line in lines],
    )


def render_pools(standings: list[PoolStanding]) -> str:
    if not standings:
        return "No budget pools on this server. `/admin pool create` makes one."
    lines = []
    for standing in standings:
        pool = standing.pool
        pays_for = [f"<#{pool.channel_id}>"] if pool.channel_id else []
        if pool.role_id:
            pays_for.append(f"<@&{pool.role_id}>")
        left = max(pool.amount_micros - standing.spent_micros, 0)
        when_empty = "own allowance" if pool.on_empty == "personal" else "refused"
        lines.append(
            f"**{pool.name}**: {format_usd(pool.amount_micros)} a {pool.period} for {' and '.join(pays_for)} · "
            f"spent {format_usd(standing.spent_micros)} this {pool.period} ({format_usd(left)} left) · "
            f"when empty: {when_empty}"
        )
    return fit("**Budget pools**", lines)


def render_audit(entries: list[AuditEntry]) -> str:
    if not entries:
        return "No admin changes recorded on this server yet."
    lines = []
    for entry in entries:
        line = entry.line
        text = (
            f"<t:{int(entry.at.timestamp())}:R> <@{line.actor_id}> **{line.action}** {line.target}: "
            f"{line.before or '—'} → {line.after or '—'}"
        )
        if line.reason:
            text += f" (reason: {line.reason[:200]})"
        lines.append(text)
    return fit(f"**Latest admin changes** (newest first, {len(entries)})", lines)


def name_in(guild: discord.Guild | None, by: str, key: object) -> str | None:
    """A spend report's row label from what the client knows (a member's or channel's name), or None
    to keep the raw id."""
    if guild is None or not isinstance(key, int):
        return None
    if by == "user":
        member = guild.get_member(key)
        return member.display_name if member else None
    if by == "channel":
        channel = guild.get_channel(key)
        return f"#{channel.name}" if channel else None
    return None
