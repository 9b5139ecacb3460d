"""Moderation as every layer sees it: a server's blocklist and the strikes its members collect.

A strike is a prompt the blocklist refused, or a job a provider's content filter blocked. With
`moderation.strikes_to_freeze` set, a member who collects that many within 24 hours is frozen (the
admin freeze: their new videos are refused until an admin unfreezes them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from core.admin import AuditLine

RuleKind = Literal["word", "regex"]
StrikeSource = Literal["blocklist", "provider"]


@dataclass(frozen=True)
class BlockRule:
    id: int
    guild_id: int
    kind: RuleKind
    pattern: str
    added_by: int
    at: datetime


@dataclass(frozen=True)
class Strike:
    guild_id: int
    user_id: int
    source: StrikeSource
    job_id: int | None = None
    detail: str = ""


class ModerationStore(Protocol):
    async def block_rules(self, guild_id: int) -> list[BlockRule]: ...

    async def add_block_rule(self, guild_id: int, kind: RuleKind, pattern: str, audit: AuditLine) -> bool:
        """False when the server has this rule already (nothing written)."""
        ...

    async def remove_block_rule(self, guild_id: int, kind: RuleKind, pattern: str, audit: AuditLine) -> bool:
        """False when there was no such rule (nothing written)."""
        ...

    async def add_strike(self, strike: Strike, at: datetime, audit: AuditLine | None) -> bool:
        """Record a strike (with its audit line); False when this job's verdict was counted already."""
        ...

    async def strikes_since(self, guild_id: int, user_id: int, since: datetime) -> int: ...


ReviewState = Literal["held", "pending", "approved", "rejected"]


@dataclass(frozen=True)
class ReviewItem:
    """A clip made in a channel under review: held from its reservation on, pending once it waits in the
    review channel, then approved (posted publicly) or rejected (the requester told privately)."""

    job_id: int
    guild_id: int
    channel_id: int
    user_id: int
    state: ReviewState
    review_message_id: int | None = None
    decided_by: int | None = None
    reason: str = ""


class ReviewStore(Protocol):
    async def review_scopes(self, guild_id: int) -> set[int]:
        """The channels under review (0: the whole server)."""
        ...

    async def set_review_scope(self, guild_id: int, channel_id: int, on: bool, audit: AuditLine) -> bool:
        """False when it was so already (nothing written)."""
        ...

    async def review_queue(self, guild_id: int) -> int | None: ...

    async def set_review_queue(self, guild_id: int, channel_id: int, audit: AuditLine) -> None: ...

    async def hold(self, item: ReviewItem, at: datetime) -> None: ...

    async def review_item(self, job_id: int) -> ReviewItem | None: ...

    async def mark_pending(self, job_id: int, review_message_id: int) -> None: ...

    async def decide(
        self, job_id: int, approve: bool, moderator_id: int, reason: str, audit: AuditLine
    ) -> ReviewItem | None:
        """Approve or reject a pending item (with its audit line); None when it was not pending (decided
        already, by someone else's click)."""
        ...
