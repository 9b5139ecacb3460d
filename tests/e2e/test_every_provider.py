"""End to end: /animate through every provider, Hailuo 02 with an end frame, failover and Cancel."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.e2e.harness import free_port, running_bot, webhooks_config
from tests.e2e.test_generation_flows import cards, finished, jpeg
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.minimax_server import FakeMiniMax
from tests.fakes.seaart_server import FakeSeaArt
from tests.fakes.toapis_server import FakeToApis
from tests.fakes.wavespeed_server import FakeWaveSpeed


async def animate_through(tmp_path: Path, fake: FakeDiscord, name: str, url: str, key: str, **options: object) -> None:
    async with running_bot(
        tmp_path, fake, wavespeed_key=None, providers={name: (url, key)}, order=f'["{name}"]'
    ) as bot:
        image = fake.add_attachment(jpeg(640, 480), "first.jpg", "image/jpeg")
        values: dict[str, object] = {"image": image, "prompt": "the cat looks up [Tilt up]", **options}
        if "end_image" in values:
            values["end_image"] = fake.add_attachment(jpeg(640, 480), "last.png", "image/png")
        await fake.invoke("animate", values)
        await fake.wait_until(lambda: len(finished(fake)) == 1, timeout=30)
        card = finished(fake)[0]
        assert card.embeds[0]["title"] == "Done · job #1", card.embeds[0]
        assert card.attachments[0]["data"][4:8] == b"ftyp"
        await bot.wait_jobs_done()
        job = await bot.app.store.get(1)
        assert job is not None and job.provider == name and job.status == "delivered"
        await bot.assert_ledger_balanced()


async def test_animate_through_seaart(tmp_path: Path, discord_fake: FakeDiscord) -> None:
    async with FakeSeaArt(duration_s=0.3) as seaart:
        await animate_through(tmp_path, discord_fake, "seaart", seaart.base_url, seaart.api_key)
        [(endpoint, body)] = seaart.submits
        assert endpoint == "minimax_hailuo_23_i2v"
        assert isinstance(body, dict) and body["prompt"] == "the cat looks up [上摇]"


async def test_animate_through_minimax_with_hailuo_02_and_an_end_frame(
    tmp_path: Path, discord_fake: FakeDiscord
) -> None:
    async with FakeMiniMax(duration_s=0.3) as minimax:
        await animate_through(
            tmp_path, discord_fake, "minimax", minimax.base_url, minimax.api_key, model="hailuo-02", end_image=True
        )
        [submit] = minimax.submits
        body = submit["json"]
        assert body["model"] == "MiniMax-Hailuo-02"
        assert str(body["first_frame_image"]).startswith("data:image/jpeg")
        assert str(body["last_frame_image"]).startswith("data:image/")


async def test_animate_through_toapis(tmp_path: Path, discord_fake: FakeDiscord) -> None:
    async with FakeToApis(duration_s=0.3) as toapis:
        await animate_through(tmp_path, discord_fake, "toapis", toapis.base_url, toapis.api_key, quality="fast")
        [submit] = toapis.submits
        assert submit["model"] == "MiniMax-Hailuo-2.3-Fast"
        assert len(toapis.uploads) == 1 and submit["image_urls"][0].startswith(toapis.base_url)


async def test_wavespeed_outage_fails_over_to_seaart(tmp_path: Path, discord_fake: FakeDiscord) -> None:
    async with FakeWaveSpeed(duration_s=0.3) as wavespeed, FakeSeaArt(duration_s=0.3) as seaart:
        wavespeed.fail_next_submit(503, "maintenance")
        providers = {"wavespeed": (wavespeed.base_url, wavespeed.api_key), "seaart": (seaart.base_url, seaart.api_key)}
        order = '["wavespeed", "seaart"]'
        async with running_bot(tmp_path, discord_fake, providers=providers, order=order) as bot:
            await discord_fake.invoke("video", {"prompt": "a lighthouse"})
            await discord_fake.wait_until(lambda: len(finished(discord_fake)) == 1, timeout=30)
            await bot.wait_jobs_done()
            job = await bot.app.store.get(1)
            assert job is not None and job.provider == "seaart" and job.status == "delivered"
            assert len(wavespeed.submits) == 1 and len(seaart.submits) == 1
            assert "seaart" in finished(discord_fake)[0].embeds[0]["footer"]["text"]
            await bot.assert_ledger_balanced()


async def test_cancel_button_on_seaart_refunds_once_the_provider_confirms(
    tmp_path: Path, discord_fake: FakeDiscord
) -> None:
    async with FakeSeaArt(duration_s=5) as seaart:
        providers = {"seaart": (seaart.base_url, seaart.api_key)}
        async with running_bot(
            tmp_path, discord_fake, wavespeed_key=None, providers=providers, order='["seaart"]'
        ) as bot:
            await discord_fake.invoke("video", {"prompt": "a slow tide"})
            # The task exists and the bot has its id (the stand-in has the submit a moment before the bot has
            # the answer: a Cancel then would find the submit in flight).
            await bot.wait_for_job(1, lambda job: job.provider_task_id is not None)
            await discord_fake.wait_until(lambda: any("hailuo:cancel:1" in m.custom_ids() for m in cards(discord_fake)))
            [card] = cards(discord_fake)
            stranger = await discord_fake.click(card.id, "hailuo:cancel:1", user_id=2002, permissions=0)
            await stranger.wait_acked()
            assert "Only the person who asked" in stranger.original().content
            click = await discord_fake.click(card.id, "hailuo:cancel:1")
            await discord_fake.wait_until(lambda: click.original() is not None and bool(click.original().content))
            assert "Cancel requested" in click.original().content
            await discord_fake.wait_until(lambda: cards(discord_fake)[0].embeds[0]["title"].startswith("Cancelled"))
            # A cancelled card offers Retry, Remix and Delete (no Cancel any more).
            assert cards(discord_fake)[0].custom_ids() == ["hailuo:retry:1", "hailuo:remix:1", "hailuo:delete:1"]
            await bot.wait_jobs_done()
            assert len(seaart.cancel_requests) == 1
            totals = await bot.app.store.ledger_totals()
            assert (totals.refunded, totals.settled) == (280_000, 0)
            await bot.assert_ledger_balanced()


async def test_model_option_offers_only_served_models(tmp_path: Path, discord_fake: FakeDiscord) -> None:
    async with FakeSeaArt() as seaart:  # SeaArt serves Hailuo 2.3 only, and no end frames
        providers = {"seaart": (seaart.base_url, seaart.api_key)}
        async with running_bot(tmp_path, discord_fake, wavespeed_key=None, providers=providers, order='["seaart"]'):
            animate = next(c for c in discord_fake.commands if c["name"] == "animate")
            names = {option["name"] for option in animate["options"]}
            assert "image" in names and "model" not in names and "end_image" not in names
    async with FakeMiniMax() as minimax:
        providers = {"minimax": (minimax.base_url, minimax.api_key)}
        async with running_bot(tmp_path, discord_fake, wavespeed_key=None, providers=providers, order='["minimax"]'):
            animate = next(c for c in discord_fake.commands if c["name"] == "animate")
            options = {option["name"]: option for option in animate["options"]}
            assert [c["value"] for c in options["model"]["choices"]] == ["hailuo-2.3", "hailuo-02"]
            assert options["end_image"]["type"] == 11


async def test_a_signed_webhook_wakes_the_job_and_a_forged_one_is_refused(
    tmp_path: Path, discord_fake: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port = free_port()
    webhooks = webhooks_config(port)
    async with FakeWaveSpeed(duration_s=1.0) as wavespeed:
        providers = {"wavespeed": (wavespeed.base_url, wavespeed.api_key)}
        async with running_bot(tmp_path, discord_fake, providers=providers, extra=webhooks) as bot:
            await discord_fake.invoke("video", {"prompt": "a kite over the sea"})
            await discord_fake.wait_until(lambda: len(finished(discord_fake)) == 1, timeout=30)
            [delivery] = wavespeed.webhook_deliveries
            assert delivery.status == 200 and delivery.url.startswith(f"http://127.0.0.1:{port}/webhooks/wavespeed/")
            [submit] = wavespeed.submits
            assert submit["query"]["webhook"] == delivery.url
            assert "job 1: woken by a webhook from wavespeed" in caplog.text
            forged = await wavespeed.send_webhook(delivery.task_id, bad_signature=True)
            stale = await wavespeed.send_webhook(delivery.task_id, stale=True)
            assert (forged.status, stale.status) == (401, 401)
            await bot.assert_ledger_balanced()


async def test_a_provider_down_at_start_with_callbacks_on_keeps_nobody_from_working(
    tmp_path: Path, discord_fake: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    webhooks = webhooks_config(free_port())
    down = f"http://127.0.0.1:{free_port()}"  # WaveSpeed is unreachable: its signing secret cannot be fetched
    async with FakeSeaArt(duration_s=0.3) as seaart:
        providers = {"wavespeed": (down, "ws-test-key"), "seaart": (seaart.base_url, seaart.api_key)}
        async with running_bot(
            tmp_path, discord_fake, providers=providers, order='["wavespeed", "seaart"]', extra=webhooks
        ) as bot:
            assert "wavespeed webhooks not ready" in caplog.text
            assert bot.app.receiver is not None and not bot.app.receiver.ready("wavespeed")
            await discord_fake.invoke("video", {"prompt": "a kite over the sea"})
            await discord_fake.wait_until(lambda: len(finished(discord_fake)) == 1, timeout=30)
            await bot.wait_jobs_done()
            job = await bot.app.store.get(1)
            assert job is not None and (job.status, job.provider) == ("delivered", "seaart")  # failed over
            await bot.assert_ledger_balanced()
