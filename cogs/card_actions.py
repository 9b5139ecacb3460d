"""What the buttons on a job card do: Re-roll (same settings, a new job, charged again), Cancel and
Delete (the requester, or anyone who may manage messages in the channel)."""

from __future__ import annotations

import logging

import discord
from discord.ext import commands

from cogs.context import CogContext
from cogs.launch import JobLauncher
from core.errors import UserError

log = logging.getLogger(__name__)

NO_SUCH_JOB = "That job no longer exists."


class CardActionsCog(commands.Cog):
    def __init__(self, bot: commands.Bot, context: CogContext) -> None:
        self.jobs = context.jobs
        self.launcher = JobLauncher(context)
        context.buttons.register("reroll", self.reroll)
        context.buttons.register("cancel", self.cancel)
        context.buttons.register("delete", self.delete)

    async def reroll(self, interaction: discord.Interaction, job_id: int) -> None:
        job = await self.jobs.get(job_id)
        if job is None:
            await interaction.response.send_message(NO_SUCH_JOB, ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            spec = await self.jobs.reroll_spec(job)
        except UserError as exc:
            await interaction.edit_original_response(content=exc.message)
            return
        await self.launcher.launch(interaction, spec, command=job.command, parent_job_id=job.id, parent_kind="reroll")

    async def cancel(self, interaction: discord.Interaction, job_id: int) -> None:
        if not await self._may_manage(interaction, job_id, "cancel"):
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        outcome = await self.jobs.cancel(job_id)
        log.info("job %d: cancel by user %d: %s", job_id, interaction.user.id, outcome.value)
        await interaction.edit_original_response(content=outcome.message)

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
            await interaction.edit_original_response(content="I could not delete that message.")
            return
        log.info("job %d: result deleted by user %d", job_id, interaction.user.id)
        await interaction.edit_original_response(content="Deleted.")

    async def _may_manage(self, interaction: discord.Interaction, job_id: int, verb: str) -> bool:
        """The requester, or anyone allowed to manage messages in the channel."""
        job = await self.jobs.get(job_id)
        if (job is not None and interaction.user.id == job.user_id) or interaction.permissions.manage_messages:
            return True
        await interaction.response.send_message(
            f"Only the person who asked for this video (or a moderator) can {verb} it.", ephemeral=True
        )
        return False
