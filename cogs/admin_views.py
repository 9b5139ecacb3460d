"""How /admin's private answers read: limits with where each comes from, pools with what they spent this
period, and the latest audit lines. Plain text within Discord's 2000 characters.

Each renderer takes `say`, which puts a `Text` in the reader's language (`cogs.speech.to_member` for the
interaction): the lines are measured in that language, so what fits is what is sent. The default, `str`,
gives English.
"""

from __future__ import annotations

from collections.abc import Callable

import discord

from core.admin import AuditEntry
from core.text import tr
from services.admin import LimitLine, PoolStanding, audit_target, audit_word, per_period
from services.pricing import format_usd
from services.quotas import this_period

MAX_REPLY = 2000
Say = Callable[[str], str]


def fit(header: str, lines: list[str], limit: int = MAX_REPLY, say: Say = str) -> str:
    """The header and as many lines as fit in one message, then how many were left out."""
    text = header
    for index, line in enumerate(lines):
        more = "\n" + say(tr("… and {count} more.", count=len(lines) - index))
        room_after = 0 if index == len(lines) - 1 else len(more)  # keep room to say what is left out
        if len(text) + 1 + len(line) + room_after > limit:
            return text + more
        text += "\n" + line
    return text


def render_limits(whom: str, lines: list[LimitLine], say: Say = str) -> str:
    return fit(
        say(tr("**Limits for {whom}** (value · set by)", whom=whom)),
        [say(tr("`{key}`: {value} · {source}", key=line.key, value=line.value, source=line.source)) for line in lines],
        say=say,
    )


def render_pools(standings: list[PoolStanding], say: Say = str) -> str:
    if not standings:
        return say(tr("No budget pools on this server. `/admin pool create` makes one."))
    lines = []
    for standing in standings:
        pool = standing.pool
        pays_for = [f"<#{pool.channel_id}>"] if pool.channel_id else []
        if pool.role_id:
            pays_for.append(f"<@&{pool.role_id}>")
        whom = pays_for[0] if len(pays_for) == 1 else tr("{first} and {second}", first=pays_for[0], second=pays_for[1])
        left = max(pool.amount_micros - standing.spent_micros, 0)
        when_empty = tr("own allowance") if pool.on_empty == "personal" else tr("refused")
        lines.append(
            say(
                tr(
                    "**{name}**: {budget} for {whom} · spent {spent} {this_period} ({left} left) · "
                    "when empty: {when_empty}",
                    name=pool.name,
                    budget=per_period(pool.amount_micros, pool.period),
                    whom=whom,
                    spent=format_usd(standing.spent_micros),
                    this_period=this_period(pool.period),
                    left=format_usd(left),
                    when_empty=when_empty,
                )
            )
        )
    return fit(say(tr("**Budget pools**")), lines, say=say)


def render_audit(entries: list[AuditEntry], say: Say = str) -> str:
    if not entries:
        return say(tr("No admin changes recorded on this server yet."))
    lines = []
    for entry in entries:
        line = entry.line
        values = {
            "when": f"<t:{int(entry.at.timestamp())}:R>",
            "actor": f"<@{line.actor_id}>",
            "action": line.action,
            "target": audit_target(line.target),
            "before": audit_word(line.before) if line.before else "—",
            "after": audit_word(line.after) if line.after else "—",
        }
        if line.reason:
            text = tr(
                "{when} {actor} **{action}** {target}: {before} → {after} (reason: {reason})",
                reason=line.reason[:200],
                **values,
            )
        else:
            text = tr("{when} {actor} **{action}** {target}: {before} → {after}", **values)
        lines.append(say(text))
    return fit(say(tr("**Latest admin changes** (newest first, {count})", count=len(entries))), lines, say=say)


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
