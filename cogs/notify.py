"""Telling a member their job has ended, as they asked with `/settings notify`: a short message in the
job's channel that mentions them (and no one else), or a DM; nothing when off (the default).

The preference is read when the job ends, so it applies to every job of theirs — re-rolls, variants,
jobs resumed after a restart. A set of variants pings once, when the last one ends. A DM that cannot be
sent (the member closed their DMs: Discord's 50007) is logged at INFO and dropped.
"""

from __future__ import annotations

import logging

import discord

from cogs.speech import LocaleSource, locale_now
from core.defaults import DefaultsStore
from core.errors import StorageError
from core.text import Text, tr, tr_n
from services.i18n import localise
from services.jobs import JobService
from services.progress import JobCard
from services.variants import SetCard

log = logging.getLogger(__name__)

CANNOT_MESSAGE_USER = 50007


def jump_link(guild_id: int | None, channel_id: int, message_id: int | None) -> str:
    if message_id is None:
        return ""
    return f"https://discord.com/channels/{guild_id or '@me'}/{channel_id}/{message_id}"


class Notifier:
    """Pings the requester of jobs posted in one channel. `locale`: the server's language, for the channel
    message; `member_locale`: the member's (when known), for a DM. `pinged_on_delivery`: the card's
    reporter already mentions the member when the clip is posted (a job resumed after a restart), so a
    `channel` ping for a delivered job would be a second one."""

    def __init__(
        self,
        client: discord.Client,
        defaults: DefaultsStore | None,
        jobs: JobService,
        channel: discord.abc.Messageable,
        *,
        guild_id: int | None,
        channel_id: int,
        locale: LocaleSource,
        member_locale: str | None = None,
        pinged_on_delivery: bool = False,
    ) -> None:
        self.client = client
        self.defaults = defaults
        self.jobs = jobs
        self.channel = channel
        self.guild_id = guild_id
        self.channel_id = channel_id
        self.locale = locale
        self.member_locale = member_locale  # None: the server's
        self.pinged_on_delivery = pinged_on_delivery

    async def job_ended(self, card: JobCard) -> None:
        if card.stage == "done":
            text = tr("Your video (job #{job_id}) is ready.", job_id=card.job_id)
        elif card.stage == "cancelled":
            text = tr("Your job #{job_id} was cancelled; nothing was charged.", job_id=card.job_id)
        else:
            text = tr("Your job #{job_id} failed; nothing was charged.", job_id=card.job_id)
        await self._notify(card.requester_id, text, card.job_id, delivered=card.stage == "done")

    async def set_ended(self, summary: SetCard) -> None:
        done = summary.tally("done")
        text = tr_n(
            "Your {n} variant has finished: {done} ready, {refunded} refunded.",
            "Your {n} variants have finished: {done} ready, {refunded} refunded.",
            summary.count,
            done=done,
            refunded=summary.count - done,
        )
        await self._notify(summary.first.requester_id, text, summary.first.job_id, delivered=False, of_set=True)

    async def _notify(self, user_id: int, text: Text, job_id: int, *, delivered: bool, of_set: bool = False) -> None:
        how = await self._preference(user_id)
        if how == "channel" and not (delivered and self.pinged_on_delivery):
            body = localise(tr("<@{user_id}> {text}", user_id=user_id, text=text), locale_now(self.locale))
            await self._send_in_channel(user_id, body)
        elif how == "dm":
            link = await self._link(job_id, of_set)
            body = localise(text, self.member_locale or locale_now(self.locale)) + (f"\n{link}" if link else "")
            await self._send_dm(user_id, body)

    async def _link(self, job_id: int, of_set: bool) -> str:
        """A link to the job's card (or to the card listing its set), for a DM."""
        try:
            job = await self.jobs.get(job_id)
        except StorageError:
            return ""
        if job is None:
            return ""
        return jump_link(self.guild_id, self.channel_id, job.set_card_id if of_set else job.message_id)

    async def _preference(self, user_id: int) -> str:
        if self.defaults is None:
            return "off"
        try:
            return (await self.defaults.get(user_id)).notify or "off"
        except StorageError as exc:
            log.info("could not read the notify setting of user %d: %s", user_id, exc)
            return "off"

    async def _send_in_channel(self, user_id: int, body: str) -> None:
        try:
            await self.channel.send(
                body[:2000], allowed_mentions=discord.AllowedMentions(users=[discord.Object(user_id)])
            )
        except discord.HTTPException as exc:
            log.info("could not ping user %d in channel %d: %s", user_id, self.channel_id, exc)

    async def _send_dm(self, user_id: int, body: str) -> None:
        try:
            dm = await self.client.create_dm(discord.Object(user_id))
            await dm.send(body[:2000], allowed_mentions=discord.AllowedMentions.none())
        except discord.HTTPException as exc:
            if exc.code == CANNOT_MESSAGE_USER:
                log.info("user %d does not take DMs from the bot; not notified", user_id)
            else:
                log.info("could not DM user %d: %s", user_id, exc)
