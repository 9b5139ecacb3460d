"""Carrying jobs on after a restart: from every state, nothing lost, submitted, posted or charged twice."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from core.clock import iso, utcnow
from core.jobs import JobRecord, JobStatus
from core.spec import GenerationSpec
from providers.wavespeed import WaveSpeedProvider
from services.inputs import InputImages
from services.intake import Requester
from services.polling import PollPolicy
from services.progress import JobCard
from services.run import Crew, JobSettings
from services.runner import JobRunner
from tests.builders import Services, built_services
from tests.fakes.wavespeed_server import FakeWaveSpeed
from tests.test_job_service import PRICES, RecordingReporter

SPEC = GenerationSpec(mode="t2v", quality="standard", duration=6, prompt="a cat")


@pytest.fixture
async def wavespeed() -> AsyncIterator[FakeWaveSpeed]:
    async with FakeWaveSpeed(duration_s=0.3) as fake:
        yield fake


@pytest.fixture
async def service(tmp_path: Path, wavespeed: FakeWaveSpeed) -> AsyncIterator[Services]:
    provider = WaveSpeedProvider("ws-test-key", wavespeed.base_url, timeout=2)
    policy = PollPolicy(dense=0.05, sparse_cap=0.2, error_first=0.05, error_ceiling=0.3)
    async with built_services(tmp_path, {"wavespeed": provider}, PRICES, edit_interval=0, poll_policy=policy) as built:
        yield built


async def crashed_at(service: Services, status: str, **columns: object) -> JobRecord:
    """A job as a crash would leave it: reserved, then moved to `status` with its columns."""
    job = await service.jobs.create(SPEC, Requester(1, 10, 20), command="video")
    if status != "reserved":
        await service.store.set_status(job.id, JobStatus(status), "simulated crash", **columns)  # type: ignore[arg-type]
    stored = await service.store.get(job.id)
    assert stored is not None
    return stored


async def resume_all(service: Services, reporter: RecordingReporter) -> JobRecord:
    assert await service.runner.resume(lambda job: reporter, "The bot restarted.") == 1
    await service.runner.wait_idle()
    [job] = [j for j in [await service.store.get(1)] if j is not None]
    assert job.terminal
    totals = await service.store.ledger_totals(job.id)
    assert totals.outstanding == 0
    assert totals.settled == (job.cost_micros if job.status == "delivered" else 0)
    return job


async def test_reserved_but_never_submitted_is_submitted_once(service: Services, wavespeed: FakeWaveSpeed) -> None:
    await crashed_at(service, "reserved")
    reporter = RecordingReporter()
    job = await resume_all(service, reporter)
    assert job.status == "delivered" and len(wavespeed.submits) == 1
    assert reporter.cards[0].notice == "The bot restarted."


async def test_interrupted_submit_is_refunded_and_never_resent(service: Services, wavespeed: FakeWaveSpeed) -> None:
    await crashed_at(service, "submitting")
    job = await resume_all(service, RecordingReporter())
    assert (job.status, job.error_kind) == ("failed", "unavailable")
    assert wavespeed.submits == []


async def test_submitted_job_is_polled_again_by_its_task_id(service: Services, wavespeed: FakeWaveSpeed) -> None:
    provider = service.router.providers["wavespeed"]
    task_id = await provider.submit(SPEC)  # the provider has the task; the bot died right after
    await crashed_at(service, "running", provider_task_id=task_id, submitted_at=iso(utcnow()))
    job = await resume_all(service, RecordingReporter())
    assert job.status == "delivered" and len(wavespeed.submits) == 1
    assert wavespeed.poll_count(task_id) >= 1


async def test_finished_but_undelivered_job_is_delivered(service: Services, wavespeed: FakeWaveSpeed) -> None:
    provider = service.router.providers["wavespeed"]
    task_id = await provider.submit(SPEC)
    url = wavespeed.output_url(task_id)
    await crashed_at(service, "downloading", provider_task_id=task_id, output_url=url, submitted_at=iso(utcnow()))
    reporter = RecordingReporter()
    job = await resume_all(service, reporter)
    assert job.status == "delivered" and len(reporter.delivered) == 1


async def test_posted_but_unsettled_job_is_settled_without_posting_again(service: Services) -> None:
    await crashed_at(service, "posting", output_url="http://127.0.0.1:9/x.mp4", submitted_at=iso(utcnow()))
    reporter = RecordingReporter()
    reporter.delivered.append((reporter.cards[0] if reporter.cards else None, 1))  # type: ignore[arg-type]
    job = await resume_all(service, reporter)
    assert job.status == "delivered"
    assert len(reporter.delivered) == 1, "the clip was already in the channel: not posted twice"


async def test_leftover_temporary_files_are_swept(service: Services) -> None:
    leftover = service.crew.settings.tmp_dir / "job-9-output.mp4"
    leftover.write_bytes(b"partial")
    assert service.runner.sweep_tmp(older_than=3600) == 0 and leftover.exists()
    assert service.runner.sweep_tmp(older_than=0) == 1 and not leftover.exists()


def test_processes_sharing_a_data_directory_keep_their_temporary_files_apart(tmp_path: Path) -> None:
    """With workers, each process writes in its own folder; a sweep takes only what is older than any running
    job's file, from every process's folder, and the folders it emptied (never its own)."""
    here = JobSettings(data_dir=tmp_path, process_tag="host-a-1")
    assert here.tmp_dir == tmp_path / "tmp" / "host-a-1" and JobSettings(data_dir=tmp_path).tmp_dir == tmp_path / "tmp"
    runner = JobRunner(Crew(cast(Any, None), cast(Any, None), cast(Any, None), here), InputImages(tmp_path / "in"))
    dead, alive = tmp_path / "tmp" / "host-b-7", tmp_path / "tmp" / "host-c-9"
    for folder in (dead, alive):
        folder.mkdir(parents=True)
    old, fresh = time.time() - 7200, time.time()
    for path, stamp in ((dead / "job-1.mp4", old), (alive / "job-2.mp4", fresh), (here.tmp_dir / "job-3.mp4", old)):
        path.write_bytes(b"partial")
        os.utime(path, (stamp, stamp))
    os.utime(dead, (old, old))
    assert runner.sweep_tmp(older_than=3600) == 2
    assert not dead.exists(), "a dead process's folder goes once empty"
    assert (alive / "job-2.mp4").exists(), "a running process's file stays"
    assert here.tmp_dir.is_dir()


class OutageReporter(RecordingReporter):
    """Discord is down: no card can be edited (as when the bot is killed right after a refund)."""

    async def show(self, card: JobCard) -> None:
        raise ConnectionError("discord is down")


async def test_a_failure_card_that_never_landed_is_shown_at_the_next_start(
    service: Services, wavespeed: FakeWaveSpeed
) -> None:
    wavespeed.next_scenario(outcome="failed")
    job = await service.jobs.create(SPEC, Requester(1, 10, 20), command="video")
    ended = await service.runner.run(job, OutageReporter())
    assert ended is not None and ended.status == "failed"
    assert [j.id for j in await service.store.unannounced(since=utcnow() - timedelta(hours=1))] == [job.id]

    reporter = RecordingReporter()
    assert await service.runner.resume(lambda job: reporter, "The bot restarted.") == 0  # nothing left to run
    await service.runner.wait_idle()
    [card] = reporter.cards
    assert card.job_id == job.id and card.stage == "failed" and "not charged" in card.message
    assert await service.store.unannounced(since=utcnow() - timedelta(hours=1)) == []

    await service.runner.resume(lambda job: reporter, "The bot restarted.")  # shown once, not at every start
    await service.runner.wait_idle()
    assert len(reporter.cards) == 1


async def test_jobs_whose_end_was_shown_are_not_announced_again(service: Services) -> None:
    job = await service.jobs.create(SPEC, Requester(1, 10, 20), command="video")
    assert (await service.runner.run(job, RecordingReporter())).status == "delivered"  # type: ignore[union-attr]
    assert await service.store.unannounced(since=utcnow() - timedelta(hours=1)) == []
