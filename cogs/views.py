"""Buttons on finished clips. The job id lives in the custom_id, so they work after a restart."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import discord

if TYPE_CHECKING:
    from cogs.generate import GenerateCog


def _cog(interaction: discord.Interaction) -> GenerateCog:
    cog = interaction.client.get_cog("GenerateCog")  # type: ignore[attr-defined]
    assert cog is not None, "GenerateCog is not loaded"
    return cog  # type: ignore[return-value]


class RerollButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"hailuo:reroll:(?P<job_id>\d+)"):
    def __init__(self, job_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Re-roll", emoji="🎲", style=discord.ButtonStyle.primary, custom_id=f"hailuo:reroll:{job_id}"
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> RerollButton:
        return cls(int(match["job_id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await _cog(interaction).reroll(interaction, self.job_id)


class DeleteButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"hailuo:delete:(?P<job_id>\d+)"):
    def __init__(self, job_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Delete", emoji="🗑️", style=discord.ButtonStyle.secondary, custom_id=f"hailuo:delete:{job_id}"
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> DeleteButton:
        return cls(int(match["job_id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await _cog(interaction).delete(interaction, self.job_id)


class CancelButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"hailuo:cancel:(?P<job_id>\d+)"):
    def __init__(self, job_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Cancel", emoji="✖️", style=discord.ButtonStyle.secondary, custom_id=f"hailuo:cancel:{job_id}"
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> CancelButton:
        return cls(int(match["job_id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await _cog(interaction).cancel(interaction, self.job_id)


def progress_view(job_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job_id))
    return view


def result_view(job_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(RerollButton(job_id))
    view.add_item(DeleteButton(job_id))
    return view
