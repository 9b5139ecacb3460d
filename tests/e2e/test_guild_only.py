"""Commands are for servers only: registered for guild contexts, and a DM that reaches the bot anyway is
refused privately with nothing reserved and no provider called (a DM has no server budget or provider
pin, so a job there would escape both)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cogs.access import GUILD_ONLY
from core.jobs import LedgerTotals
from tests.e2e.harness import BotUnderTest, running_bot
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.wavespeed_server import FakeWaveSpeed


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[tuple[BotUnderTest, FakeWaveSpeed]]:
    async with FakeWaveSpeed("ws-test-key", duration_s=0.2) as wavespeed:
        fake = FakeDiscord()
        await fake.start()
        try:
            async with running_bot(tmp_path, fake, wavespeed_url=wavespeed.base_url) as running:
                yield running, wavespeed
        finally:
            await fake.stop()


async def test_commands_are_registered_for_servers_only(bot: tuple[BotUnderTest, FakeWaveSpeed]) -> None:
    running, _ = bot
    for command in running.discord.commands:
        assert command.get("contexts") == [0], command["name"]  # 0 = GUILD; no BOT_DM, no PRIVATE_CHANNEL


@pytest.mark.parametrize("name", ["video", "quota"])
async def test_a_command_in_a_dm_is_refused_privately_and_costs_nothing(
    bot: tuple[BotUnderTest, FakeWaveSpeed], name: str
) -> None:
    running, wavespeed = bot
    fake = running.discord
    options = {"prompt": "a lighthouse in a storm"} if name == "video" else {}
    interaction = await fake.invoke(name, options, dm=True)
    await fake.wait_until(lambda f: (reply := interaction.original()) is not None and reply.content != "", timeout=10)
    reply = interaction.original()
    assert reply is not None and reply.ephemeral and reply.content == GUILD_ONLY
    assert wavespeed.requests == []
    assert await running.app.db.fetchall("SELECT id FROM jobs") == []
    assert await running.app.store.ledger_totals() == LedgerTotals(0, 0, 0, 0)
    # The same member in the server is served as usual.
    served = await fake.invoke("video", {"prompt": "a lighthouse in a storm"})
    await fake.wait_until(lambda f: (reply := served.original()) is not None and "accepted" in reply.content)
