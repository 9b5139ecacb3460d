"""Jobs whose clip does not simply go onto their public card: a contest entry (its card is private to the
member, so the gallery can hide who made it, and its clip goes to the gallery) and a clip held for review
(it goes to the review channel first). Decided per job from the store at its first report, so a job
resumed after a restart goes the same way.

Also the 🏆 Enter in contest button on a finished card, for a clip made in a contest's channel after it
began.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import discord
from discord.ext import commands

from cogs.cards import render
from cogs.context import CogContext
from cogs.funnel import reply_privately
from cogs.review import WAITING, Gallery, send_for_review
from cogs.speech import member_locale, to_member
from core.contests import Contest, Entry
from core.jobs import JobStatus
from core.moderation import ReviewItem
from core.text import N_, tr
from services.progress import JobCard
from services.reporter import DeliveryFailed, JobReporter, UploadTooLarge

log = logging.getLogger(__name__)

IN_GALLERY = N_("Your entry is in the contest's gallery as Entry #{number}, without your name.")
ENTRY_WAITING = N_("Your entry waits for a moderator's review before it goes to the gallery.")
NOT_YOUR_CLIP = N_("Only the person who made this clip can enter it in the contest.")
NOT_FINISHED = N_("Only a finished clip can be entered in a contest.")
NO_OPEN_CONTEST = N_("No contest in this channel is taking entries.")
TOO_EARLY = N_("This clip was made before the contest began, so it cannot be entered.")
ENTERED = N_("Entered: your clip is in the gallery as Entry #{number}, without your name.")
ENTERED_FOR_REVIEW = N_("Entered: your clip waits for a moderator's review before it goes to the gallery.")
NO_CLIP = N_("I could not find this clip's video on the card, so it cannot be entered.")


class LazyGallery:
    """The contest cog's gallery, looked up when needed (the cogs load one after another)."""

    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    async def post_entry(self, job_id: int, clip_path: Path) -> bool:
        gallery = self.bot.get_cog("ContestCog")
        if gallery is None:
            raise DeliveryFailed("contests are not set up")
        posted: bool = await gallery.post_entry(job_id, clip_path)  # type: ignore[attr-defined]
        return posted


@dataclass(frozen=True)
class _Route:
    entry: tuple[Contest, Entry] | None
    item: ReviewItem | None


class HeldReporter:
    """Wraps a job's public reporter; passes everything through for an ordinary job."""

    def __init__(
        self,
        inner: JobReporter,
        client: discord.Client,
        context: CogContext,
        gallery: Gallery,
        job_id: int,
        *,
        interaction: discord.Interaction | None = None,
        private_card: int | None = None,
    ) -> None:
        self.inner = inner
        self.client = client
        self.context = context
        self.gallery = gallery
        self.job_id = job_id
        self.interaction = interaction  # an entry's command: its private card is edited through it
        self.private_card = private_card
        self.upload_limit = inner.upload_limit
        self._route: _Route | None = None

    async def route(self) -> _Route:
        if self._route is None:
            contests, review = self.context.contests, self.context.review
            entry = await contests.entry_of(self.job_id) if contests is not None else None
            item = await review.item(self.job_id) if review is not None else None
            self._route = _Route(entry, item)
        return self._route

    async def show(self, card: JobCard) -> None:
        route = await self.route()
        if route.entry is None:
            await self.inner.show(card)
            return
        if card.final and card.stage != "done" and self.context.contests is not None:
            await self.context.contests.job_failed(self.job_id)  # refunded: the member may enter again
        await self._private(card)

    async def deliver(self, card: JobCard, clip: Path | None) -> None:
        route = await self.route()
        review = self.context.review
        if route.item is not None and review is not None:
            await send_for_review(self.client, review, route.item, card, clip)
            waiting = replace(card, notice=tr(ENTRY_WAITING if route.entry else WAITING), link=None)
            await (self._private(waiting) if route.entry else self.inner.show(waiting))
            return
        if route.entry is not None:
            if clip is None:  # only a provider's link: the gallery shows clips
                raise DeliveryFailed("a contest entry needs its clip for the gallery")
            try:
                await self.gallery.post_entry(self.job_id, clip)
            except discord.HTTPException as exc:
                if exc.status == 413:
                    raise UploadTooLarge from exc
                raise DeliveryFailed(f"HTTP {exc.status} code {exc.code}") from exc
            placed = await self.context.contests.entry_of(self.job_id) if self.context.contests else None
            number = placed[1].number if placed else None
            await self._private(replace(card, notice=tr(IN_GALLERY, number=number or "?")))
            return
        await self._offer_entry(card)
        await self.inner.deliver(card, clip)

    async def delivered_before(self, card: JobCard) -> bool:
        route = await self.route()
        if route.item is not None and self.context.review is not None:
            item = await self.context.review.item(self.job_id)
            return item is not None and item.state != "held"
        if route.entry is not None and self.context.contests is not None:
            placed = await self.context.contests.entry_of(self.job_id)
            return placed is not None and placed[1].gallery_message_id is not None
        return await self.inner.delivered_before(card)

    async def _offer_entry(self, card: JobCard) -> None:
        """A finished card in a channel whose contest takes entries offers 🏆 Enter in contest."""
        contests = self.context.contests
        job = await self.context.jobs.get(self.job_id) if contests is not None else None
        if contests is None or job is None or job.channel_id is None or not hasattr(self.inner, "offer_entry"):
            return
        contest = await contests.open_in(job.channel_id)
        self.inner.offer_entry = contest is not None and _made_after(job.created_at, contest)

    async def _private(self, card: JobCard) -> None:
        interaction = self.interaction
        if interaction is None or self.private_card is None or interaction.is_expired():
            return  # after a restart or past 15 minutes: the gallery and the member's DMs carry on
        try:
            await interaction.followup.edit_message(
                self.private_card, embed=render(card, member_locale(interaction)), view=None
            )
        except discord.HTTPException as exc:
            log.info("job %d: could not update the private entry card (HTTP %s)", self.job_id, exc.status)


