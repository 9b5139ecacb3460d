"""What workers share with the gateways beyond the hand-over, end to end on PostgreSQL with real discord.py:
a Cancel for a job still waiting for a worker, a Cancel whose gateway stopped halfway, and a provider's
callback received by the gateway waking the job on the worker."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from engine.queue import JobQueue
from tests.e2e.harness import BotUnderTest, free_port, running_bot, webhooks_config
from tests.e2e.test_generation_flows import cards, finished
from tests.e2e.test_workers import WORKERS, worker_beside
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.wavespeed_server import FakeWaveSpeed


async def task_status(queue: JobQueue, job_id: int) -> str | None:
    rows = await queue.app.connector.execute_query_all_async(
        "SELECT status FROM procrastinate_jobs WHERE lock = %(lock)s", lock=f"job-{job_id}"
    )
    return rows[0]["status"] if rows else None


async def wait_task(queue: JobQueue, job_id: int, status: str) -> None:
    async with asyncio.timeout(30):
        while True:
            if await task_status(queue, job_id) == status:
                return
            await asyncio.sleep(0.05)


def cancelled_card(fake: FakeDiscord, job_id: int) -> bool:
    titles = [m.embeds[0]["title"] for m in cards(fake)]
    return any(title.startswith("Cancelled") and f"#{job_id}" in title for title in titles)


async def queued_video(fake: FakeDiscord, gateway: BotUnderTest) -> JobQueue:
    """A /video reserved and waiting in the engine's queue, with no worker to take it."""
    queue = gateway.app.queue
    assert queue is not None
    command = await fake.invoke("video", {"prompt": "a paper boat on a river"})
    await command.wait_acked()
    await wait_task(queue, 1, "todo")
    return queue


async def test_cancel_of_a_job_waiting_for_a_worker_withdraws_and_refunds_it(
    tmp_path: Path, discord_fake: FakeDiscord, pg_url: str
) -> None:
    fake = discord_fake
    async with FakeWaveSpeed(duration_s=0.3) as wavespeed:
        options = {"wavespeed_url": wavespeed.base_url, "secrets": {"database_url": pg_url}, "extra": WORKERS}
        async with running_bot(tmp_path, fake, **options) as gateway:  # type: ignore[arg-type]
            queue = await queued_video(fake, gateway)
            await fake.wait_until(lambda: any("hailuo:cancel:1" in m.custom_ids() for m in cards(fake)))
            card = next(m for m in cards(fake) if "hailuo:cancel:1" in m.custom_ids())
            click = await fake.click(card.id, "hailuo:cancel:1")
            await fake.wait_until(lambda: (reply := click.original()) is not None and reply.content != "")
            reply = click.original()
            assert reply is not None and reply.content == "Cancelled before it started. You were not charged."
            job = await gateway.wait_for_job(1, lambda job: job.terminal)
            assert job.status == "cancelled"
            assert await task_status(queue, 1) == "cancelled", "no worker will take it"
            await fake.wait_until(lambda: cancelled_card(fake, 1))
            await gateway.assert_ledger_balanced()
            assert (await gateway.app.store.ledger_totals()).settled == 0
            assert wavespeed.submits == []


async def test_a_withdrawn_job_whose_gateway_stopped_before_the_refund_is_ended_by_a_worker(
    tmp_path: Path, discord_fake: FakeDiscord, pg_url: str
) -> None:
    """The gateway took the task out of the queue and stopped before refunding: a worker's round ends the
    job cancelled and refunded (it never runs it), and shows its card."""
    fake = discord_fake
    async with FakeWaveSpeed(duration_s=0.3) as wavespeed:
        options = {"wavespeed_url": wavespeed.base_url, "secrets": {"database_url": pg_url}, "extra": WORKERS}
        async with running_bot(tmp_path, fake, **options) as gateway:  # type: ignore[arg-type]
            queue = await queued_video(fake, gateway)
            assert await queue.withdraw(1)
            assert not await queue.withdraw(1), "withdrawn once"
            async with worker_beside(gateway):
                job = await gateway.wait_for_job(1, lambda job: job.terminal)
                await fake.wait_until(lambda: cancelled_card(fake, 1))
            assert job.status == "cancelled"
            await gateway.assert_ledger_balanced()
            assert wavespeed.submits == []


async def test_a_callback_received_by_the_gateway_wakes_the_job_on_the_worker(
    tmp_path: Path, discord_fake: FakeDiscord, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    fake = discord_fake
    port = free_port()
    async with FakeWaveSpeed(duration_s=1.0) as wavespeed:
        options = {
            "wavespeed_url": wavespeed.base_url,
            "secrets": {"database_url": pg_url},
            "extra": WORKERS + webhooks_config(port),
        }
        async with running_bot(tmp_path, fake, **options) as gateway:  # type: ignore[arg-type]
            assert gateway.app.receiver is not None, "the gateway receives callbacks"
            async with worker_beside(gateway):
                command = await fake.invoke("video", {"prompt": "a kite over the sea"})
                await command.wait_acked()
                await gateway.wait_for_job(1, lambda job: job.status == "delivered", timeout=60)
                await fake.wait_until(lambda: len(finished(fake)) == 1)
            [delivery] = wavespeed.webhook_deliveries
            assert delivery.status == 200 and delivery.url.startswith(f"http://127.0.0.1:{port}/webhooks/wavespeed/")
            [submit] = wavespeed.submits
            assert submit["query"]["webhook"] == delivery.url, "the worker submitted with the gateway's callback URL"
            assert "job 1: woken by a webhook from wavespeed" in caplog.text
            await gateway.assert_ledger_balanced()


async def test_a_worker_speaks_the_servers_language_on_the_card(
    tmp_path: Path, discord_fake: FakeDiscord, pg_url: str
) -> None:
    """A worker has no gateway cache of servers: it asks Discord for the server's language once, and the card
    and the posted clip speak it, mentioning the requester."""
    fake = discord_fake
    fake.guild_locales[fake.guild_id] = "zh-CN"
    async with FakeWaveSpeed(duration_s=0.3) as wavespeed:
        options = {"wavespeed_url": wavespeed.base_url, "secrets": {"database_url": pg_url}, "extra": WORKERS}
        async with running_bot(tmp_path, fake, **options) as gateway:  # type: ignore[arg-type]
            async with worker_beside(gateway):
                for user in (3001, 3002):
                    command = await fake.invoke("video", {"prompt": "a lantern at dusk"}, user_id=user)
                    await command.wait_acked()
                for job_id in (1, 2):
                    await gateway.wait_for_job(job_id, lambda job: job.status == "delivered", timeout=60)
            titles = [m.embeds[0]["title"] for m in fake.messages.values() if m.embeds and not m.ephemeral]
            assert len([title for title in titles if title.startswith("完成")]) == 2, titles
            pings = [m.content for m in fake.messages.values() if m.content.startswith(("<@3001>", "<@3002>"))]
            assert len(pings) == 2 and all("<@" in ping and "#" in ping for ping in pings), pings
            guild = f"/guilds/{fake.guild_id}"
            assert [r.method for r in fake.requests if r.path == guild] == ["GET"], "asked once"
