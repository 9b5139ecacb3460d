"""Every button on a job card: one DynamicItem whose custom_id carries the action and the job id
(`hailuo:<action>:<job id>`), so buttons keep working after a restart, and one router that hands each
press to the handler registered for its action — with any error going through the funnel.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import discord

from cogs.access import AccessGate
from cogs.funnel import ErrorFunnel, reply_privately
from core.text import N_, tr
from services.i18n import localise

log = logging.getLogger(__name__)

PREFIX = "hailuo"
# Discord allows 100 characters in a custom_id: the prefix, a short word and a snowflake-sized id fit.
TEMPLATE = rf"{PREFIX}:(?P<action>[a-z][a-z-]{{0,30}}):(?P<job_id>[0-9]{{1,20}})"
GONE = N_("This button no longer does anything.")

Handler = Callable[[discord.Interaction, int], Awaitable[None]]


@dataclass(frozen=True)
class Look:
    label: str  # a catalogue template (N_): the card's buttons speak the server's language
    emoji: str
    style: discord.ButtonStyle


LOOKS = {
    "cancel": Look(N_("Cancel"), "✖️", discord.ButtonStyle.secondary),
    "reroll": Look(N_("Re-roll"), "🎲", discord.ButtonStyle.primary),
    "remix": Look(N_("Remix"), "✏️", discord.ButtonStyle.secondary),
    "continue": Look(N_("Continue"), "⏭️", discord.ButtonStyle.secondary),
    "retry": Look(N_("Retry"), "🔁", discord.ButtonStyle.primary),
    "delete": Look(N_("Delete"), "🗑️", discord.ButtonStyle.secondary),
    "approve": Look(N_("Approve"), "✅", discord.ButtonStyle.success),
    "reject": Look(N_("Reject"), "⛔", discord.ButtonStyle.danger),
    "enter": Look(N_("Enter in contest"), "🏆", discord.ButtonStyle.secondary),
}


def custom_id(action: str, job_id: int) -> str:
    return f"{PREFIX}:{action}:{job_id}"


class JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=TEMPLATE):
    """A job card's button, labelled in `locale` (the server's language on a public card, the member's on
    a private reply); English when None. A press is dispatched by its custom_id, whatever its label."""

    def __init__(self, action: str, job_id: int, locale: str | None = None) -> None:
        look = LOOKS.get(action)
        label = localise(tr(look.label), locale) if look is not None else action
        button: discord.ui.Button[Any] = discord.ui.Button(
            label=label,
            emoji=(look.emoji if look is not None else "") or None,
            style=look.style if look is not None else discord.ButtonStyle.secondary,
            custom_id=custom_id(action, job_id),
        )
        super().__init__(button)
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> JobButton:
        return cls(match["action"], int(match["job_id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        router = getattr(interaction.client, "buttons", None)
        if not isinstance(router, ButtonRouter):
            log.error("button %s pressed but no router is installed on the client", self.action)
            return
        await router.dispatch(interaction, self.action, self.job_id)


class ButtonRouter:
    """Actions → handlers. Cogs register theirs when they load; the bot holds the router as `buttons`.

    Button presses do not pass the command tree, so the router asks the access gate itself: a card exists
    only where a command ran, but a press can come from a server delisted since, or be a crafted payload.
    The bot always passes its gate (bot.build_bot); without one (unit tests) every press is dispatched."""

    def __init__(self, funnel: ErrorFunnel, gate: AccessGate | None = None) -> None:
        self.funnel = funnel
        self.gate = gate
        self._handlers: dict[str, Handler] = {}

    def register(self, action: str, handler: Handler) -> None:
        if not re.fullmatch(r"[a-z][a-z-]{0,30}", action):
            raise ValueError(f"not a button action: {action!r}")
        self._handlers[action] = handler

    async def dispatch(self, interaction: discord.Interaction, action: str, job_id: int) -> None:
        handler = self._handlers.get(action)
        try:
            if self.gate is not None and not await self.gate.admit(interaction):
                return
            if handler is None:
                await reply_privately(interaction, tr(GONE))
                return
            await handler(interaction, job_id)
        except Exception as exc:
            await self.funnel.report(interaction, exc, f"button {action} on job {job_id}")


def job_view(job_id: int, *actions: str, locale: str | None = None) -> discord.ui.View:
    """A persistent view of these buttons for one job (the router dispatches them, whatever process),
    labelled in `locale`: `cogs.speech.server_locale` for a public card, `member_locale` for a private
    reply; English when None."""
    view = discord.ui.View(timeout=None)
    for action in actions:
        view.add_item(JobButton(action, job_id, locale))
    return view


def progress_view(job_id: int, locale: str | None = None) -> discord.ui.View:
    return job_view(job_id, "cancel", locale=locale)


def result_view(job_id: int, locale: str | None = None, *, enter: bool = False) -> discord.ui.View:
    """A finished job's card; `enter`: a contest takes entries in its channel (🏆 Enter in contest)."""
    actions = ("reroll", "remix", "continue", "delete", *(("enter",) if enter else ()))
    return job_view(job_id, *actions, locale=locale)


def ended_view(job_id: int, locale: str | None = None) -> discord.ui.View:
    """A failed or cancelled job's card (refunded): make it again, or with an edited prompt, or remove it."""
    return job_view(job_id, "retry", "remix", "delete", locale=locale)
