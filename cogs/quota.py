"""/quota: what the caller has left today and this month, and the server's budget. Private."""

from __future__ import annotations

from datetime import UTC, datetime

import discord
from discord import app_commands
from discord.ext import commands

from services.quotas import effective_limits, summarise
from settings import QuotasSection
from storage.jobs import JobRepository


class QuotaCog(commands.Cog):
    def __init__(self, repo: JobRepository, quotas: QuotasSection) -> None:
        self.repo = repo
        self.quotas = quotas

    @app_commands.command(name="quota", description="See how many videos and dollars you have left.")
    async def quota(self, interaction: discord.Interaction) -> None:
        # One indexed read on the local database: fast enough to answer inside the 3 s window.
        now = datetime.now(UTC)
        roles = [role.id for role in getattr(interaction.user, "roles", [])]
        limits = effective_limits(self.quotas, roles)
        usage = await self.repo.usage(interaction.user.id, interaction.guild_id, now)
        embed = discord.Embed(title="Your video quota", colour=0x3498DB)
        for line in summarise(limits, usage, now, guild=interaction.guild_id is not None):
            if line.limit is None:
                value = f"{line.used} used · no limit"
            else:
                value = f"**{line.left} left** of {line.limit} (used {line.used})"
            if line.resets_at is not None:
                value += f"\nresets <t:{int(line.resets_at.timestamp())}:R>"
            embed.add_field(name=line.label, value=value, inline=False)
        if limits.user_max_in_flight is not None:
            embed.set_footer(text=f"{usage.user_in_flight} of {limits.user_max_in_flight} jobs running now")
        await interaction.response.send_message(embed=embed, ephemeral=True)
