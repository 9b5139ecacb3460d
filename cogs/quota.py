"""/quota: what the caller has left today and this month, and the server's budget. Private."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from cogs.context import CogContext


class QuotaCog(commands.Cog):
    def __init__(self, bot: commands.Bot, context: CogContext) -> None:
        self.quotas = context.quotas

    @app_commands.command(name="quota", description="See how many videos and dollars you have left.")
    async def quota(self, interaction: discord.Interaction) -> None:
        # One indexed read on the local database: fast enough to answer inside the 3 s window.
        roles = [role.id for role in getattr(interaction.user, "roles", [])]
        summary = await self.quotas.summary(
            interaction.user.id, interaction.guild_id, roles, channel_id=interaction.channel_id
        )
        embed = discord.Embed(title="Your video quota", colour=0x3498DB)
        for line in summary.lines:
            if line.limit is None:
                value = f"{line.used} used · no limit"
            else:
                value = f"**{line.left} left** of {line.limit} (used {line.used})"
            if line.resets_at is not None:
                value += f"\nresets <t:{int(line.resets_at.timestamp())}:R>"
            embed.add_field(name=line.label, value=value, inline=False)
        if summary.max_in_flight is not None:
            embed.set_footer(text=f"{summary.in_flight} of {summary.max_in_flight} jobs running now")
        await interaction.response.send_message(embed=embed, ephemeral=True)
