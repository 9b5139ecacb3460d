"""The error funnel and the button router, with an interaction stand-in that has only what they use."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import discord
import pytest

from cogs.buttons import GONE, ButtonRouter, JobButton, custom_id
from cogs.funnel import APOLOGY, ErrorFunnel, FunnelModal


@dataclass
class Sent:
    text: str
    ephemeral: bool


@dataclass
class Answers:
    """`interaction.response` and `interaction.followup` in one: records what was sent, and how."""

    done: bool = False
    sent: list[Sent] = field(default_factory=list)

    def is_done(self) -> bool:
        return self.done

    async def send_message(self, text: str, *, ephemeral: bool = False) -> None:
        self.done = True
        self.sent.append(Sent(text, ephemeral))

    async def send(self, text: str, *, ephemeral: bool = False) -> None:
        self.sent.append(Sent(text, ephemeral))


class Interaction:
    def __init__(self, deferred: bool = False) -> None:
        self.id = 123456789
        self.locale = discord.Locale.american_english
        self.answers = Answers(done=deferred)
        self.response = self.followup = self.answers


def as_discord(interaction: Interaction) -> discord.Interaction:
    return interaction  # type: ignore[return-value]  # duck-typed: the funnel uses id, locale, response, followup


@pytest.mark.parametrize("deferred", [False, True])
async def test_a_handler_error_becomes_a_private_apology_with_a_reference(
    deferred: bool, caplog: pytest.LogCaptureFixture
) -> None:
    router = ButtonRouter(ErrorFunnel())

    async def broken(interaction: discord.Interaction, job_id: int) -> None:
        raise RuntimeError("a bug")

    router.register("reroll", broken)
    interaction = Interaction(deferred)
    await router.dispatch(as_discord(interaction), "reroll", 42)
    [sent] = interaction.answers.sent
    assert sent == Sent(APOLOGY.format(reference=interaction.id), ephemeral=True)
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "button reroll on job 42 failed" in record.getMessage() and record.exc_info is not None


async def test_a_button_of_an_unknown_action_says_it_does_nothing_now() -> None:
    interaction = Interaction()
    await ButtonRouter(ErrorFunnel()).dispatch(as_discord(interaction), "remix", 7)
    assert interaction.answers.sent == [Sent(GONE, ephemeral=True)]


async def test_a_modal_error_goes_through_the_funnel() -> None:
    class Broken(FunnelModal, title="Broken"):
        pass

    interaction = Interaction()
    await Broken().on_error(as_discord(interaction), RuntimeError("a bug in on_submit"))
    assert interaction.answers.sent == [Sent(APOLOGY.format(reference=interaction.id), ephemeral=True)]


def test_every_button_carries_its_action_and_job_in_a_short_custom_id() -> None:
    button = JobButton("cancel", 1_234_567_890_123_456_789)
    assert button.item.custom_id == custom_id("cancel", 1_234_567_890_123_456_789)
    assert len(button.item.custom_id or "") <= 100  # Discord's limit
    with pytest.raises(ValueError):
        ButtonRouter(ErrorFunnel()).register("Not An Action", lambda interaction, job_id: None)  # type: ignore[arg-type,return-value]
