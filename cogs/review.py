"""Review mode in Discord: a held clip goes to the review channel with Approve and Reject instead of onto
its public card; Approve puts it on the card, Reject tells the requester privately (by DM) why.

The buttons are job buttons (`hailuo:approve:<job>`), so they keep working after a restart; the clip is
taken from the review message itself when approved, so nothing else has to keep it.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import discord

from cogs.buttons import job_view, result_view
from cogs.cards import render
from cogs.context import CogContext
from cogs.funnel import FunnelModal, reply_privately
from cogs.guarded import has_role
from cogs.speech import server_locale, to_member
from core.moderation import ReviewItem
from core.text import N_, tr
from services.i18n import localise
from services.progress import JobCard
from services.prompts import display_safe
from services.reporter import DeliveryFailed, UploadTooLarge
from services.review import ReviewService

log = logging.getLogger(__name__)

NO_PINGS = discord.AllowedMentions.none()
WAITING = N_(
    "Waiting for a moderator's review: the clip appears here once it is approved. It is charged either way, "
    "because the video service made it."
)
APPROVED = N_("Approved by a moderator.")
REJECTED = N_("Not approved by a moderator; the requester was told why.")
NOT_A_MODERATOR = N_("Only moderators (Manage Messages) can approve or reject clips.")
DECIDED = N_("This clip has been reviewed already.")


async def send_for_review(
    client: discord.Client, review: ReviewService, item: ReviewItem, card: JobCard, clip: Path | None
) -> None:
    """Post a held clip to the server's review channel with Approve and Reject, and mark it pending.
    Raises UploadTooLarge (delivery then tries it re-encoded) or DeliveryFailed, like a public post."""
    queue = await review.queue(item.guild_id)
    if queue is None:  # cannot happen (review needs a queue), but a held clip never goes public unreviewed
        raise DeliveryFailed("no review channel")
    channel = client.get_partial_messageable(queue, guild_id=item.guild_id)
    locale = server_locale(client.get_guild(item.guild_id))
    title = localise(tr("Review · job #{job}", job=card.job_id), locale)
    embed = discord.Embed(title=title, description=f"> {display_safe(card.prompt, 1000)}")
    embed.add_field(name=localise(tr("Requested by"), locale), value=f"<@{item.user_id}>")
    embed.add_field(name=localise(tr("For"), locale), value=f"<#{item.channel_id}>")
    if card.link:
        embed.add_field(name=localise(tr("Link"), locale), value=card.link, inline=False)
    files = [discord.File(clip, filename=f"hailuo-{card.job_id}.mp4")] if clip is not None else []
    view = job_view(card.job_id, "approve", "reject", locale=locale)
    try:
        message = await channel.send(embed=embed, files=files, view=view, allowed_mentions=NO_PINGS)
    except discord.HTTPException as exc:
        if exc.status == 413:
            raise UploadTooLarge from exc
        raise DeliveryFailed(f"HTTP {exc.status} code {exc.code}") from exc
    await review.posted_for_review(card.job_id, message.id)


class Gallery(Protocol):
    """Where an approved contest entry goes (cogs.contests.ContestCog)."""

    async def post_entry(self, job_id: int, clip_path: Path) -> bool: ...


class ReasonModal(FunnelModal):
    def __init__(self, title: str, label: str, on_reason: object) -> None:
        super().__init__(title=title[:45], timeout=15 * 60)
        self.on_reason = on_reason
        self.reason: discord.ui.TextInput[ReasonModal] = discord.ui.TextInput(
            label=label[:45], style=discord.TextStyle.paragraph, max_length=500, required=True
        )
        self.add_item(self.reason)

    async def on_submit(self, interaction: discord.Interaction, /) -> None:
        await self.on_reason(interaction, self.reason.value)  # type: ignore[operator]


class ReviewActions:
    """Approve and Reject on a review message."""

    def __init__(self, context: CogContext, gallery: Gallery) -> None:
        self.review = context.review
        self.contests = context.contests
        self.gallery = gallery
        self.jobs = context.jobs
        self.admin_role_ids = context.admin_role_ids
        context.buttons.register("approve", self.approve)
        context.buttons.register("reject", self.reject)

    def _may(self, interaction: discord.Interaction) -> bool:
        granted = interaction.permissions
        return granted.manage_messages or granted.administrator or has_role(interaction, self.admin_role_ids)

    async def approve(self, interaction: discord.Interaction, job_id: int) -> None:
        if self.review is None or not self._may(interaction):
            await reply_privately(interaction, tr(NOT_A_MODERATOR))
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        item = await self.review.decide(job_id, interaction.user.id, approve=True)
        if item is None:
            await interaction.edit_original_response(content=to_member(interaction, tr(DECIDED)))
            return
        posted = await self._publish(interaction, item)
        await self._close_review_message(interaction, tr("Approved by <@{moderator}>.", moderator=interaction.user.id))
        answer = (
            tr("Approved: the clip is posted in <#{channel}>.", channel=item.channel_id)
            if posted
            else tr("Approved, but I could not post the clip in <#{channel}>.", channel=item.channel_id)
        )
        await interaction.edit_original_response(content=to_member(interaction, answer))

    async def reject(self, interaction: discord.Interaction, job_id: int) -> None:
        if self.review is None or not self._may(interaction):
            await reply_privately(interaction, tr(NOT_A_MODERATOR))
            return
        item = await self.review.item(job_id)
        if item is None or item.state != "pending":
            await reply_privately(interaction, tr(DECIDED))
            return

        async def rejected(submitted: discord.Interaction, reason: str) -> None:
            await self._rejected(submitted, job_id, reason)

        modal = ReasonModal(
            to_member(interaction, tr("Reject job #{job}", job=job_id)),
            to_member(interaction, tr("Why (sent to the requester)")),
            rejected,
        )
        await interaction.response.send_modal(modal)

    async def _rejected(self, interaction: discord.Interaction, job_id: int, reason: str) -> None:
        assert self.review is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        item = await self.review.decide(job_id, interaction.user.id, approve=False, reason=reason)
        if item is None:
            await interaction.edit_original_response(content=to_member(interaction, tr(DECIDED)))
            return
        told = await self._tell_requester(interaction, item, reason)
        if self.contests is not None and await self.contests.entry_of(job_id) is not None:
            await self.contests.release_job(job_id)  # a rejected entry frees its slot: the member may try again
        else:
            await self._update_card(interaction.client, item, tr(REJECTED), None)
        await self._close_review_message(
            interaction, tr("Rejected by <@{moderator}>: {reason}", moderator=interaction.user.id, reason=reason)
        )
        answer = (
            tr("Rejected; <@{user}> was told why in a direct message.", user=item.user_id)
            if told
            else tr(
                "Rejected, but <@{user}> does not accept direct messages, so they were not told why.", user=item.user_id
            )
        )
        await interaction.edit_original_response(content=to_member(interaction, answer), allowed_mentions=NO_PINGS)

    async def _publish(self, interaction: discord.Interaction, item: ReviewItem) -> bool:
        """The approved clip where it was asked for: on its card, or (a contest entry) in the gallery. It is
        taken from the review message, whose attachment Discord signs afresh with every interaction."""
        message = interaction.message
        attachment = message.attachments[0] if message is not None and message.attachments else None
        try:
            if self.contests is not None and await self.contests.entry_of(item.job_id) is not None:
                if attachment is None:
                    return False
                with tempfile.TemporaryDirectory(prefix="hailuo-review-") as folder:
                    path = Path(folder) / "clip.mp4"
                    await attachment.save(path)
                    return await self.gallery.post_entry(item.job_id, path)
            clip = await attachment.to_file() if attachment is not None else None
        except discord.HTTPException:
            log.warning("job %d: could not fetch or post the reviewed clip", item.job_id)
            return False
        return await self._update_card(interaction.client, item, tr(APPROVED), clip)

    async def _update_card(
        self, client: discord.Client, item: ReviewItem, notice: str, clip: discord.File | None
    ) -> bool:
        job = await self.jobs.get(item.job_id)
        if job is None:
            return False
        card = replace(self.jobs.card_for(job).with_stage("done"), notice=notice)
        channel = client.get_partial_messageable(item.channel_id, guild_id=item.guild_id)
        locale = server_locale(client.get_guild(item.guild_id))
        embed = render(card, locale)
        files = [clip] if clip is not None else []
        view = result_view(item.job_id, locale) if clip is not None else None
        try:
            if job.message_id is not None:
                try:
                    await channel.get_partial_message(job.message_id).edit(
                        embed=embed, attachments=files, view=view, allowed_mentions=NO_PINGS
                    )
                    return True
                except discord.NotFound:
                    pass  # the card was deleted: post the clip anew
            if view is not None:
                await channel.send(embed=embed, files=files, view=view, allowed_mentions=NO_PINGS)
            else:
                await channel.send(embed=embed, allowed_mentions=NO_PINGS)
            return True
        except discord.HTTPException as exc:
            log.warning("job %d: could not update the reviewed card (HTTP %s)", item.job_id, exc.status)
            return False

    async def _tell_requester(self, interaction: discord.Interaction, item: ReviewItem, reason: str) -> bool:
        text = tr(
            "A moderator did not approve your video (job #{job}): {reason}\nIt is charged, because the video "
            "service made it.",
            job=item.job_id,
            reason=reason,
        )
        try:
            dm = await interaction.client.create_dm(discord.Object(item.user_id))
            await dm.send(localise(text, server_locale(interaction))[:2000], allowed_mentions=NO_PINGS)
            return True
        except discord.HTTPException as exc:
            log.info("job %d: could not tell the requester (HTTP %s code %s)", item.job_id, exc.status, exc.code)
            return False

    async def _close_review_message(self, interaction: discord.Interaction, verdict: str) -> None:
        message = interaction.message
        if message is None:
            return
        embeds = message.embeds[:1]
        if embeds:
            embeds[0].add_field(name="✔", value=localise(verdict, server_locale(interaction)), inline=False)
        try:
            await message.edit(embeds=embeds, view=None, attachments=message.attachments)
        except discord.HTTPException as exc:
            log.info("review message %d: could not close it (HTTP %s)", message.id, exc.status)
