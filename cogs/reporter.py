"""Shows a job in Discord: edits its public card, then turns it into the result.

Edits go through the interaction's webhook while its token is young (no channel permissions needed,
outside the global rate limit). After `handover_seconds` (the token dies at 15 minutes) they go
through the bot token on the same message (docs/discord.md). If a moderator deleted the card, a new
one is posted in the channel and the job carries on.
"""

from __future__ import annotations

import functools
import io
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import discord

from cogs.buttons import custom_id, ended_view, progress_view, result_view
from cogs.cards import render, render_set
from cogs.notify import Notifier
from cogs.speech import LocaleSource, guild_language, locale_now
from core.defaults import DefaultsStore
from core.jobs import JobRecord
from core.text import tr
from services.i18n import localise
from services.jobs import JobService
from services.progress import JobCard
from services.reporter import DeliveryFailed, JobReporter, UploadTooLarge
from services.variants import OnFinish, SetCard, SetMember, VariantSet, stage_of

log = logging.getLogger(__name__)

NO_PINGS = discord.AllowedMentions.none()
UNKNOWN_MESSAGE = 10008
INVALID_WEBHOOK_TOKEN = 50027
TOO_LARGE = 40005

Upload = tuple[Path, str]  # the clip on disk, and the file name users see
THUMBNAIL_NAME = "input.jpg"  # the input image on a finished /animate card (its embed's thumbnail)


class DiscordReporter:
    """Reports one job. Built from the command's interaction, or (after a restart) from the stored
    channel and message ids alone, in which case everything goes through the bot token and the
    requester is mentioned when the clip is posted (an edit alone notifies nobody)."""

    def __init__(
        self,
        *,
        channel: discord.abc.Messageable,
        message_id: int | None,
        upload_limit: int | None,
        on_new_message: Callable[[int], Awaitable[None]],
        interaction: discord.Interaction | None = None,
        handover_seconds: float = 840,
        mention_on_delivery: int | None = None,
        defaults: str = "",
        locale: LocaleSource = "en-US",
        thumbnail: Callable[[], Awaitable[bytes | None]] | None = None,
    ) -> None:
        self.interaction = interaction
        self.channel = channel
        self.message_id = message_id
        self.upload_limit = upload_limit
        self._handover_at = interaction.created_at.timestamp() + handover_seconds if interaction else 0.0
        self._on_new_message = on_new_message
        self._mention = mention_on_delivery
        self._defaults = defaults  # shown on every card of the job (not kept over a restart)
        self._locale = locale  # the server's language: the card is public
        self._thumbnail = thumbnail  # the input image, small, for the finished card (an /animate job)
        self.offer_entry = False  # a contest takes entries in the channel: the finished card offers 🏆

    @property
    def locale(self) -> str:
        return locale_now(self._locale)

    def _labelled(self, card: JobCard) -> JobCard:
        return replace(card, defaults=self._defaults) if self._defaults else card

    def _token_usable(self) -> bool:
        return self.interaction is not None and time.time() < self._handover_at and not self.interaction.is_expired()

    async def show(self, card: JobCard) -> None:
        if not card.final:
            view = progress_view(card.job_id, self.locale)
        elif card.stage == "done":
            view = result_view(card.job_id, self.locale, enter=self.offer_entry)
        else:
            view = ended_view(card.job_id, self.locale)
        await self._edit(embed=render(self._labelled(card), self.locale), view=view)

    async def deliver(self, card: JobCard, clip: Path | None) -> None:
        embed = render(self._labelled(card), self.locale)
        thumb = await self._thumbnail() if self._thumbnail is not None else None
        if thumb is not None:
            # Sent with the card, not linked: an attachment's signed URL expires, the message's own file
            # is signed afresh whenever the card is seen.
            embed.set_thumbnail(url=f"attachment://{THUMBNAIL_NAME}")
        try:
            upload = (clip, f"hailuo-{card.job_id}.mp4") if clip is not None else None
            view = result_view(card.job_id, self.locale, enter=self.offer_entry)
            await self._edit(upload, thumb, embed=embed, view=view)
        except discord.HTTPException as exc:
            if exc.status == 413 or exc.code == TOO_LARGE:
                raise UploadTooLarge from exc
            raise DeliveryFailed(f"HTTP {exc.status} code {exc.code}") from exc
        if self._mention is not None:
            await self._ping_requester(card, self._mention)

    async def delivered_before(self, card: JobCard) -> bool:
        """After a restart in the middle of posting: is the finished card already there?"""
        if self.message_id is None:
            return False
        try:
            message = await self.channel.fetch_message(self.message_id)
        except discord.HTTPException:
            return False
        ids = {child.custom_id for row in message.components for child in getattr(row, "children", [])}
        return custom_id("reroll", card.job_id) in ids

    async def edit(self, **kwargs: Any) -> None:
        """Edit this reporter's message (another card than a job's, e.g. the one listing variants)."""
        await self._edit(**kwargs)

    async def _ping_requester(self, card: JobCard, user_id: int) -> None:
        text = tr("<@{user_id}> your video (job #{job_id}) is ready above.", user_id=user_id, job_id=card.job_id)
        try:
            await self.channel.send(
                localise(text, self.locale),
                allowed_mentions=discord.AllowedMentions(users=[discord.Object(user_id)]),
            )
        except discord.HTTPException:
            log.info("job %d: could not mention the requester", card.job_id)

    async def _edit(self, clip: Upload | None = None, thumb: bytes | None = None, **kwargs: Any) -> None:
        """Edit the card; on an expired token switch to the bot token; if the card is gone, post anew.

        A `discord.File` is closed after one request, so each attempt gets a fresh one from `clip`."""
        if self.message_id is None:  # the card was never posted (the bot stopped right after reserving)
            await self._repost(clip, thumb, **kwargs)
            return
        if self.interaction is not None and self._token_usable():
            try:
                await self.interaction.followup.edit_message(
                    self.message_id, allowed_mentions=NO_PINGS, **_with_clip(clip, thumb, "attachments", kwargs)
                )
                return
            except discord.NotFound as exc:
                if exc.code == UNKNOWN_MESSAGE:
                    await self._repost(clip, thumb, **kwargs)
                    return
                raise
            except discord.HTTPException as exc:
                if exc.code != INVALID_WEBHOOK_TOKEN:
                    raise
                log.info("interaction token expired early; continuing with the bot token")
                self._handover_at = 0
        partial = self.channel.get_partial_message(self.message_id)  # type: ignore[attr-defined]
        try:
            await partial.edit(allowed_mentions=NO_PINGS, **_with_clip(clip, thumb, "attachments", kwargs))
        except discord.NotFound as exc:
            if exc.code != UNKNOWN_MESSAGE:
                raise
            await self._repost(clip, thumb, **kwargs)

    async def _repost(self, clip: Upload | None, thumb: bytes | None = None, **kwargs: Any) -> None:
        """The card was deleted (by a moderator): post a new one in the channel and keep going."""
        if kwargs.get("view") is None:
            kwargs.pop("view", None)  # send() takes no view=None
        message = await self.channel.send(allowed_mentions=NO_PINGS, **_with_clip(clip, thumb, "files", kwargs))
        self.message_id = message.id
        self._handover_at = 0  # the new card is the bot's own message: the interaction webhook cannot edit it
        await self._on_new_message(message.id)


