"""Workers, end to end on the test session's PostgreSQL with real discord.py: a gateway process with
`workers.separate` reserves a /video and hands it over through the job engine; a worker process (no
gateway connection, REST only) carries it to the posted clip and settles it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.harness import BotUnderTest, free_port, running_bot
from tests.e2e.test_generation_flows import cards, finished
from tests.e2e.test_ops import healthz
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.wavespeed_server import FakeWaveSpeed
from worker import run_worker

ROOT = Path(__file__).resolve().parents[2]
WORKERS = "[workers]\nseparate = true\nheartbeat_seconds = 0.5\nstalled_after_seconds = 2\n"


@contextlib.asynccontextmanager
async def worker_beside(gateway: BotUnderTest, ops_port: int = 0) -> AsyncIterator[asyncio.Task[None]]:
    """A worker in this process, on the gateway's settings (its own app, database pool and runner; its
    own operator's endpoint on `ops_port`, if any)."""
    settings = gateway.app.settings.model_copy(deep=True)
    settings.config.ops.port = ops_port
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop), name="worker")
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_a_gateway_hands_a_video_to_a_worker_which_posts_and_settles_it(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed, pg_url: str
) -> None:
    fake = discord_fake
    options = {"wavespeed_url": wavespeed.base_url, "secrets": {"database_url": pg_url}, "extra": WORKERS}
    async with running_bot(tmp_path, fake, **options) as gateway:  # type: ignore[arg-type]
        assert gateway.app.queue is not None and gateway.app.jobs.hands_over
        interaction = await fake.invoke("video", {"prompt": "a lighthouse in a storm"})
        await interaction.wait_acked()
        await gateway.wait_for_job(1, lambda job: job.status == "reserved")
        assert gateway.app.runner.in_flight == 0, "the gateway runs no job"
        async with worker_beside(gateway):
            await gateway.wait_for_job(1, lambda job: job.status == "delivered", timeout=60)
            await fake.wait_until(lambda: len(finished(fake)) == 1)
        await gateway.assert_ledger_balanced()
        card = finished(fake)[0]
        assert card.embeds[0]["title"] == "Done · job #1"
        assert next(a["filename"] for a in card.attachments).endswith(".mp4")


async def test_a_worker_killed_with_jobs_in_flight_leaves_them_to_another(
    tmp_path: Path, discord_fake: FakeDiscord, pg_url: str
) -> None:
    """SIGKILL a worker process holding three jobs at their provider: the other worker finishes them from
    their stored state. Lost 0, submitted (charged) twice 0, posted twice 0, the ledger balanced."""
    fake = discord_fake
    slow = FakeWaveSpeed("ws-test-key", duration_s=6)  # long enough to be killed mid-job
    await slow.start()
    options = {"wavespeed_url": slow.base_url, "secrets": {"database_url": pg_url}, "extra": WORKERS}
    try:
        async with running_bot(tmp_path, fake, **options) as gateway:  # type: ignore[arg-type]
            for user in (2001, 2002, 2003):
                command = await fake.invoke("video", {"prompt": f"a lantern for {user}"}, user_id=user)
                await command.wait_acked()
            doomed = worker_process(gateway, pg_url)
            try:
                for job_id in (1, 2, 3):
                    await gateway.wait_for_job(job_id, lambda job: job.provider_task_id is not None, timeout=60)
            finally:
                doomed.send_signal(signal.SIGKILL)
                doomed.wait(10)
            assert len(slow.submits) == 3
            in_flight = [await gateway.app.store.get(job_id) for job_id in (1, 2, 3)]
            assert all(job is not None and not job.terminal for job in in_flight), "killed with all three in flight"
            async with worker_beside(gateway):
                for job_id in (1, 2, 3):
                    await gateway.wait_for_job(job_id, lambda job: job.status == "delivered", timeout=90)
                await fake.wait_until(lambda: len(finished(fake)) == 3)
            await gateway.assert_ledger_balanced()
            assert len(slow.submits) == 3, "no job was submitted (charged) twice"
            clips = [m for m in fake.messages.values() if any(a["filename"].endswith(".mp4") for a in m.attachments)]
            assert len(clips) == 3, "no clip was posted twice"
    finally:
        await slow.stop()