def _made_after(created_at: str, contest: Contest) -> bool:
    return datetime.fromisoformat(created_at) >= contest.created_at


class EnterAction:
    """🏆 Enter in contest on a finished card: the member's own clip, made in the channel after the contest
    began, takes one of their entry slots and goes to the gallery (through review when the contest asks)."""

    def __init__(self, context: CogContext, client: discord.Client, gallery: Gallery) -> None:
        self.context = context
        self.client = client
        self.gallery = gallery
        context.buttons.register("enter", self.enter)

    async def enter(self, interaction: discord.Interaction, job_id: int) -> None:
        contests, jobs = self.context.contests, self.context.jobs
        job = await jobs.get(job_id)
        if contests is None or job is None or job.channel_id is None:
            await reply_privately(interaction, tr(NO_OPEN_CONTEST))
            return
        if interaction.user.id != job.user_id:
            await reply_privately(interaction, tr(NOT_YOUR_CLIP))
            return
        if job.status != JobStatus.DELIVERED:
            await reply_privately(interaction, tr(NOT_FINISHED))
            return
        contest = await contests.open_in(job.channel_id)
        if contest is None:
            await reply_privately(interaction, tr(NO_OPEN_CONTEST))
            return
        if not _made_after(job.created_at, contest):
            await reply_privately(interaction, tr(TOO_EARLY))
            return
        attachment = _clip_on(interaction.message)
        if attachment is None:
            await reply_privately(interaction, tr(NO_CLIP))
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        entry = await contests.enter(job.channel_id, job.user_id, job_id)  # UserError: the funnel says why
        answer = await self._place(job_id, job.guild_id, job.channel_id, job.user_id, contest, attachment, entry)
        await interaction.edit_original_response(content=to_member(interaction, answer))

    async def _place(
        self,
        job_id: int,
        guild_id: int | None,
        channel_id: int,
        user_id: int,
        contest: Contest,
        attachment: discord.Attachment,
        entry: Entry,
    ) -> str:
        review, contests = self.context.review, self.context.contests
        assert contests is not None
        with tempfile.TemporaryDirectory(prefix="hailuo-entry-") as folder:
            path = Path(folder) / "clip.mp4"
            try:
                await attachment.save(path)
                held = review is not None and await review.hold(
                    job_id, guild_id, channel_id, user_id, always=contest.review
                )
                if held and review is not None:
                    item = await review.item(job_id)
                    assert item is not None
                    job = await self.context.jobs.get(job_id)
                    assert job is not None
                    await send_for_review(self.client, review, item, self.context.jobs.card_for(job), path)
                    return tr(ENTERED_FOR_REVIEW)
                await self.gallery.post_entry(job_id, path)
            except (discord.HTTPException, DeliveryFailed, UploadTooLarge):
                await contests.release(entry.id)
                raise
        placed = await contests.entry_of(job_id)
        return tr(ENTERED, number=placed[1].number if placed else "?")


def _clip_on(message: discord.Message | None) -> discord.Attachment | None:
    if message is None:
        return None
    return next((a for a in message.attachments if a.filename.endswith(".mp4")), None)
