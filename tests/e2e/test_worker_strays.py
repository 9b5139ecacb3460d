"""A worker's sweep for stray jobs (unfinished, with no task) leaves alone the jobs a gateway is still
launching. Found by the fault suite's worker mode: a worker starting at that moment took a job its gateway
had just reserved; the gateway could then not post the card and refunded the job, which the worker kept
running (submitted, polled, its status written back over "failed") and the sweep handed over every round."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest

from cogs.launch import JobLauncher
from core.clock import iso, utcnow
from core.jobs import JobRecord, JobStatus
from engine.queue import JobQueue, Strays
from tests.e2e.harness import running_bot
from tests.e2e.test_workers import WORKERS, worker_beside
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.wavespeed_server import FakeWaveSpeed
from worker import LAUNCH_GRACE_SECONDS, launching


async def test_a_job_whose_card_is_being_posted_is_left_to_its_gateway(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway's card post hangs while the worker sweeps twice, then fails: the gateway refunds the job,
    and no worker ever took it."""
    posting, refuse = asyncio.Event(), asyncio.Event()
    rounds: list[list[int]] = []  # the jobs each sweep handed over
    sort_strays = JobQueue.strays

    async def hanging_card(*args: object, **kwargs: object) -> int:
        posting.set()
        await refuse.wait()
        raise RuntimeError("Discord did not take the card")

    async def counted(queue: JobQueue, job_ids: list[int]) -> Strays:
        strays = await sort_strays(queue, job_ids)
        rounds.append(strays.handed_over)
        return strays

    monkeypatch.setattr(JobLauncher, "_post_card", hanging_card)
    monkeypatch.setattr(JobQueue, "strays", counted)
    options = {"wavespeed_url": wavespeed.base_url, "secrets": {"database_url": pg_url}, "extra": WORKERS}
    async with running_bot(tmp_path, discord_fake, **options) as gateway:  # type: ignore[arg-type]
        async with worker_beside(gateway):
            command = await discord_fake.invoke("video", {"prompt": "a lighthouse in a storm"})
            await command.wait_acked()
            await asyncio.wait_for(posting.wait(), 30)
            swept = len(rounds)
            async with asyncio.timeout(30):
                while True:  # two sweeps while the card is being posted (a state: rounds counted)
                    if len(rounds) >= swept + 2:
                        break
                    await asyncio.sleep(0.05)
            refuse.set()
            job = await gateway.wait_for_job(1, lambda job: job.terminal, timeout=30)
        assert not any(1 in handed for handed in rounds), f"a worker took it from its gateway: {rounds}"
        assert job.status == JobStatus.FAILED
        await gateway.assert_ledger_balanced()
    assert wavespeed.submits == [], "never sent to a provider"


def reserved(
    job_id: int, seconds_ago: float, message_id: int | None = None, set_card_id: int | None = None
) -> JobRecord:
    stamp = iso(utcnow() - timedelta(seconds=seconds_ago))
    return JobRecord(
        id=job_id, created_at=stamp, updated_at=stamp, user_id=1, guild_id=1, channel_id=1, message_id=message_id,
        interaction_id=1, command="video", mode="t2v", quality="standard", duration=6, optimize_prompt=False,
        model="hailuo-2.3", prompt="p", input_image=None, provider="wavespeed", provider_task_id=None,
        status=JobStatus.RESERVED, cost_micros=1, output_url=None, output_bytes=None, delivered_as=None,
        error_kind=None, error_detail=None, submitted_at=None, provider_done_at=None, finished_at=None,
        generation_seconds=None, parent_job_id=None, end_image=None, upload_limit=None, set_card_id=set_card_id,
    )  # fmt: skip


def test_which_jobs_are_left_to_their_gateway() -> None:
    now, old = utcnow(), LAUNCH_GRACE_SECONDS + 5
    jobs = [
        reserved(1, 1),  # no card yet: being launched
        reserved(2, 1, message_id=20),  # its card is posted: the hand-over follows at once, or failed
        reserved(3, old),  # no card for longer than any launch: its gateway stopped
        reserved(4, 1, message_id=40, set_card_id=99),  # a variant with its card, whose set-mate has none yet
        reserved(5, 1, set_card_id=99),
        dataclasses.replace(reserved(6, 1), status=JobStatus.RUNNING),  # a worker has it
    ]
    assert launching(jobs, now) == {1, 4, 5}
