"""What the buttons on a job card do: Re-roll (same settings, a new job, charged again), Remix (the
same with an edited prompt, through a modal), Continue (a new /animate job from the clip's last
frame), Retry (a re-roll of a failed or cancelled job), Cancel and Delete (the requester, or anyone
who may manage messages in the channel). Re-roll, Remix, Continue and Retry are open to anyone who
sees the card, like /video itself: the new job is theirs, charged to them and quota-checked."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Literal

import discord
from discord.ext import commands

from cogs.context import CogContext
from cogs.funnel import FunnelModal
from cogs.held import LazyGallery
from cogs.launch import JobLauncher
from cogs.speech import to_member
from core.errors import UserError
from core.jobs import JobRecord, JobStatus, ParentKind
from core.text import N_, tr
from media.ffmpeg import MediaError
from services.prompts import MAX_PROMPT_CHARS, validate_prompt

log = logging.getLogger(__name__)

NO_SUCH_JOB = N_("That job no longer exists.")
NOT_STORED = N_("This clip is no longer stored, so it cannot be continued.")
NOT_ENDED = N_("This job has not failed or been cancelled: use Re-roll to make it again.")
BAD_FRAME = N_("The clip's last frame cannot be used as a first frame: {reason}")
PROMPT_LABEL = N_("Prompt (camera moves in [brackets])")
REMIX_TITLE = N_("Remix job #{job_id}")
CONTINUE_TITLE = N_("Continue job #{job_id}")
NOT_YOURS = {
    "cancel": N_("Only the person who asked for this video (or a moderator) can cancel it."),
    "delete": N_("Only the person who asked for this video (or a moderator) can delete it."),
}
NOT_DELETED = N_("I could not delete that message.")
DELETED = N_("Deleted.")

Submit = Callable[[discord.Interaction, str], Awaitable[None]]


class PromptModal(FunnelModal):
    """One paragraph input prefilled with the job's prompt (camera moves included); Submit hands the
    edited text to `on_prompt`. `title` and `label` come rendered in the member's language."""

    def __init__(
        self, title: str, prompt: str, *, required: bool, on_prompt: Submit, label: str = PROMPT_LABEL
    ) -> None:
        super().__init__(title=title, timeout=15 * 60)
        self.on_prompt = on_prompt
        self.prompt: discord.ui.TextInput[PromptModal] = discord.ui.TextInput(
            label=label,
            style=discord.TextStyle.paragraph,
            default=prompt[:MAX_PROMPT_CHARS] or None,
            required=required,
            max_length=MAX_PROMPT_CHARS,
        )
        self.add_item(self.prompt)

    async def on_submit(self, interaction: discord.Interaction, /) -> None:
        await self.on_prompt(interaction, self.prompt.value)


