"""Choosing providers, failing over without double submits, cool-downs, pins, and Cancel at each stage."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from core.errors import UserError
from core.spec import GenerationSpec
from core.tasks import FailureKind
from providers.preview import PreviewProvider
from providers.seaart import SeaArtProvider
from providers.wavespeed import WaveSpeedProvider
from services.cancelling import CANCEL_FAILED_NOTICE, CancelOutcome
from services.intake import Requester
from services.polling import PollPolicy
from services.routing import ProviderRouter
from tests.builders import Services, built_services
from tests.fakes.seaart_server import FakeSeaArt
from tests.fakes.wavespeed_server import FakeWaveSpeed
from tests.test_job_service import RecordingReporter
from tests.test_storage_faults import holding_the_database

SPEC = GenerationSpec(mode="t2v", quality="standard", duration=6, prompt="a cat")
# Two independent accounts behind the same wire format; "second" is cheaper.
PRICES = {
    "first": {"hailuo-2.3": {"t2v-standard-6s": 490_000}},
    "second": {"hailuo-2.3": {"t2v-standard-6s": 280_000}},
}


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeWaveSpeed, FakeWaveSpeed]]:
    async with FakeWaveSpeed(duration_s=0.2) as first, FakeWaveSpeed(duration_s=0.2) as second:
        yield first, second


@pytest.fixture
async def service(tmp_path: Path, fakes: tuple[FakeWaveSpeed, FakeWaveSpeed]) -> AsyncIterator[Services]:
    providers = {
        "first": WaveSpeedProvider("ws-test-key", fakes[0].base_url, timeout=2),
        "second": WaveSpeedProvider("ws-test-key", fakes[1].base_url, timeout=2),
    }
    policy = PollPolicy(dense=0.05, sparse_cap=0.2, error_first=0.05, error_ceiling=0.3)
    async with built_services(
        tmp_path, providers, PRICES, pins={77: ["second"]}, failure_threshold=2, cooldown_seconds=60,
        edit_interval=0, poll_policy=policy,
    ) as built:  # fmt: skip
        yield built


async def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - polling a plain attribute of another task's state
            await asyncio.sleep(0.02)


async def run_job(service: Services, guild_id: int | None = 10) -> tuple[str, str, int]:
    job = await service.jobs.create(SPEC, Requester(1, guild_id, 20), command="video")
    final = await service.runner.run(job, RecordingReporter())
    assert final is not None
    totals = await service.store.ledger_totals(job.id)
    assert totals.outstanding == 0
    return final.status, final.provider, totals.settled


async def test_reservation_covers_the_dearest_candidate_and_settles_at_the_actual_price(
    service: Services, fakes: tuple[FakeWaveSpeed, FakeWaveSpeed]
) -> None:
    fakes[0].fail_next_submit(503, "maintenance")
    assert await run_job(service) == ("delivered", "second", 280_000)
    totals = await service.store.ledger_totals(1)
    assert (totals.reserved, totals.settled, totals.released) == (490_000, 280_000, 210_000)
    assert len(fakes[0].submits) == 1 and len(fakes[1].submits) == 1


async def test_ambiguous_submit_never_fails_over(service: Services, fakes: tuple[FakeWaveSpeed, FakeWaveSpeed]) -> None:
    fakes[0].drop_next_submit_after_create()
    status, provider, settled = await run_job(service)
    assert (status, provider, settled) == ("failed", "first", 0)
    assert fakes[1].submits == [], "a submit that may have created a task must not be sent elsewhere"


async def test_a_refused_request_does_not_fail_over(
    service: Services, fakes: tuple[FakeWaveSpeed, FakeWaveSpeed]
) -> None:
    fakes[0].fail_next_submit(400, "prompt rejected")
    assert (await run_job(service))[0] == "failed"
    assert fakes[1].submits == []


async def test_repeated_outages_rest_a_provider_and_say_so(
    service: Services, fakes: tuple[FakeWaveSpeed, FakeWaveSpeed], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="services.routing")
    for _ in range(2):
        fakes[0].fail_next_submit(502, "bad gateway")
        assert (await run_job(service))[1] == "second"
    assert "provider first taken out of rotation for 60 s" in caplog.text
    assert (await run_job(service))[1] == "second"
    assert len(fakes[0].submits) == 2, "the rested provider was not asked again"


async def test_one_auth_error_is_enough_to_rest_a_provider(service: Services) -> None:
    service.router.record_failure("first", FailureKind.AUTH)
    assert not service.router.available("first")
    assert service.router.candidates(SPEC, None) == ["second"]


async def test_a_pinned_server_uses_only_its_providers(
    service: Services, fakes: tuple[FakeWaveSpeed, FakeWaveSpeed]
) -> None:
    assert await run_job(service, guild_id=77) == ("delivered", "second", 280_000)
    assert fakes[0].submits == []
    assert (await service.store.ledger_totals(1)).reserved == 280_000  # only its own provider's price


def test_preview_stands_in_only_when_no_paid_provider_is_configured(tmp_path: Path) -> None:
    preview = PreviewProvider(tmp_path)
    paid = WaveSpeedProvider("k", "http://127.0.0.1:9")
    assert ProviderRouter({"wavespeed": paid, "preview": preview}).candidates(SPEC, None) == ["wavespeed"]
    assert ProviderRouter({"preview": preview}).candidates(SPEC, None) == ["preview"]
    pinned = ProviderRouter({"wavespeed": paid, "preview": preview}, pins={5: ["preview"]})
    assert pinned.candidates(SPEC, 5) == ["preview"]
    with pytest.raises(UserError, match="Hailuo 02"):
        ProviderRouter({"wavespeed": paid}).candidates(
            GenerationSpec(mode="i2v", quality="fast", duration=6, prompt="", end_image=object()),  # type: ignore[arg-type]
            None,
        )


async def test_cancel_before_submit_refunds_and_calls_nobody(
    service: Services, fakes: tuple[FakeWaveSpeed, FakeWaveSpeed]
) -> None:
    job = await service.jobs.create(SPEC, Requester(1, 10, 20), command="video")
    reporter = RecordingReporter()
    task = service.runner.start(job, reporter)
    assert await service.jobs.cancel(job.id) == CancelOutcome.STOPPED
    final = await task
    assert final is not None and final.status == "cancelled"
    assert fakes[0].submits == [] and fakes[1].submits == []
    assert reporter.cards[-1].stage == "cancelled"
    assert (await service.store.ledger_totals(job.id)).refunded == 490_000


async def test_cancel_where_the_provider_cannot_keeps_the_paid_job(
    service: Services, fakes: tuple[FakeWaveSpeed, FakeWaveSpeed]
) -> None:
    fakes[0].next_scenario(duration_s=1.0)
    job = await service.jobs.create(SPEC, Requester(1, 10, 20), command="video")
    task = service.runner.start(job, RecordingReporter())
    # At the provider: its task id is known (not merely sent, which would make the cancel a request).
    await wait_until(lambda: (run := service.runner.running(job.id)) is not None and run.task_id is not None)
    assert await service.jobs.cancel(job.id) == CancelOutcome.NOT_POSSIBLE
    final = await task
    assert final is not None and final.status == "delivered"
    assert (await service.store.ledger_totals(job.id)).settled == 490_000
    assert await service.jobs.cancel(job.id) == CancelOutcome.TOO_LATE


async def test_cancel_at_a_provider_that_can_refunds_when_it_confirms(tmp_path: Path) -> None:
    preview = PreviewProvider(tmp_path / "preview", fps=4, min_runtime_s=5)
    policy = PollPolicy(dense=0.05, sparse_cap=0.2, error_first=0.05)
    async with built_services(tmp_path, {"preview": preview}, {}, edit_interval=0, poll_policy=policy) as service:
        job = await service.jobs.create(SPEC, Requester(1, 10, 20), command="video")
        reporter = RecordingReporter()
        task = service.runner.start(job, reporter)
        await wait_until(lambda: (run := service.runner.running(job.id)) is not None and run.task_id is not None)
        assert await service.jobs.cancel(job.id) == CancelOutcome.REQUESTED
        final = await asyncio.wait_for(task, 10)
        assert final is not None and final.status == "cancelled"
        assert reporter.delivered == [] and reporter.cards[-1].stage == "cancelled"


def test_end_frames_route_only_to_variants_that_take_them(tmp_path: Path) -> None:
    from core.spec import ImageInput

    frame = ImageInput(b"", "image/jpeg", 640, 480)
    wavespeed = WaveSpeedProvider("k", "http://127.0.0.1:9")
    router = ProviderRouter({"wavespeed": wavespeed, "preview": PreviewProvider(tmp_path)}, pins={5: ["preview"]})
    pro = GenerationSpec(
        mode="i2v", quality="pro", duration=6, prompt="", model="hailuo-02", image=frame, end_image=frame
    )
    assert router.candidates(pro, None) == ["wavespeed"]
    with pytest.raises(UserError, match="quality: pro"):
        router.candidates(replace(pro, quality="standard"), None)
    assert router.candidates(replace(pro, quality="standard"), 5) == ["preview"]


async def test_cancel_pressed_while_the_submit_is_in_flight_cancels_at_the_provider(tmp_path: Path) -> None:
    prices = {"seaart": {"hailuo-2.3": {"t2v-standard-6s": 280_000}}}
    policy = PollPolicy(dense=0.05, sparse_cap=0.2, error_first=0.05)
    async with FakeSeaArt(duration_s=5) as seaart:
        provider = SeaArtProvider(seaart.api_key, seaart.base_url, timeout=5)
        built = built_services(tmp_path, {"seaart": provider}, prices, edit_interval=0, poll_policy=policy)
        async with built as service:
            seaart.slow_next_submit(0.5)
            job = await service.jobs.create(SPEC, Requester(1, 10, 20), command="video")
            task = service.runner.start(job, RecordingReporter())
            await wait_until(lambda: (run := service.runner.running(job.id)) is not None and run.submitting)
            assert await service.jobs.cancel(job.id) == CancelOutcome.IN_FLIGHT
            final = await asyncio.wait_for(task, 10)
            assert final is not None and final.status == "cancelled"
            assert len(seaart.submits) == 1 and len(seaart.cancel_requests) == 1
            assert (await service.store.ledger_totals(job.id)).refunded == 280_000


async def test_cancel_during_a_submit_to_a_provider_that_cannot_cancel_says_it_will_be_posted(
    service: Services, fakes: tuple[FakeWaveSpeed, FakeWaveSpeed]
) -> None:
    fakes[0].slow_next_submit(0.5)
    job = await service.jobs.create(SPEC, Requester(1, 10, 20), command="video")
    task = service.runner.start(job, RecordingReporter())
    await wait_until(lambda: (run := service.runner.running(job.id)) is not None and run.submitting)
    # Not "you will be refunded": WaveSpeed cannot stop a task, and the request is already on its way.
    outcome = await service.jobs.cancel(job.id)
    assert outcome == CancelOutcome.NOT_POSSIBLE and "will still be posted" in outcome.message
    final = await task
    assert final is not None and final.status == "delivered"
    assert (await service.store.ledger_totals(job.id)).settled == 490_000


async def test_a_cancel_that_loses_the_race_with_the_submit_says_so_on_the_card(tmp_path: Path) -> None:
    prices = {"seaart": {"hailuo-2.3": {"t2v-standard-6s": 280_000}}}
    policy = PollPolicy(dense=0.05, sparse_cap=0.2, error_first=0.05)
    async with FakeSeaArt(duration_s=0.0) as seaart:
        provider = SeaArtProvider(seaart.api_key, seaart.base_url, timeout=5)
        built = built_services(tmp_path, {"seaart": provider}, prices, edit_interval=0, poll_policy=policy)
        async with built as service:
            seaart.slow_next_submit(0.5)  # the task is finished by the time its submit is answered
            job = await service.jobs.create(SPEC, Requester(1, 10, 20), command="video")
            reporter = RecordingReporter()
            task = service.runner.start(job, reporter)
            await wait_until(lambda: (run := service.runner.running(job.id)) is not None and run.submitting)
            outcome = await service.jobs.cancel(job.id)
            assert outcome == CancelOutcome.IN_FLIGHT and "posted here and charged" in outcome.message
            final = await asyncio.wait_for(task, 10)
            assert final is not None and final.status == "delivered"
            assert len(seaart.cancel_requests) == 1
            assert any(card.notice == CANCEL_FAILED_NOTICE for card in reporter.cards)
            assert reporter.delivered[-1][0].notice == CANCEL_FAILED_NOTICE
            assert (await service.store.ledger_totals(job.id)).settled == 280_000


async def test_cancel_while_the_submitting_write_waits_stops_the_job_before_any_submit(
    service: Services, fakes: tuple[FakeWaveSpeed, FakeWaveSpeed]
) -> None:
    await service.store.db.set_busy_timeout(20)
    job = await service.jobs.create(SPEC, Requester(1, 10, 20), command="video")
    with holding_the_database(service.store.db.path):
        task = service.runner.start(job, RecordingReporter())
        await wait_until(lambda: service.crew.store.waiting > 0)  # the "submitting" write waits on the lock
        assert await service.jobs.cancel(job.id) == CancelOutcome.STOPPED
    final = await asyncio.wait_for(task, 10)
    assert final is not None and final.status == "cancelled"
    assert fakes[0].submits == [] and fakes[1].submits == []
    totals = await service.store.ledger_totals(job.id)
    assert totals.refunded == totals.reserved and totals.settled == 0
