"""The operator's endpoint on the real bot: /healthz follows start-up and the gateway, /metrics tells one
/video job's story (reserved, created, polled, noticed, delivered, settled) and Discord's REST traffic.

Every wait is for a state the endpoint shows, polled with a generous overall timeout, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from app import App
from tests.e2e.harness import free_port, running_bot
from tests.e2e.test_generation_flows import finished
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.wavespeed_server import FakeWaveSpeed
from tests.leaks import echoes

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, await response.text()


async def healthz(port: int) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/healthz") as response:
        return response.status, await response.json()


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, series), v in samples.items() if n == name and wanted <= series)


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30) -> None:
    """Ask `check` until the state it looks for holds (the endpoint has no way to push a change)."""
    try:
        async with asyncio.timeout(timeout):
            while not await check():  # noqa: ASYNC110 - polling another process's HTTP endpoint
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"never saw: {what}") from None


async def test_healthz_follows_start_up_and_metrics_tell_a_jobs_story(
    tmp_path: Path, discord_fake: FakeDiscord
) -> None:
    port = free_port()
    before: list[tuple[int, dict[str, object]]] = []

    async def before_gateway(app: App) -> None:
        assert app.ops is not None and app.ops.port == port
        before.append(await healthz(port))

    async with (
        FakeWaveSpeed(duration_s=1.0) as wavespeed,
        running_bot(
            tmp_path,
            discord_fake,
            providers={"wavespeed": (wavespeed.base_url, wavespeed.api_key)},
            extra=f"[ops]\nport = {port}\n",
            before_start=before_gateway,
        ) as bot,
    ):
        # Before the client connected: the database is open, the gateway is what is missing.
        [(status, body)] = before
        assert status == 503 and body == {"status": "not ready", "missing": {"gateway": "not connected yet"}}

        async def ready() -> bool:
            return (await healthz(port))[0] == 200

        await until(ready, "/healthz 200 once the gateway is ready")
        assert (await healthz(port))[1] == {"status": "ready", "database": "ok", "gateway": "ok"}

        # One of the card's edits is rate limited (discord.py waits and sends it again).
        discord_fake.inject_error("PATCH", "/webhooks/", 429, 0, "You are being rate limited.")
        await discord_fake.invoke("video", {"prompt": "a lighthouse in a storm"})
        await discord_fake.wait_until(lambda: len(finished(discord_fake)) == 1, timeout=30)
        await bot.assert_ledger_balanced()

        scraped: list[str] = []

        async def delivered() -> bool:
            status, text = await get(port, "/metrics")
            scraped.append(text)
            samples = parse(text)
            return (
                status == 200
                and value(samples, "hailuo_jobs_ended_total", outcome="delivered") == 1
                and value(samples, "hailuo_event_loop_lag_seconds_count") > 0
            )

        await until(delivered, "the job delivered on /metrics")
        text = scraped[-1]
        samples = parse(text)
        # The job: reserved, nothing left in any state, charged its price ($0.28), nothing refunded.
        assert value(samples, "hailuo_reservations_total") == 1
        assert value(samples, "hailuo_reserved_microdollars_total") == 280_000
        assert value(samples, "hailuo_charged_microdollars_total") == 280_000
        assert value(samples, "hailuo_refunds_total") == 0
        assert total(samples, "hailuo_jobs") == 0
        assert value(samples, "hailuo_jobs", state="running") == 0  # every state is listed, at zero
        # The provider: one create, polls until the end was seen, one download; the notice bounded by a poll.
        ws = {"provider": "wavespeed"}
        assert value(samples, "hailuo_provider_request_duration_seconds_count", **ws, operation="create") == 1
        polls = value(samples, "hailuo_provider_request_duration_seconds_count", **ws, operation="poll")
        assert polls >= 2 and value(samples, "hailuo_provider_polls_total", **ws) == polls
        assert value(samples, "hailuo_provider_request_duration_seconds_count", **ws, operation="download") == 1
        assert value(samples, "hailuo_notice_delay_seconds_count", **ws, basis="poll") == 1
        assert total(samples, "hailuo_provider_errors_total") == 0
        # Discord: the interaction's answer and the card's edits, by route with ids and tokens masked.
        assert total(samples, "hailuo_discord_requests_total", route="/interactions/{id}/{token}/callback") >= 1
        assert total(samples, "hailuo_discord_requests_total", route="/webhooks/{id}/{token}/messages/@original") >= 1
        assert total(samples, "hailuo_discord_requests_total", method="POST") >= 2
        assert total(samples, "hailuo_discord_requests_total", method="PATCH", status="429") == 1
        limited = {"method": "PATCH", "route": "/webhooks/{id}/{token}/messages/@original", "scope": "user"}
        assert value(samples, "hailuo_discord_rate_limits_total", **limited) == 1
        for interaction in discord_fake.interactions.values():
            assert echoes(text, interaction.token) == []
        assert value(samples, "hailuo_event_loop_lag_seconds_count") > 0

        # The gateway goes away (Discord is unreachable): /healthz says so while the bot tries again.
        await discord_fake.stop()

        async def gateway_lost() -> bool:
            status, body = await healthz(port)
            return status == 503 and body.get("missing") == {"gateway": "disconnected; reconnecting"}

        await until(gateway_lost, "/healthz 503 after the gateway disconnected")


async def test_a_sharded_bot_is_ready_once_every_shard_is(tmp_path: Path, discord_fake: FakeDiscord) -> None:
    port = free_port()
    extra = f"[ops]\nport = {port}\n"
    async with running_bot(tmp_path, discord_fake, bot_extra="shard_count = 2", extra=extra):
        await discord_fake.wait_shards([0], timeout=30)

        async def ready() -> bool:
            return (await healthz(port))[0] == 200

        # discord.py waits 5 s between the shards' IDENTIFYs: ready only after the second one.
        await until(ready, "/healthz 200 with both shards connected", timeout=60)
        await discord_fake.wait_shards([0, 1], timeout=1)
