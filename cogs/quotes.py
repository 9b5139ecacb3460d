"""The private quote before a big job (`/admin quote-threshold`): the price and what the member has
left today, with Confirm and Cancel. Nothing is reserved until Confirm, which goes through the normal
reservation (every limit checked again); Cancel or 60 s without an answer reserve nothing at all."""

from __future__ import annotations

import discord

from services.jobs import Quote
from services.pricing import format_usd

QUOTE_SECONDS = 60.0
CANCELLED = "Cancelled. Nothing was reserved or charged."
EXPIRED = "The quote expired after a minute. Nothing was reserved or charged; run the command again to make it."


def quote_text(quote: Quote) -> str:
    left = "" if quote.left_today_micros is None else f"; you have {format_usd(quote.left_today_micros)} left today"
    what = "This clip costs" if quote.count == 1 else f"These {quote.count} clips cost"  # variants: all at once
    return (
        f"{what} {format_usd(quote.total_micros)}{left}. Confirm within a minute to make it "
        "(nothing is reserved until you do)."
    )


class QuoteView(discord.ui.View):
    """Confirm / Cancel, for the member who asked only (the message is private anyway)."""

    def __init__(self, owner_id: int) -> None:
        super().__init__(timeout=QUOTE_SECONDS)
        self.owner_id = owner_id
        self.confirmed: bool | None = None  # None: no answer (expired)

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return interaction.user.id == self.owner_id

    @discord.ui.button(label="Confirm", style=discord.ButtonStyle.success, custom_id="hailuo-quote:confirm")
    async def confirm(self, interaction: discord.Interaction, _button: discord.ui.Button[QuoteView]) -> None:
        await self._answer(interaction, True)

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary, custom_id="hailuo-quote:cancel")
    async def cancel(self, interaction: discord.Interaction, _button: discord.ui.Button[QuoteView]) -> None:
        await self._answer(interaction, False)

    async def _answer(self, interaction: discord.Interaction, confirmed: bool) -> None:
        if self.confirmed is None:
            self.confirmed = confirmed
            self.stop()
        await interaction.response.defer()  # the command's own message is edited next


async def confirmed(interaction: discord.Interaction, quote: Quote) -> bool:
    """Show the quote in the command's private reply and wait for the member's answer."""
    view = QuoteView(interaction.user.id)
    await interaction.edit_original_response(content=quote_text(quote), view=view)
    await view.wait()
    if view.confirmed:
        await interaction.edit_original_response(content="Confirmed: reserving…", view=None)
        return True
    await interaction.edit_original_response(content=CANCELLED if view.confirmed is False else EXPIRED, view=None)
    return False
