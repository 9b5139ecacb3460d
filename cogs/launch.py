"""From a checked request to a running job, in Discord: reserve, post the public card, start.

Sequence (docs/discord.md): the command has already deferred *ephemerally*; the private "thinking"
message is first edited into a short receipt, so the follow-up that carries the public card creates a
new message rather than editing the deferred one. A problem found on the way is still private.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import replace

import discord

from cogs.cards import render
from cogs.context import CogContext
from cogs.quotes import confirmed
from cogs.reporter import NO_PINGS, DiscordReporter
from core.defaults import Merged
from core.errors import QuotaExceeded, StorageError, UserError
from core.jobs import JobRecord, ParentKind
from core.spec import GenerationSpec
from services.intake import Requester
from services.pricing import format_usd

log = logging.getLogger(__name__)

RESERVED_DURING_RESTART = (
    "Job #{job_id} is accepted, but the bot is restarting: it will start, and its card appear here, "
    "when the bot is back (usually within a minute)."
)
COULD_NOT_POST = "Sorry, I could not post your job. Nothing was charged."
COULD_NOT_RECORD = (
    "The bot's database or disk is busy or full right now, so I could not record your request. "
    "Nothing was charged: please try again in a minute."
)
RESTARTING = "The bot is restarting and not taking new videos for a moment. Please try again in a minute."
NEEDED_PERMISSIONS = {
    "view_channel": "View Channel",
    "send_messages": "Send Messages",
    "embed_links": "Embed Links",
    "attach_files": "Attach Files",
    "read_message_history": "Read Message History",
}


def missing_channel_permissions(interaction: discord.Interaction) -> list[str]:
    if interaction.guild_id is None:
        return []
    granted = interaction.app_permissions
    return [label for name, label in NEEDED_PERMISSIONS.items() if not getattr(granted, name)]


def quota_text(exc: QuotaExceeded) -> str:
    if exc.resets_at is None:
        return exc.message
    return f"{exc.message} It resets <t:{int(exc.resets_at.timestamp())}:R>."


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
    def __init__(self, context: CogContext) -> None:
        self.jobs = context.jobs
        self.handover_seconds = context.handover_seconds

    async def launch(
        self,
        interaction: discord.Interaction,
        spec: GenerationSpec,
        *,
        command: str,
        parent_job_id: int | None = None,
        parent_kind: ParentKind | None = None,
        defaults: Merged | None = None,
    ) -> None:
        """Reserve, post the public card, and run the job in the background. The interaction is deferred.
        `defaults`: which of the member's /settings defaults applied (on the card) and why some did not
        (in the private receipt)."""
        if not self.jobs.accepting:
            await interaction.edit_original_response(content=RESTARTING)
            return
        missing = missing_channel_permissions(interaction)
        if missing:
            # Interaction replies work without them, but a job that outlives the 15-minute token, a
            # card a moderator deleted, or a restart all need the bot's own access to the channel.
            await interaction.edit_original_response(
                content=f"I need these permissions in this channel first: {', '.join(missing)}. "
                "Ask a moderator to grant them. Nothing was charged."
            )
            return
        requester = requester_of(interaction)
        try:
            quote = await self.jobs.quote(spec, requester)
            if quote.needs_confirmation and not await confirmed(interaction, quote):
                return
            reservation = await self.jobs.reserve(
                spec, requester, command=command, parent_job_id=parent_job_id, parent_kind=parent_kind, quote=quote
            )
        except QuotaExceeded as exc:
            await interaction.edit_original_response(content=quota_text(exc))
            return
        except UserError as exc:
            await interaction.edit_original_response(content=exc.message)
            return
        except StorageError as exc:
            log.warning("could not record a new job for user %d: %s", interaction.user.id, exc)
            try:
                await interaction.edit_original_response(content=COULD_NOT_RECORD)
            except (discord.HTTPException, RuntimeError):
                # The bot stopped while the database kept this command waiting (its HTTP session is
                # closed then); nothing was reserved, so there is nothing to undo.
                log.info("interaction %d: could not say that nothing was recorded", interaction.id)
            return
        job = reservation.job
        if not self.jobs.accepting:
            # The bot began stopping while this was being reserved: the job stays reserved (it never
            # reached a provider) and the next start carries it on, posting its card then.
            with contextlib.suppress(discord.HTTPException):
                await interaction.edit_original_response(content=RESERVED_DURING_RESTART.format(job_id=job.id))
            return
        try:
            notes = [*(defaults.notes if defaults else ()), reservation.note]
            line = defaults.card_line if defaults else ""
            message_id = await self._post_card(interaction, job, "\n".join(n for n in notes if n), line)
        except Exception:
            # Reserved but never shown or started: give the money back before saying so.
            log.exception("job %d: could not post the job card", job.id)
            await self.jobs.abandon(job, "could not post the job card")
            with contextlib.suppress(discord.HTTPException):
                await interaction.edit_original_response(content=COULD_NOT_POST)
            return
        channel = interaction.channel
        assert isinstance(channel, discord.abc.Messageable)
        reporter = DiscordReporter(
            interaction=interaction,
            channel=channel,
            message_id=message_id,
            upload_limit=interaction.filesize_limit,
            handover_seconds=self.handover_seconds,
            on_new_message=functools.partial(self.jobs.attach_card, job.id),
            defaults=line,
        )
        self.jobs.start(job, reporter)

    async def _post_card(
        self, interaction: discord.Interaction, job: JobRecord, note: str = "", defaults: str = ""
    ) -> int:
        """The private receipt, then the public card (a new message: the deferred one is edited first)."""
        cost = "free preview" if job.cost_micros == 0 else format_usd(job.cost_micros)
        receipt = f"Job #{job.id} accepted ({cost}). Follow it below." + (f"\n{note}" if note else "")
        await interaction.edit_original_response(content=receipt)
        card = replace(self.jobs.card_for(job), defaults=defaults)
        message = await interaction.followup.send(embed=render(card), wait=True, allowed_mentions=NO_PINGS)
        await self.jobs.attach_card(job.id, message.id)
        return message.id
