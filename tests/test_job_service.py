"""The job lifecycle against the WaveSpeedAI stand-in: every way a job can end, and its money."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core.jobs import JobStatus
from core.spec import GenerationSpec
from media import ffmpeg
from providers.wavespeed import WaveSpeedProvider
from services.delivery import post_clip
from services.intake import Requester
from services.polling import PollPolicy
from services.progress import JobCard
from services.reporter import UploadTooLarge
from tests.builders import Services, built_services
from tests.fakes.wavespeed_server import FakeWaveSpeed

PRICES = {"wavespeed": {"hailuo-2.3": {"t2v-standard-6s": 280_000}}}
SPEC = GenerationSpec(mode="t2v", quality="standard", duration=6, prompt="a cat")


class RecordingReporter:
    def __init__(self, upload_limit: int | None = None, refuse_files: bool = False) -> None:
        self.upload_limit = upload_limit
        self.refuse_files = refuse_files
        self.cards: list[JobCard] = []
        self.delivered: list[tuple[JobCard, int | None]] = []

    async def show(self, card: JobCard) -> None:
        self.cards.append(card)

    async def deliver(self, card: JobCard, clip: Path | None) -> None:
        if clip is not None and self.refuse_files:
            raise UploadTooLarge
        self.delivered.append((card, clip.stat().st_size if clip else None))

    async def delivered_before(self, card: JobCard) -> bool:
        return bool(self.delivered)


@pytest.fixture
async def wavespeed() -> AsyncIterator[FakeWaveSpeed]:
    async with FakeWaveSpeed("ws-test-key", duration_s=0.3) as fake:
        yield fake


@contextlib.asynccontextmanager
async def wavespeed_service(tmp_path: Path, fake: FakeWaveSpeed, **options: Any) -> AsyncIterator[Services]:
    provider = WaveSpeedProvider("ws-test-key", fake.base_url, timeout=2)
    settings = {"deadline_seconds": 3, "edit_interval": 0, **options}
    async with built_services(tmp_path, {"wavespeed": provider}, PRICES, **settings) as services:
        yield services


@pytest.fixture
async def service(tmp_path: Path, wavespeed: FakeWaveSpeed) -> AsyncIterator[Services]:
    policy = PollPolicy(dense=0.05, sparse_cap=0.2, error_first=0.05, error_ceiling=0.3)
    async with wavespeed_service(tmp_path, wavespeed, poll_policy=policy) as jobs:
        yield jobs


async def run_one(service: Services, reporter: RecordingReporter) -> tuple[str, str | None]:
    job = await service.jobs.create(SPEC, Requester(1, 10, 20), command="video")
    final = await service.runner.run(job, reporter)
    assert final is not None
    totals = await service.store.ledger_totals(job.id)
    assert totals.outstanding == 0
    assert totals.settled == (job.cost_micros if final.status == "delivered" else 0)
    assert not list(service.crew.settings.tmp_dir.iterdir()), "temporary files must be removed"
    return final.status, final.error_kind


async def test_job_that_never_finishes_is_abandoned_at_its_deadline(
    service: Services, wavespeed: FakeWaveSpeed
) -> None:
    wavespeed.next_scenario(outcome="never")
    reporter = RecordingReporter()
    assert await run_one(service, reporter) == ("failed", "timeout")
    assert "too long" in reporter.cards[-1].message and "not charged" in reporter.cards[-1].message


async def test_5xx_and_429_during_polling_are_ridden_out(service: Services, wavespeed: FakeWaveSpeed) -> None:
    wavespeed.fail_next_polls(3, 503)
    wavespeed.fail_next_polls(2, 429, retry_after=0.1)
    wavespeed.malformed_next_polls(1)
    reporter = RecordingReporter()
    assert await run_one(service, reporter) == ("delivered", None)
    assert len(wavespeed.submits) == 1


async def test_ambiguous_submit_is_refunded_and_never_resubmitted(service: Services, wavespeed: FakeWaveSpeed) -> None:
    wavespeed.drop_next_submit_after_create()
    assert await run_one(service, RecordingReporter()) == ("failed", "unavailable")
    assert len(wavespeed.submits) == 1 and len(wavespeed.tasks) == 1


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [(401, "invalid authentication", "auth"), (402, "Insufficient balance", "balance"), (500, "boom", "unavailable")],
)
async def test_submit_errors_are_refunded_with_their_own_outcome(
    service: Services, wavespeed: FakeWaveSpeed, status: int, message: str, kind: str
) -> None:
    wavespeed.fail_next_submit(status, message)
    reporter = RecordingReporter()
    assert await run_one(service, reporter) == ("failed", kind)
    assert message not in reporter.cards[-1].message  # the provider's words never reach the user


async def test_output_that_404s_is_refunded(service: Services, wavespeed: FakeWaveSpeed) -> None:
    wavespeed.next_scenario(output_status=404)
    assert await run_one(service, RecordingReporter()) == ("failed", "output_invalid")


async def test_output_that_is_not_a_video_is_refunded(service: Services, wavespeed: FakeWaveSpeed) -> None:
    wavespeed.next_scenario(output_bytes=b"<html>not a video</html>" * 100)
    assert await run_one(service, RecordingReporter()) == ("failed", "output_invalid")


async def test_clip_that_cannot_fit_is_delivered_as_a_link(service: Services, wavespeed: FakeWaveSpeed) -> None:
    reporter = RecordingReporter(upload_limit=2_000)  # no real clip fits in 2 kB
    assert await run_one(service, reporter) == ("delivered", None)
    [(card, size)] = reporter.delivered
    assert size is None and card.link is not None and card.link.endswith(".mp4")
    assert "too large to upload" in card.message


async def test_refused_upload_falls_back_to_reencode_then_link(service: Services) -> None:
    reporter = RecordingReporter(upload_limit=10 * 1024 * 1024, refuse_files=True)
    assert await run_one(service, reporter) == ("delivered", None)
    assert reporter.delivered[0][1] is None  # only the link got through
    job = await service.store.get(1)
    assert job is not None and job.delivered_as == "link"


async def test_polls_of_all_jobs_together_keep_to_the_providers_budget(
    tmp_path: Path, wavespeed: FakeWaveSpeed
) -> None:
    eager = PollPolicy(dense=0.05, sparse_cap=0.05)  # each job alone would poll 20 times a second
    async with wavespeed_service(tmp_path, wavespeed, poll_policy=eager, polls_per_second={"wavespeed": 5}) as service:
        jobs = [await service.jobs.create(SPEC, Requester(1 + i, 10, 20), command="video") for i in range(3)]
        finals = await asyncio.gather(*(service.runner.run(job, RecordingReporter()) for job in jobs))
    assert [final.status for final in finals if final] == ["delivered"] * 3
    polls = sorted(r.at for r in wavespeed.requests if r.method == "GET" and r.path.endswith("/result"))
    assert len(polls) >= 4
    assert min(b - a for a, b in itertools.pairwise(polls)) > 0.15  # one every 0.2 s, give or take the socket


async def test_a_reencode_waits_for_a_free_reencode_slot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[Path] = []

    async def fit_nothing(src: Path, dest: Path, max_bytes: int) -> Path | None:
        started.append(src)
        return None

    monkeypatch.setattr(ffmpeg, "fit_to_size", fit_nothing)
    raw = tmp_path / "raw.mp4"
    raw.write_bytes(b"v" * 5_000)
    card = JobCard(1, "done", "a cat", "video", "hailuo-2.3", "standard", "768p", 6, 280_000, "wavespeed", 10)
    reporter, slots = RecordingReporter(upload_limit=2_000), asyncio.Semaphore(1)
    await slots.acquire()  # another clip is being re-encoded
    posting = asyncio.create_task(
        post_clip(1, "wavespeed", raw, tmp_path / "f.mp4", card, "https://cdn.test/o", reporter, reencode_slots=slots)
    )
    await asyncio.sleep(0.1)
    assert started == [] and reporter.delivered == []
    slots.release()
    assert await posting == "link" and started == [raw]


async def test_progress_goes_through_the_stages_in_order(service: Services, wavespeed: FakeWaveSpeed) -> None:
    wavespeed.next_scenario(queued_polls=2, processing_polls=3)
    reporter = RecordingReporter()
    await run_one(service, reporter)
    stages = [card.stage for card in reporter.cards]
    assert stages[0] == "queued"
    assert stages.index("generating") < stages.index("downloading") < stages.index("posting")
    assert reporter.delivered[0][0].stage == "done"


async def test_a_poll_budget_far_behind_cannot_keep_a_job_past_its_deadline(
    tmp_path: Path, wavespeed: FakeWaveSpeed
) -> None:
    # One poll per ~30 years: the pacer's next slot is far beyond the job's deadline.
    wavespeed.next_scenario(outcome="never")
    async with wavespeed_service(tmp_path, wavespeed, deadline_seconds=1, polls_per_second={"wavespeed": 1e-9}) as svc:
        job = await svc.jobs.create(SPEC, Requester(1, 10, 20), command="video")
        final = await asyncio.wait_for(svc.runner.run(job, RecordingReporter()), 30)
        assert final is not None and final.status == "failed" and final.error_kind == "timeout"
        assert (await svc.store.ledger_totals(job.id)).refunded == final.cost_micros


async def test_a_job_that_ended_in_another_process_is_never_submitted(
    service: Services, wavespeed: FakeWaveSpeed
) -> None:
    """Cancelled while it waited for a worker, by a gateway, at the moment a worker took it: the worker's
    runner finds the job ended when it records the submit, and sends nothing."""
    job = await service.jobs.create(SPEC, Requester(1, 10, 20), command="video")
    assert await service.store.finish(job.id, JobStatus.CANCELLED, "refund", "cancelled by another process")
    final = await service.runner.run(job, RecordingReporter())
    assert final is not None and final.status == "cancelled"
    assert wavespeed.submits == []
    assert (await service.store.ledger_totals(job.id)).refunded == job.cost_micros
