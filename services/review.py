"""Review mode: in a channel (or a whole server) under review, a finished clip is not posted publicly. It
waits in the server's review channel with Approve and Reject; Approve posts it where it was asked for,
Reject tells the requester privately why. The clip is charged whatever the verdict: the video service
made it and was paid.

Whether a job is reviewed is decided when it is reserved (`hold`) and stored, so a restart, or review
being switched off meanwhile, never lets a held clip out unreviewed.
"""

from __future__ import annotations

from core.admin import AuditLine
from core.clock import utcnow
from core.errors import UserError
from core.moderation import ReviewItem, ReviewStore
from core.text import Text, tr

WHOLE_SERVER = 0


class ReviewService:
    def __init__(self, store: ReviewStore) -> None:
        self.store = store

    async def reviewing(self, guild_id: int | None, channel_id: int | None) -> bool:
        if guild_id is None:
            return False
        scopes = await self.store.review_scopes(guild_id)
        return WHOLE_SERVER in scopes or (channel_id is not None and channel_id in scopes)

    async def hold(
        self, job_id: int, guild_id: int | None, channel_id: int | None, user_id: int, *, always: bool = False
    ) -> bool:
        """Mark a job just reserved as reviewed when its channel is under review (or `always`: a contest
        that reviews its entries); True if it is."""
        if guild_id is None or channel_id is None:
            return False
        if not always and not await self.reviewing(guild_id, channel_id):
            return False
        await self.store.hold(ReviewItem(job_id, guild_id, channel_id, user_id, "held"), utcnow())
        return True

    async def item(self, job_id: int) -> ReviewItem | None:
        return await self.store.review_item(job_id)

    async def queue(self, guild_id: int) -> int | None:
        return await self.store.review_queue(guild_id)

    async def posted_for_review(self, job_id: int, message_id: int) -> None:
        await self.store.mark_pending(job_id, message_id)

    async def decide(self, job_id: int, moderator_id: int, approve: bool, reason: str = "") -> ReviewItem | None:
        """Approve or reject; None when the item was decided already (two moderators clicked)."""
        item = await self.store.review_item(job_id)
        if item is None:
            return None
        verdict = "approved" if approve else "rejected"
        line = AuditLine(
            item.guild_id, moderator_id, f"review {verdict}", f"job #{job_id} by <@{item.user_id}>", "", "", reason
        )
        return await self.store.decide(job_id, approve, moderator_id, reason, line)

    # ----- what moderators change -----------------------------------------------------------------------

    async def set_queue(self, guild_id: int, actor_id: int, channel_id: int) -> Text:
        line = AuditLine(guild_id, actor_id, "review queue", f"<#{channel_id}>")
        await self.store.set_review_queue(guild_id, channel_id, line)
        return tr("Clips held for review now wait in <#{channel}>.", channel=channel_id)

    async def set_review(self, guild_id: int, actor_id: int, on: bool, channel_id: int | None) -> Text:
        if on and await self.store.review_queue(guild_id) is None:
            raise UserError(tr("Choose where held clips wait first: `/mod review queue channel:`."))
        scope = WHOLE_SERVER if channel_id is None else channel_id
        where = tr("this server") if channel_id is None else tr("<#{channel}>", channel=channel_id)
        line = AuditLine(guild_id, actor_id, "review", str(where), "off" if on else "on", "on" if on else "off")
        changed = await self.store.set_review_scope(guild_id, scope, on, line)
        if on:
            if not changed:
                return tr("Review is on in {where} already.", where=where)
            return tr("Review is on in {where}: new clips wait for a moderator before they are posted.", where=where)
        if not changed:
            return tr("Review was not on in {where}.", where=where)
        return tr("Review is off in {where}: new clips are posted as soon as they are made.", where=where)
