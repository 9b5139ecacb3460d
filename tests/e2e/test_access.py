"""Who may use the bot at all (`[access]`), end to end through the Discord stand-in with real discord.py:
servers not in `allowed_guilds` are refused privately (nothing reserved, no provider called) and logged
once each, `leave_unlisted` leaves them, DMs are refused unless `allow_dms`, and the start-up line says
who the bot is and how to invite it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from cogs.access import GUILD_ONLY, NOT_ENABLED, Access
from cogs.client import INVITE_PERMISSIONS, OPEN_TO_ALL
from core.jobs import LedgerTotals
from tests.e2e.harness import BotUnderTest, running_bot
from tests.e2e.test_generation_flows import finished
from tests.fakes.discord_server import FakeDiscord, FakeInteraction
from tests.fakes.wavespeed_server import FakeWaveSpeed

REFUSING = "not in access.allowed_guilds: refusing its commands"
PROMPT = {"prompt": "a lighthouse in a storm"}


def access(*guilds: int, leave_unlisted: bool = False, allow_dms: bool = False) -> str:
    """An `[access]` table for the harness's `extra`."""
    ids = ", ".join(str(guild) for guild in guilds)
    return (
        f"[access]\nallowed_guilds = [{ids}]\n"
        f"leave_unlisted = {str(leave_unlisted).lower()}\nallow_dms = {str(allow_dms).lower()}\n"
    )


def warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


def logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in r.getMessage() for r in caplog.records)


async def reply_of(fake: FakeDiscord, interaction: FakeInteraction) -> str:
    """The private answer's text, once there is one."""
    await fake.wait_until(lambda: (msg := interaction.original()) is not None and msg.content != "", timeout=10)
    reply = interaction.original()
    assert reply is not None and reply.ephemeral, "answered privately"
    return reply.content


async def served(fake: FakeDiscord, *, dm: bool = False) -> bool:
    """/quota answers with its private embed (not a refusal) in the stand-in's server, or in a DM."""
    quota = await fake.invoke("quota", dm=dm)
    await fake.wait_until(lambda: (msg := quota.original()) is not None and (msg.embeds or msg.content), timeout=10)
    reply = quota.original()
    return (
        reply is not None and reply.ephemeral and bool(reply.embeds) and reply.embeds[0]["title"] == "Your video quota"
    )


@pytest.fixture
async def wavespeed() -> AsyncIterator[FakeWaveSpeed]:
    async with FakeWaveSpeed("ws-test-key", duration_s=0.2) as fake:
        yield fake


async def assert_nothing_spent(running: BotUnderTest, wavespeed: FakeWaveSpeed) -> None:
    assert wavespeed.requests == []
    assert await running.app.db.fetchall("SELECT id FROM jobs") == []
    assert await running.app.store.ledger_totals() == LedgerTotals(0, 0, 0, 0)