class CardActionsCog(commands.Cog):
    def __init__(self, bot: commands.Bot, context: CogContext) -> None:
        self.jobs = context.jobs
        self.bot = bot
        self.launcher = JobLauncher(context, LazyGallery(bot))
        context.buttons.register("reroll", self.reroll)
        context.buttons.register("cancel", self.cancel)
        context.buttons.register("delete", self.delete)
        context.buttons.register("remix", self.remix)
        context.buttons.register("continue", self.continue_)
        context.buttons.register("retry", self.retry)
        self.funnel = context.funnel
        self.outputs = context.outputs

    async def reroll(self, interaction: discord.Interaction, job_id: int) -> None:
        await self._again(interaction, job_id, "reroll")

    async def retry(self, interaction: discord.Interaction, job_id: int) -> None:
        """A failed or cancelled (refunded) job, made again: a new job, charged normally."""
        await self._again(interaction, job_id, "retry")

    async def _again(self, interaction: discord.Interaction, job_id: int, kind: ParentKind) -> None:
        job = await self.jobs.get(job_id)
        if job is None:
            await interaction.response.send_message(to_member(interaction, tr(NO_SUCH_JOB)), ephemeral=True)
            return
        if kind == "retry" and not job.status.refunded:
            await interaction.response.send_message(to_member(interaction, tr(NOT_ENDED)), ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            spec = await self.jobs.reroll_spec(job)
        except UserError as exc:
            await interaction.edit_original_response(content=to_member(interaction, exc.message))
            return
        await self.launcher.launch(interaction, spec, command=job.command, parent_job_id=job.id, parent_kind=kind)

    async def remix(self, interaction: discord.Interaction, job_id: int) -> None:
        """A modal prefilled with the prompt; its Submit makes a new job with the same settings."""
        job = await self.jobs.get(job_id)
        if job is None:
            await interaction.response.send_message(to_member(interaction, tr(NO_SUCH_JOB)), ephemeral=True)
            return

        async def submitted(modal_interaction: discord.Interaction, text: str) -> None:
            await self._remix(modal_interaction, job, text)

        required = job.mode == "t2v"
        await self._ask_prompt(interaction, tr(REMIX_TITLE, job_id=job.id), job.prompt, required, submitted)

    async def _remix(self, interaction: discord.Interaction, job: JobRecord, text: str) -> None:
        try:
            prompt = validate_prompt(text, required=job.mode == "t2v")
        except UserError as exc:
            await interaction.response.send_message(to_member(interaction, exc.message), ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            spec = await self.jobs.reroll_spec(job)
        except UserError as exc:
            await interaction.edit_original_response(content=to_member(interaction, exc.message))
            return
        await self.launcher.launch(
            interaction, replace(spec, prompt=prompt), command=job.command, parent_job_id=job.id, parent_kind="remix"
        )

    async def continue_(self, interaction: discord.Interaction, job_id: int) -> None:
        """A new /animate job from the last frame of this job's kept clip, prompt editable in a modal."""
        job = await self.jobs.get(job_id)
        if job is None:
            await interaction.response.send_message(to_member(interaction, tr(NO_SUCH_JOB)), ephemeral=True)
            return
        stored = await self.outputs.stored(job.id) if self.outputs is not None else None
        if job.status != JobStatus.DELIVERED or stored is None:
            await interaction.response.send_message(to_member(interaction, tr(NOT_STORED)), ephemeral=True)
            return

        async def submitted(modal_interaction: discord.Interaction, text: str) -> None:
            await self._continue(modal_interaction, job, text)

        await self._ask_prompt(interaction, tr(CONTINUE_TITLE, job_id=job.id), job.prompt, False, submitted)

    async def _continue(self, interaction: discord.Interaction, job: JobRecord, text: str) -> None:
        try:
            prompt = validate_prompt(text, required=False)
        except UserError as exc:
            await interaction.response.send_message(to_member(interaction, exc.message), ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            frame = await self.outputs.last_frame(job.id) if self.outputs is not None else None
        except (MediaError, OSError) as exc:
            log.warning("job %d: could not take the last frame of the kept clip: %s", job.id, exc)
            frame = None
        if frame is None:
            await interaction.edit_original_response(content=to_member(interaction, tr(NOT_STORED)))
            return
        try:
            spec = await self.jobs.continue_spec(job, prompt, frame)
        except UserError as exc:
            reason = tr(BAD_FRAME, reason=exc.message)
            await interaction.edit_original_response(content=to_member(interaction, reason))
            return
        await self.launcher.launch(interaction, spec, command="animate", parent_job_id=job.id, parent_kind="continue")

    async def _ask_prompt(
        self, interaction: discord.Interaction, title: str, prompt: str, required: bool, on_prompt: Submit
    ) -> None:
        """The modal speaks the member's language (only they see it)."""
        modal = PromptModal(
            to_member(interaction, title),
            prompt,
            required=required,
            on_prompt=on_prompt,
            label=to_member(interaction, tr(PROMPT_LABEL)),
        )
        modal.funnel = self.funnel
        await interaction.response.send_modal(modal)

    async def cancel(self, interaction: discord.Interaction, job_id: int) -> None:
        if not await self._may_manage(interaction, job_id, "cancel"):
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        # A job still waiting for a worker is ended here; its card is shown as after a restart.
        outcome = await self.jobs.cancel(job_id, getattr(self.bot, "reporter_for", None))
        log.info("job %d: cancel by user %d: %s", job_id, interaction.user.id, outcome.value)
        await interaction.edit_original_response(content=to_member(interaction, outcome.message))

    async def delete(self, interaction: discord.Interaction, job_id: int) -> None:
        if not await self._may_manage(interaction, job_id, "delete"):
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            if interaction.message is not None:
                await interaction.message.delete()
        except discord.NotFound:
            pass
        except discord.HTTPException:
            await interaction.edit_original_response(content=to_member(interaction, tr(NOT_DELETED)))
            return
        log.info("job %d: result deleted by user %d", job_id, interaction.user.id)
        await interaction.edit_original_response(content=to_member(interaction, tr(DELETED)))

    async def _may_manage(
        self, interaction: discord.Interaction, job_id: int, verb: Literal["cancel", "delete"]
    ) -> bool:
        """The requester, or anyone allowed to manage messages in the channel."""
        job = await self.jobs.get(job_id)
        if (job is not None and interaction.user.id == job.user_id) or interaction.permissions.manage_messages:
            return True
        await interaction.response.send_message(to_member(interaction, tr(NOT_YOURS[verb])), ephemeral=True)
        return False
