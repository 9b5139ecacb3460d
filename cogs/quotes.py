"""The private quote before a big job (`/admin quote-threshold`): the price and what the member has
left today, with Confirm and Cancel. Nothing is reserved until Confirm, which goes through the normal
reservation (every limit checked again); Cancel or 60 s without an answer reserve nothing at all."""

from __future__ import annotations

import discord

from cogs.speech import to_member
from core.text import N_, Text, tr
from services.jobs import Quote
from services.pricing import format_usd

QUOTE_SECONDS = 60.0
CANCELLED = N_("Cancelled. Nothing was reserved or charged.")
EXPIRED = N_("The quote expired after a minute. Nothing was reserved or charged; run the command again to make it.")
CONFIRMED = N_("Confirmed: reserving…")
CONFIRM, CANCEL = N_("Confirm"), N_("Cancel")


def quote_text(quote: Quote) -> Text:
    price = format_usd(quote.total_micros)  # variants: all of them at once
    left = None if quote.left_today_micros is None else format_usd(quote.left_today_micros)
    if quote.count == 1:
        if left is None:
            return tr(
                "This clip costs {price}. Confirm within a minute to make it (nothing is reserved until you do).",
                price=price,
            )
        return tr(
            "This clip costs {price}; you have {left} left today. Confirm within a minute to make it "
            "(nothing is reserved until you do).",
            price=price,
            left=left,
        )
    if left is None:
        return tr(
            "These {n} clips cost {price}. Confirm within a minute to make them (nothing is reserved until you do).",
            n=quote.count,
            price=price,
        )
    return tr(
        "These {n} clips cost {price}; you have {left} left today. Confirm within a minute to make them "
        "(nothing is reserved until you do).",
        n=quote.count,
        price=price,
        left=left,
    )


class QuoteView(discord.ui.View):
    """Confirm / Cancel, for the member who asked only (the message is private anyway), labelled in the
    member's language."""

    def __init__(self, owner_id: int, interaction: discord.Interaction | None = None) -> None:
        super().__init__(timeout=QUOTE_SECONDS)
        self.owner_id = owner_id
        self.confirmed: bool | None = None  # None: no answer (expired)
        if interaction is not None:
            self.confirm.label = to_member(interaction, tr(CONFIRM))
            self.cancel.label = to_member(interaction, tr(CANCEL))

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
    view = QuoteView(interaction.user.id, interaction)
    await interaction.edit_original_response(content=to_member(interaction, quote_text(quote)), view=view)
    await view.wait()
    if view.confirmed:
        await interaction.edit_original_response(content=to_member(interaction, tr(CONFIRMED)), view=None)
        return True
    ending = tr(CANCELLED if view.confirmed is False else EXPIRED)
    await interaction.edit_original_response(content=to_member(interaction, ending), view=None)
    return False