async def test_an_unlisted_server_is_refused_privately_spends_nothing_and_is_warned_about_once(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    fake = discord_fake
    listed = fake.guild_id + 1_000_000  # some other server: the stand-in's own is not listed
    async with running_bot(tmp_path, fake, wavespeed_url=wavespeed.base_url, extra=access(listed)) as running:
        for name, options in [("video", PROMPT), ("video", PROMPT), ("quota", {})]:
            assert await reply_of(fake, await fake.invoke(name, options)) == NOT_ENABLED
        # An autocomplete cannot carry a message: it gets no choices (the command is refused when sent).
        assert await fake.autocomplete("video", "camera", "pan", options=PROMPT) == []
        await assert_nothing_spent(running, wavespeed)
        [warning] = warnings(caplog, REFUSING)  # four interactions, one line
        assert str(fake.guild_id) in warning

        # Another server adds the bot: refused too, and warned about once, on its own line.
        other = await fake.join_guild()
        for _ in range(2):
            assert await reply_of(fake, await fake.invoke("video", PROMPT, guild_id=other)) == NOT_ENABLED
        assert [str(fake.guild_id) in w for w in warnings(caplog, REFUSING)] == [True, False]
        assert str(other) in warnings(caplog, REFUSING)[1]
        await assert_nothing_spent(running, wavespeed)
        # At READY (which may come after the first commands): named once, at INFO, and not left.
        await fake.wait_until(lambda: logged(caplog, f"where every command is refused: {fake.guild_id} ("))
        assert fake.left_guilds == [] and not warnings(caplog, OPEN_TO_ALL)


async def test_a_listed_server_is_served_and_buttons_follow_the_same_policy(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    fake = discord_fake
    async with running_bot(tmp_path, fake, wavespeed_url=wavespeed.base_url, extra=access(fake.guild_id)) as running:
        await fake.wait_until(lambda: logged(caplog, "logged in as"))
        assert "accepted" in await reply_of(fake, await fake.invoke("video", PROMPT))
        # A server that has the commands (an applications.commands-only install) but is not listed.
        assert await reply_of(fake, await fake.invoke("video", PROMPT, guild_id=42)) == NOT_ENABLED
        # The refusal is private: in the member's language.
        zh = await reply_of(fake, await fake.invoke("video", PROMPT, guild_id=42, locale="zh-CN"))
        assert zh == "此机器人未在本服务器启用。"
        await fake.wait_until(lambda: len(finished(fake)) == 1)
        await running.wait_jobs_done()
        # The server is delisted (a restart with a new config.toml; the gate is swapped here): the card's
        # buttons stop too, since a press does not pass the command tree.
        running.bot.gate.access = Access(frozenset({42}))
        press = await fake.click(finished(fake)[0].id, "hailuo:reroll:1")
        assert await reply_of(fake, press) == NOT_ENABLED
        assert len(await running.app.db.fetchall("SELECT id FROM jobs")) == 1 and len(wavespeed.submits) == 1
        await running.assert_ledger_balanced()
    assert not warnings(caplog, OPEN_TO_ALL)


async def test_leave_unlisted_leaves_servers_at_start_and_when_added(
    tmp_path: Path, discord_fake: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    fake = discord_fake
    away = await fake.join_guild()  # added while the bot was not running: it learns of it at READY
    config = access(fake.guild_id, leave_unlisted=True)
    async with running_bot(tmp_path, fake, extra=config):
        await fake.wait_until(lambda: fake.left_guilds == [away])
        added = await fake.join_guild()
        await fake.wait_until(lambda: fake.left_guilds == [away, added])
        leaves = [r for r in fake.requests if r.method == "DELETE" and r.path.startswith("/users/@me/guilds/")]
        assert [(r.path, r.status) for r in leaves] == [
            (f"/users/@me/guilds/{away}", 204),
            (f"/users/@me/guilds/{added}", 204),
        ]
        assert fake.guild_id in fake.guilds  # the listed server stays
        left = warnings(caplog, "left server")
        assert len(left) == 2 and str(away) in left[0] and str(added) in left[1]
        assert await served(fake)


async def test_dms_are_refused_by_default_and_served_with_allow_dms(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed
) -> None:
    fake = discord_fake
    for run in ("off", "on"):
        (tmp_path / run).mkdir()
    async with running_bot(tmp_path / "off", fake, wavespeed_url=wavespeed.base_url) as running:
        assert [c.get("contexts") for c in fake.commands] == [[0]] * len(fake.commands)
        assert await reply_of(fake, await fake.invoke("quota", dm=True)) == GUILD_ONLY
        zh = await reply_of(fake, await fake.invoke("quota", dm=True, locale="zh-CN"))
        assert zh == "此机器人仅在服务器中可用：请在服务器频道中使用其命令。"
        await assert_nothing_spent(running, wavespeed)

    config = access(allow_dms=True)
    async with running_bot(tmp_path / "on", fake, wavespeed_url=wavespeed.base_url, extra=config) as running:
        # Registered for DMs with the bot too (1 = BOT_DM); never group DMs (2 needs a user install).
        assert fake.commands and all(c.get("contexts") == [0, 1] for c in fake.commands)
        assert await served(fake, dm=True)
        assert "accepted" in await reply_of(fake, await fake.invoke("video", PROMPT, dm=True))
        await fake.wait_until(lambda: len(finished(fake)) == 1)
        await running.assert_ledger_balanced()


@pytest.mark.parametrize("listed", [False, True])
async def test_start_up_says_who_the_bot_is_how_to_invite_it_and_whether_it_serves_everyone(
    tmp_path: Path, discord_fake: FakeDiscord, caplog: pytest.LogCaptureFixture, listed: bool
) -> None:
    caplog.set_level(logging.INFO)
    fake = discord_fake
    extra = access(fake.guild_id) if listed else ""
    async with running_bot(tmp_path, fake, extra=extra):
        await fake.wait_until(lambda: logged(caplog, "logged in as"))
    [line] = [r.getMessage() for r in caplog.records if "logged in as" in r.getMessage()]
    head, url = line.split("; invite: ")
    assert head == f"logged in as TestBot ({fake.bot_user_id}) in 1 server"
    assert url.startswith("https://discord.com/oauth2/authorize?client_id=")
    assert "&scope=bot+applications.commands&" in url
    query = parse_qs(urlsplit(url).query)
    assert query["client_id"] == [str(fake.application_id)]
    assert query["scope"] == ["bot applications.commands"]
    assert query["permissions"] == [str(INVITE_PERMISSIONS.value)]
    assert warnings(caplog, OPEN_TO_ALL) == ([] if listed else [OPEN_TO_ALL])


async def test_leave_unlisted_without_a_server_list_leaves_nothing_and_says_so(
    tmp_path: Path, discord_fake: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    fake = discord_fake
    async with running_bot(tmp_path, fake, extra=access(leave_unlisted=True)):
        await fake.wait_until(lambda: logged(caplog, "logged in as"))
        await fake.join_guild()
        await fake.wait_until(lambda: logged(caplog, "added to server"))
        assert warnings(caplog, "access.leave_unlisted has no effect") and fake.left_guilds == []
        assert await served(fake)
