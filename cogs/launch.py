"""From a checked request to running jobs, in Discord: reserve, post the public card(s), start.

Sequence (docs/discord.md): the command has already deferred *ephemerally*; the private "thinking"
message is first edited into a short receipt, so the follow-up that carries the public card creates a
new message rather than editing the deferred one. A problem found on the way is still private.

Variants (`variants:` 2–4) are that many ordinary jobs reserved together (all or none): one public card
lists them (`services.variants.VariantSet`), then each variant gets its own card, which its clip lands
on as it finishes — the way a single job's does — so Cancel, the buttons and restarts work as for any job.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Sequence
from dataclasses import replace

import discord

from cogs.buttons import progress_view
from cogs.cards import render, render_set
from cogs.context import CogContext
from cogs.held import HeldReporter
from cogs.notify import Notifier
from cogs.quotes import confirmed
from cogs.reporter import NO_PINGS, DiscordReporter
from cogs.review import Gallery
from cogs.speech import member_locale, server_locale, to_member
from core.contests import Entry
from core.defaults import Merged
from core.errors import QuotaExceeded, StorageError, UserError
from core.jobs import JobRecord, ParentKind
from core.spec import GenerationSpec
from core.text import N_, Text, tr, tr_n
from services.intake import Requester
from services.pricing import format_usd
from services.reporter import JobReporter
from services.variants import OnFinish, SetCard, SetMember, VariantSet

log = logging.getLogger(__name__)

RESERVED_DURING_RESTART = N_(
    "Job #{job_id} is accepted, but the bot is restarting: it will start, and its card appear here, "
    "when the bot is back (usually within a minute)."
)
VARIANTS_DURING_RESTART = N_(
    "Jobs #{first}–#{last} are accepted, but the bot is restarting: they will start, and their cards appear "
    "here, when the bot is back (usually within a minute)."
)
COULD_NOT_POST = N_("Sorry, I could not post your job. Nothing was charged.")
COULD_NOT_RECORD = N_(
    "The bot's database or disk is busy or full right now, so I could not record your request. "
    "Nothing was charged: please try again in a minute."
)
RESTARTING = N_("The bot is restarting and not taking new videos for a moment. Please try again in a minute.")
MISSING_PERMISSIONS = N_(
    "I need these permissions in this channel first: {permissions}. Ask a moderator to grant them. Nothing was charged."
)
RESETS = N_("{message} It resets {when}.")
ENTRY_IS_ONE_CLIP = N_("A contest entry is one clip: leave out `variants`.")
NO_CONTESTS = N_("There is no contest running in this channel.")
NEEDED_PERMISSIONS = {  # as Discord's permission settings name them
    "view_channel": N_("View Channel"),
    "send_messages": N_("Send Messages"),
    "embed_links": N_("Embed Links"),
    "attach_files": N_("Attach Files"),
    "read_message_history": N_("Read Message History"),
}


def missing_channel_permissions(interaction: discord.Interaction) -> list[str]:
    if interaction.guild_id is None:
        return []
    granted = interaction.app_permissions
    return [label for name, label in NEEDED_PERMISSIONS.items() if not getattr(granted, name)]


def quota_text(exc: QuotaExceeded) -> str:
    if exc.resets_at is None:
        return exc.message
    when = f"<t:{int(exc.resets_at.timestamp())}:R>"
    return tr(RESETS, message=exc.message, when=when)


def receipt_text(jobs: Sequence[JobRecord]) -> Text:
    """The private receipt: which job(s) were accepted, and at what price."""
    job = jobs[0]
    cost = tr("free preview") if job.cost_micros == 0 else format_usd(job.cost_micros)
    if len(jobs) == 1:
        accepted = tr("Job #{job_id} accepted ({cost}). Follow it below.", job_id=job.id, cost=cost)
    else:
        accepted = tr_n(
            "{n} variant accepted: jobs #{first}–#{last} ({cost} each). Follow them below.",
            "{n} variants accepted: jobs #{first}–#{last} ({cost} each). Follow them below.",
            len(jobs),
            first=job.id,
            last=jobs[-1].id,
            cost=cost,
        )
    return accepted


def requester_of(interaction: discord.Interaction) -> Requester:
    roles = getattr(interaction.user, "roles", [])
    return Requester(
        user_id=interaction.user.id,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        role_ids=tuple(role.id for role in roles),
        interaction_id=interaction.id,
        upload_limit=interaction.filesize_limit,
    )


class JobLauncher:
    def __init__(self, context: CogContext, gallery: Gallery) -> None:
        self.context = context
        self.gallery = gallery
        self.jobs = context.jobs
        self.handover_seconds = context.handover_seconds
        self.defaults = context.defaults

    async def _say(self, interaction: discord.Interaction, text: str) -> None:
        await interaction.edit_original_response(content=to_member(interaction, text))

    async def launch(
        self,
        interaction: discord.Interaction,
        spec: GenerationSpec,
        *,
        command: str,
        parent_job_id: int | None = None,
        parent_kind: ParentKind | None = None,
        defaults: Merged | None = None,
        variants: int = 1,
        contest: bool = False,
    ) -> None:
        """Reserve, post the public card(s), and run the job(s) in the background. The interaction is
        deferred. `defaults`: which of the member's /settings defaults applied (on the card) and why some
        did not (in the private receipt). `variants`: that many jobs with the same settings, all or none."""
        if not self.jobs.accepting:
            await self._say(interaction, tr(RESTARTING))
            return
        missing = missing_channel_permissions(interaction)
        if missing:
            # Interaction replies work without them, but a job that outlives the 15-minute token, a
            # card a moderator deleted, or a restart all need the bot's own access to the channel.
            listed = ", ".join(to_member(interaction, tr(label)) for label in missing)
            await self._say(interaction, tr(MISSING_PERMISSIONS, permissions=listed))
            return
        requester = requester_of(interaction)
        entry: Entry | None = None
        try:
            if contest:
                entry = await self._claim_entry(interaction, variants)
            quote = await self.jobs.quote(spec, requester, count=variants)
            if quote.needs_confirmation and not await confirmed(interaction, quote):
                await self._release(entry)
                return
            reservation = await self.jobs.reserve(
                spec,
                requester,
                command=command,
                parent_job_id=parent_job_id,
                parent_kind=parent_kind,
                quote=quote,
                count=variants,
            )
        except QuotaExceeded as exc:
            await self._release(entry)
            await self._say(interaction, quota_text(exc))
            return
        except UserError as exc:
            await self._release(entry)
            await self._say(interaction, exc.message)
            return
        except StorageError as exc:
            await self._release(entry)
            log.warning("could not record a new job for user %d: %s", interaction.user.id, exc)
            try:
                await self._say(interaction, tr(COULD_NOT_RECORD))
            except (discord.HTTPException, RuntimeError):
                # The bot stopped while the database kept this command waiting (its HTTP session is
                # closed then); nothing was reserved, so there is nothing to undo.
                log.info("interaction %d: could not say that nothing was recorded", interaction.id)
            return
        jobs = reservation.jobs
        if entry is not None:
            await self._link_entry(entry, jobs[0])
        if not self.jobs.accepting:
            # The bot began stopping while this was being reserved: the jobs stay reserved (they never
            # reached a provider) and the next start carries them on, posting their cards then.
            with contextlib.suppress(discord.HTTPException):
                if len(jobs) == 1:
                    await self._say(interaction, tr(RESERVED_DURING_RESTART, job_id=jobs[0].id))
                else:
                    await self._say(interaction, tr(VARIANTS_DURING_RESTART, first=jobs[0].id, last=jobs[-1].id))
            return
        line = defaults.card_line if defaults else ""
        notes = [receipt_text(jobs), *(defaults.notes if defaults else ()), reservation.note]
        try:
            # Each part in the member's language, then put together (a joined Text would be English).
            receipt = "\n".join(to_member(interaction, part) for part in notes if part)
            await interaction.edit_original_response(content=receipt)
            group = await self._post_set_card(interaction, jobs) if len(jobs) > 1 else None
            # An entry's card is private: a public one (and Discord's "used /video" line) would name its author.
            message_ids = [await self._post_card(interaction, job, line, private=entry is not None) for job in jobs]
        except Exception:
            # Reserved but never shown or started: give the money back before saying so.
            log.exception("job %d: could not post the job card", jobs[0].id)
            for job in jobs:
                await self.jobs.abandon(job, "could not post the job card")
            await self._release(entry)
            with contextlib.suppress(discord.HTTPException):
                await self._say(interaction, tr(COULD_NOT_POST))
            return
        channel = interaction.channel
        assert isinstance(channel, discord.abc.Messageable)
        notifier = self._notifier(interaction, channel)
        for job, message_id in zip(jobs, message_ids, strict=True):
            reporter: JobReporter = DiscordReporter(
                interaction=interaction,
                channel=channel,
                message_id=message_id,
                upload_limit=interaction.filesize_limit,
                handover_seconds=self.handover_seconds,
                on_new_message=functools.partial(self.jobs.attach_card, job.id),
                defaults=line,
                locale=server_locale(interaction),
                thumbnail=functools.partial(self.jobs.input_thumbnail, job) if job.input_image else None,
            )
            reporter = HeldReporter(
                reporter,
                interaction.client,
                self.context,
                self.gallery,
                job.id,
                interaction=interaction,
                private_card=message_id if entry is not None else None,
            )
            if entry is None:
                # A variant tells the card listing its set (which pings once, at the end); a job alone pings
                # itself. An entry pings no one in the channel: that would name its author.
                reporter = SetMember(reporter, group) if group is not None else OnFinish(reporter, notifier.job_ended)
            self.jobs.start(job, reporter)

    async def _claim_entry(self, interaction: discord.Interaction, variants: int) -> Entry:
        """One of the member's entry slots in this channel's contest, before anything is reserved."""
        if variants > 1:
            raise UserError(tr(ENTRY_IS_ONE_CLIP))
        if self.context.contests is None or interaction.channel_id is None:
            raise UserError(tr(NO_CONTESTS))
        return await self.context.contests.claim(interaction.channel_id, interaction.user.id)

    async def _link_entry(self, entry: Entry, job: JobRecord) -> None:
        contests, review = self.context.contests, self.context.review
        assert contests is not None
        await contests.link(entry.id, job.id)
        placed = await contests.entry_of(job.id)
        if review is not None and placed is not None and placed[0].review:
            await review.hold(job.id, job.guild_id, job.channel_id, job.user_id, always=True)

    async def _release(self, entry: Entry | None) -> None:
        if entry is not None and self.context.contests is not None:
            await self.context.contests.release(entry.id)

    def _notifier(self, interaction: discord.Interaction, channel: discord.abc.Messageable) -> Notifier:
        return Notifier(
            interaction.client,
            self.defaults,
            self.jobs,
            channel,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id or 0,
            locale=server_locale(interaction),
            member_locale=member_locale(interaction),
        )

    async def _post_card(
        self, interaction: discord.Interaction, job: JobRecord, defaults: str = "", *, private: bool = False
    ) -> int:
        """A job's public card (a follow-up: the deferred private message was edited into the receipt), or
        with `private` one only the member sees, in their language."""
        card = replace(self.jobs.card_for(job), defaults=defaults)
        locale = member_locale(interaction) if private else server_locale(interaction)
        # With its Cancel button from the start: with workers, a job may wait in the queue for a while.
        message = await interaction.followup.send(
            embed=render(card, locale),
            view=progress_view(job.id, locale),
            wait=True,
            allowed_mentions=NO_PINGS,
            ephemeral=private,
        )
        await self.jobs.attach_card(job.id, message.id)
        return message.id

    async def _post_set_card(self, interaction: discord.Interaction, jobs: Sequence[JobRecord]) -> VariantSet:
        """The public card listing the variants, posted before their own cards; it follows them to the end."""
        ids = [job.id for job in jobs]
        locale = server_locale(interaction)
        cards = [self.jobs.card_for(job) for job in jobs]
        first = VariantSet(_no_show, cards=cards).summary()
        assert first is not None
        message = await interaction.followup.send(embed=render_set(first, locale), wait=True, allowed_mentions=NO_PINGS)
        await self.jobs.attach_set_card(ids, message.id)
        channel = interaction.channel
        assert isinstance(channel, discord.abc.Messageable)
        shower = DiscordReporter(
            interaction=interaction,
            channel=channel,
            message_id=message.id,
            upload_limit=None,
            handover_seconds=self.handover_seconds,
            on_new_message=functools.partial(self.jobs.attach_set_card, ids),
        )
        notifier = self._notifier(interaction, channel)

        async def show(summary: SetCard) -> None:
            await shower.edit(embed=render_set(summary, locale), view=None)

        return VariantSet(show, cards=cards, on_finished=notifier.set_ended)


async def _no_show(summary: SetCard) -> None:
    """The set as it is first posted needs no sender."""
