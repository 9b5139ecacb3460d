"""/quota: what the caller has left today and this month, and the server's budget. Private."""

from __future__ import annotations

import functools

import discord
from discord import app_commands
from discord.ext import commands

from cogs.context import CogContext
from cogs.speech import to_member
from core.text import tr


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
        say = functools.partial(to_member, interaction)
        embed = discord.Embed(title=say(tr("Your video quota")), colour=0x3498DB)
        for line in summary.lines:
            if line.limit is None:
                value = tr("{used} used · no limit", used=line.used)
            else:
                value = tr("**{left} left** of {limit} (used {used})", left=line.left, limit=line.limit, used=line.used)
            if line.resets_at is not None:
                value = tr("{standing}\nresets <t:{when}:R>", standing=value, when=int(line.resets_at.timestamp()))
            embed.add_field(name=say(line.label), value=say(value), inline=False)
        if summary.max_in_flight is not None:
            running = tr("{running} of {most} jobs running now", running=summary.in_flight, most=summary.max_in_flight)
            embed.set_footer(text=say(running))
        await interaction.response.send_message(embed=embed, ephemeral=True)