def _with_clip(clip: Upload | None, thumb: bytes | None, key: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    files = [discord.File(clip[0], filename=clip[1])] if clip is not None else []
    if thumb is not None:
        files.append(discord.File(io.BytesIO(thumb), filename=THUMBNAIL_NAME))
    return {**kwargs, key: files} if files else kwargs


def reporter_for_resumed(
    client: discord.Client,
    jobs: JobService,
    job: JobRecord,
    *,
    defaults: DefaultsStore | None = None,
    sets: dict[int, VariantSet] | None = None,
    locale: LocaleSource | None = None,
) -> JobReporter | None:
    """A reporter for a job found unfinished at start: its card is edited (or posted anew) with the bot
    token, and the requester is mentioned when the clip is posted. None when the job has no channel
    (it was started from the terminal). A variant reports to the card listing its set too (one
    `VariantSet` per card in `sets`, shared by the variants resumed together). `locale`: the server's
    language when the client has no cache of its servers (a worker); by default it asks the cache."""
    if job.channel_id is None:
        return None
    channel = client.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
    locale = locale if locale is not None else guild_language(client, job.guild_id)
    reporter: JobReporter = DiscordReporter(
        channel=channel,
        message_id=job.message_id,
        upload_limit=job.upload_limit or discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES,
        on_new_message=functools.partial(jobs.attach_card, job.id),
        mention_on_delivery=job.user_id,
        locale=locale,
        thumbnail=functools.partial(jobs.input_thumbnail, job) if job.input_image else None,
    )
    notifier = Notifier(
        client,
        defaults,
        jobs,
        channel,
        guild_id=job.guild_id,
        channel_id=job.channel_id,
        locale=locale,
        pinged_on_delivery=True,
    )
    if job.set_card_id is None:
        return OnFinish(reporter, notifier.job_ended)
    sets = {} if sets is None else sets
    group = sets.get(job.set_card_id)
    if group is None:
        group = sets[job.set_card_id] = _resumed_set(jobs, job, channel, locale, notifier)
    return SetMember(reporter, group)


def _resumed_set(
    jobs: JobService, job: JobRecord, channel: discord.PartialMessageable, locale: LocaleSource, notifier: Notifier
) -> VariantSet:
    """The card listing a resumed variant's set, read back from the store at its first update."""
    assert job.set_card_id is not None
    card_id = job.set_card_id
    members: list[int] = []

    async def moved(message_id: int) -> None:  # the card was deleted and posted anew
        await jobs.attach_set_card(members, message_id)

    shower = DiscordReporter(
        channel=channel, message_id=card_id, upload_limit=None, on_new_message=moved, locale=locale
    )

    async def load() -> list[JobCard]:
        found = await jobs.set_members(card_id)
        members.extend(each.id for each in found)
        return [jobs.card_for(each).with_stage(stage_of(each)) for each in found]

    async def show(summary: SetCard) -> None:
        await shower.edit(embed=render_set(summary, locale_now(locale)), view=None)

    return VariantSet(show, load=load, on_finished=notifier.set_ended)
