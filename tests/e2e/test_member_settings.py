"""/settings end to end: a member's defaults reach the provider when /video leaves an option out, an explicit
option wins, the card says which defaults applied, and a default this server cannot serve falls back with a
private note (the job is still made). Waits for states, never for time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.harness import BotUnderTest, running_bot
from tests.e2e.test_generation_flows import cards, finished
from tests.fakes.discord_server import LOADING, FakeDiscord, FakeInteraction
from tests.fakes.seaart_server import FakeSeaArt
from tests.fakes.wavespeed_server import FakeWaveSpeed


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[tuple[BotUnderTest, FakeWaveSpeed]]:
    async with FakeWaveSpeed("ws-test-key", duration_s=0.2) as wavespeed:
        fake = FakeDiscord()
        await fake.start()
        try:
            async with running_bot(tmp_path, fake, wavespeed_url=wavespeed.base_url, daily_usd="5.00") as running:
                yield running, wavespeed
                await running.assert_ledger_balanced()
        finally:
            await fake.stop()


def reply(interaction: FakeInteraction) -> str:
    message = interaction.original()
    return message.content if message is not None and not message.flags & LOADING else ""


async def settings(fake: FakeDiscord, options: dict[str, object] | None = None, **kwargs: object) -> str:
    interaction = await fake.invoke("settings", options or {}, **kwargs)  # type: ignore[arg-type]
    await fake.wait_until(lambda: bool(reply(interaction)))
    message = interaction.original()
    assert message is not None and message.ephemeral and message.allowed_mentions == {"parse": []}
    return message.content


async def video(fake: FakeDiscord, options: dict[str, object]) -> tuple[str, dict[str, object]]:
    """Run /video to its finished card; the private receipt and the card's embed."""
    done = len(finished(fake))
    interaction = await fake.invoke("video", {"prompt": "a lighthouse in a storm", **options})
    await fake.wait_until(lambda: len(finished(fake)) == done + 1)
    await fake.wait_until(lambda: "accepted" in reply(interaction))
    return reply(interaction), finished(fake)[-1].embeds[0]


def field(embed: dict[str, object], name: str) -> str | None:
    fields = embed.get("fields") or []
    assert isinstance(fields, list)
    return next((f["value"] for f in fields if f["name"] == name), None)


async def test_defaults_reach_the_provider_and_show_on_the_card(bot: tuple[BotUnderTest, FakeWaveSpeed]) -> None:
    running, wavespeed = bot
    fake = running.discord
    text = await settings(fake, {"model": "hailuo-02", "duration": 10, "optimize_prompt": False, "notify": "dm"})
    assert "Saved" in text and "**Hailuo 02**" in text and "**10 s**" in text and "notify: **dm**" in text

    receipt, embed = await video(fake, {})
    submit = wavespeed.submits[-1]
    assert submit["endpoint"] == "minimax/hailuo-02/t2v-standard"
    body = submit["json"]
    assert isinstance(body, dict) and body["duration"] == 10 and body["enable_prompt_expansion"] is False
    assert field(embed, "Your defaults") == "model Hailuo 02, duration 10 s, optimize_prompt off"
    assert "Your default" not in receipt  # nothing fell back

    # An explicit option always wins; the others still come from the defaults.
    _, embed = await video(fake, {"duration": 6, "optimize_prompt": True})
    body = wavespeed.submits[-1]["json"]
    assert isinstance(body, dict) and body["duration"] == 6 and body["enable_prompt_expansion"] is True
    assert wavespeed.submits[-1]["endpoint"] == "minimax/hailuo-02/t2v-standard"
    assert field(embed, "Your defaults") == "model Hailuo 02"

    # Everything explicit: no default applied, and the card says nothing about them.
    _, embed = await video(fake, {"model": "hailuo-2.3", "duration": 6, "optimize_prompt": True})
    assert wavespeed.submits[-1]["endpoint"] == "minimax/hailuo-2.3/t2v-standard"
    assert field(embed, "Your defaults") is None


async def test_a_default_that_cannot_be_served_falls_back_with_a_note(bot: tuple[BotUnderTest, FakeWaveSpeed]) -> None:
    running, wavespeed = bot
    fake = running.discord
    await settings(fake, {"quality": "fast", "duration": 10})
    receipt, embed = await video(fake, {})  # fast is for /animate: standard, and 10 s fits standard
    assert "Your default quality `fast` is for /animate only; used `standard`." in receipt
    assert wavespeed.submits[-1]["endpoint"] == "minimax/hailuo-2.3/t2v-standard"
    assert field(embed, "Your defaults") == "duration 10 s"

    await settings(fake, {"quality": "pro"})
    receipt, embed = await video(fake, {})  # pro is 1080P: 6 s only, so the 10 s default falls back
    assert "Your default duration `10 s` is not made at `pro` quality (1080P); used `6 s`." in receipt
    assert wavespeed.submits[-1]["endpoint"] == "minimax/hailuo-2.3/t2v-pro"
    assert field(embed, "Your defaults") == "quality pro"
    assert len(cards(fake)) == 2 and all(c.embeds[0]["title"].startswith("Done") for c in finished(fake))


async def test_settings_shows_and_resets_the_defaults(bot: tuple[BotUnderTest, FakeWaveSpeed]) -> None:
    running, _ = bot
    fake = running.discord
    shown = await settings(fake)
    assert shown.startswith("Your defaults:") and "quality: not set (built-in: standard)" in shown
    await settings(fake, {"quality": "pro", "model": "hailuo-02", "notify": "channel"})
    shown = await settings(fake)
    assert "quality: **pro**" in shown and "model: **Hailuo 02**" in shown and "notify: **channel**" in shown
    assert "quality: not set" not in await settings(fake, user_id=1001)
    assert "quality: not set" in await settings(fake, user_id=2002)  # per member

    cleared = await settings(fake, {"reset": "quality"})
    assert cleared.startswith("Cleared.") and "quality: not set" in cleared and "model: **Hailuo 02**" in cleared
    cleared = await settings(fake, {"reset": "all", "duration": 10})  # reset first, then set
    assert "model: not set" in cleared and "notify: not set" in cleared and "duration: **10 s**" in cleared
    await settings(fake, {"reset": "all"})
    assert await running.app.db.fetchall("SELECT user_id FROM member_defaults") == []


async def test_a_default_model_the_servers_providers_do_not_make_falls_back(tmp_path: Path) -> None:
    fake = FakeDiscord()
    await fake.start()
    try:
        async with FakeWaveSpeed(duration_s=0.2) as wavespeed, FakeSeaArt(duration_s=0.2) as seaart:
            providers = {
                "wavespeed": (wavespeed.base_url, wavespeed.api_key),
                "seaart": (seaart.base_url, seaart.api_key),
            }
            pin = f'[guilds."{fake.guild_id}"]\nproviders = ["seaart"]\n'  # SeaArt makes Hailuo 2.3 only
            async with running_bot(
                tmp_path, fake, providers=providers, order='["wavespeed", "seaart"]', extra=pin
            ) as running:
                await settings(fake, {"model": "hailuo-02"})  # offered: WaveSpeed makes it, elsewhere
                receipt, embed = await video(fake, {})
                assert "Your default model `Hailuo 02` is not offered here; used `Hailuo 2.3`." in receipt
                assert wavespeed.submits == [] and len(seaart.submits) == 1
                assert field(embed, "Your defaults") is None
                job = await running.wait_for_job(1, lambda j: j.terminal)  # the card shows before the status
                assert job.model == "hailuo-2.3" and job.status == "delivered"
                await running.assert_ledger_balanced()
    finally:
        await fake.stop()