def worker_process(gateway: BotUnderTest, database_url: str) -> subprocess.Popen[bytes]:
    """`bot.py worker` in a process of its own, on the gateway's config.toml and the stand-ins."""
    fake = gateway.discord
    env = dict(
        os.environ,
        HAILUO_CONFIG=str(gateway.app.settings.config_path),
        DATABASE_URL=database_url,
        DISCORD_TOKEN=fake.bot_token,
        DISCORD_API_BASE=fake.base_url,
        DISCORD_GATEWAY_URL=fake.gateway_url,
        WAVESPEED_API_KEY="ws-test-key",
    )
    return subprocess.Popen([sys.executable, str(ROOT / "bot.py"), "worker"], env=env, cwd=ROOT)


async def test_cancel_pressed_on_the_gateway_stops_the_job_on_the_worker(
    tmp_path: Path, discord_fake: FakeDiscord, pg_url: str
) -> None:
    """The free preview (which can cancel) runs for a minute on the worker; Cancel pressed on the gateway's
    card reaches that worker, which cancels the task and refunds it."""
    fake = discord_fake
    options = {"secrets": {"database_url": pg_url}, "extra": WORKERS, "preview_min_runtime": 60}
    async with running_bot(tmp_path, fake, wavespeed_key=None, **options) as gateway:  # type: ignore[arg-type]
        command = await fake.invoke("video", {"prompt": "a slow sunrise"})
        await command.wait_acked()
        async with worker_beside(gateway):
            await gateway.wait_for_job(1, lambda job: job.provider_task_id is not None, timeout=60)
            await fake.wait_until(lambda: any("hailuo:cancel:1" in m.custom_ids() for m in cards(fake)))
            card = next(m for m in cards(fake) if "hailuo:cancel:1" in m.custom_ids())
            click = await fake.click(card.id, "hailuo:cancel:1")
            await click.wait_acked()
            await fake.wait_until(lambda: (reply := click.original()) is not None and reply.content != "")
            reply = click.original()
            assert reply is not None and reply.content.startswith("Cancel requested."), reply.content
            job = await gateway.wait_for_job(1, lambda job: job.terminal, timeout=60)
            assert job.status == "cancelled"
        await gateway.assert_ledger_balanced()
        assert (await gateway.app.store.ledger_totals()).settled == 0


async def test_a_job_whose_hand_over_failed_is_found_by_a_running_worker(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database refuses the hand-over for a moment (the job stays reserved with no task); a worker
    already running finds it on its next round and carries it."""
    fake = discord_fake
    options = {"wavespeed_url": wavespeed.base_url, "secrets": {"database_url": pg_url}, "extra": WORKERS}
    async with running_bot(tmp_path, fake, **options) as gateway:  # type: ignore[arg-type]
        queue = gateway.app.queue
        assert queue is not None

        async def refused(job_id: int) -> None:
            raise OSError("the database went away for a moment")

        async with worker_beside(gateway):
            monkeypatch.setattr(queue, "hand_over", refused)
            command = await fake.invoke("video", {"prompt": "a kite over the sea"})
            await command.wait_acked()
            await gateway.wait_for_job(1, lambda job: job.status == "delivered", timeout=60)
        await gateway.assert_ledger_balanced()


async def test_a_worker_is_healthy_once_it_can_reach_discord_without_a_gateway(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed, pg_url: str
) -> None:
    options = {"wavespeed_url": wavespeed.base_url, "secrets": {"database_url": pg_url}, "extra": WORKERS}
    async with running_bot(tmp_path, discord_fake, **options) as gateway:  # type: ignore[arg-type]
        port = free_port()
        async with worker_beside(gateway, ops_port=port):
            answer: list[tuple[int, dict[str, object]]] = []

            async def ready() -> bool:
                try:
                    answer[:] = [await healthz(port)]
                except aiohttp.ClientError:  # not listening yet
                    return False
                return answer[0][0] == 200

            async with asyncio.timeout(30):
                while True:  # a state, not a time: poll until the endpoint says ready
                    if await ready():
                        break
                    await asyncio.sleep(0.05)
            assert answer[0][1]["status"] == "ready"
