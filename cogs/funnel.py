"""One funnel for unexpected errors in anything a member can trigger — slash commands, buttons, modals:
a short private apology with a reference, and the details only in the log.

discord.py catches what a button's or a modal's callback raises and only logs it, which leaves the
member with Discord's "This interaction failed"; so buttons (cogs.buttons) and modals (`FunnelModal`)
route their errors here, and the app-command tree's error handler does the same for commands.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands

from cogs.speech import to_member
from core.errors import StorageError
from core.text import N_, tr

log = logging.getLogger("cogs")

APOLOGY = N_("Sorry, something went wrong on our side (reference {reference}). Nothing was charged.")
DATABASE_BUSY = N_(
    "The bot's database is busy or unavailable right now. Nothing was charged: please try again in a minute."
)
BAD_CHOICE = N_("That isn't one of the offered choices for an option. Pick one from the list.")


class ErrorFunnel:
    async def command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        """`CommandTree.on_error`."""
        if isinstance(error, app_commands.TransformerError):
            # A value outside the offered choices (a modified client): say what to fix, no alarm.
            log.info("interaction %d: refused option value (%s)", interaction.id, type(error).__name__)
            await reply_privately(interaction, tr(BAD_CHOICE))
            return
        what = f"command {getattr(interaction.command, 'name', '?')}"
        await self.report(interaction, error.__cause__ if isinstance(error.__cause__, Exception) else error, what)

    async def report(self, interaction: discord.Interaction, error: BaseException, what: str) -> None:
        """Log `error` with the interaction as reference, and apologise privately to the member."""
        if isinstance(error, StorageError):  # the database is sick, not the code: no traceback
            log.warning("%s failed (interaction %d): %s", what, interaction.id, error)
            await reply_privately(interaction, tr(DATABASE_BUSY))
            return
        log.error("%s failed (interaction %d)", what, interaction.id, exc_info=error)
        await reply_privately(interaction, tr(APOLOGY, reference=interaction.id))


class FunnelModal(discord.ui.Modal):
    """The base of the bot's modals: an error in `on_submit` reaches the funnel (set `funnel` before
    sending the modal; the default funnel logs and apologises the same way)."""

    funnel: ErrorFunnel | None = None

    # discord.py's Modal.on_error takes no item, unlike the View's it overrides in the stubs.
    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:  # type: ignore[override]
        await (self.funnel or ErrorFunnel()).report(interaction, error, f"modal {type(self).__name__}")


async def reply_privately(interaction: discord.Interaction, text: str) -> None:
    """Answer with a private message in the member's language, whether or not the interaction was answered
    (deferred) already."""
    text = to_member(interaction, text)
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)
    except discord.HTTPException:
        log.info("interaction %d: could not send the private reply", interaction.id)
