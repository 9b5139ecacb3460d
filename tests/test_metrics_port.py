"""What services report to the metrics port (core.metrics), through the observed store and providers, for
jobs run by the real job services over real SQLite against the WaveSpeed stand-in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from core.jobs import JobStatus
from core.metrics import NoticeBasis, Operation
from core.spec import GenerationSpec
from providers.wavespeed import WaveSpeedProvider
from services.intake import Requester
from services.observed import observe_providers
from services.polling import PollPolicy
from tests.builders import Services, built_services
from tests.fakes.wavespeed_server import FakeWaveSpeed
from tests.test_job_service import RecordingReporter

SPEC = GenerationSpec(mode="t2v", quality="standard", duration=6, prompt="a cat")
PRICES = {
    "first": {"hailuo-2.3": {"t2v-standard-6s": 490_000}},
    "second": {"hailuo-2.3": {"t2v-standard-6s": 280_000}},
}


@dataclass
class Recorder:
    """The metrics port, remembering every call."""

    moves: list[tuple[JobStatus | None, JobStatus]] = field(default_factory=list)
    money: list[tuple[str, int, int]] = field(default_factory=list)
    calls: list[tuple[str, Operation, str | None]] = field(default_factory=list)
    notices: list[tuple[str, NoticeBasis, float]] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    cooldowns: list[tuple[str, float | None]] = field(default_factory=list)
    budgets: list[tuple[str, float]] = field(default_factory=list)

    def job_moved(self, previous: JobStatus | None, status: JobStatus) -> None:
        self.moves.append((previous, status))

    def reserved(self, micros: int) -> None:
        self.money.append(("reserved", micros, 0))

    def refunded(self, micros: int) -> None:
        self.money.append(("refunded", micros, 0))

    def settled(self, charged_micros: int, released_micros: int) -> None:
        self.money.append(("settled", charged_micros, released_micros))

    def provider_call(self, provider: str, operation: Operation, seconds: float, error: str | None) -> None:
        assert seconds >= 0
        self.calls.append((provider, operation, error))

    def notice_delay(self, provider: str, basis: NoticeBasis, seconds: float) -> None:
        self.notices.append((provider, basis, seconds))

    def loop_lag(self, seconds: float) -> None:
        self.lags.append(seconds)

    def cooldown(self, provider: str, until: float | None) -> None:
        self.cooldowns.append((provider, until))

    def poll_budget(self, provider: str, per_second: float) -> None:
        self.budgets.append((provider, per_second))


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeWaveSpeed, FakeWaveSpeed]]:
    async with FakeWaveSpeed(duration_s=0.3) as first, FakeWaveSpeed(duration_s=0.3) as second:
        yield first, second


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def service(
    tmp_path: Path, fakes: tuple[FakeWaveSpeed, FakeWaveSpeed], recorder: Recorder
) -> AsyncIterator[Services]:
    providers = {
        "first": WaveSpeedProvider("ws-test-key", fakes[0].base_url, timeout=2),
        "second": WaveSpeedProvider("ws-test-key", fakes[1].base_url, timeout=2),
    }
    policy = PollPolicy(dense=0.05, sparse_cap=0.2, error_first=0.05, error_ceiling=0.3)
    async with built_services(
        tmp_path, observe_providers(providers, recorder), PRICES, metrics=recorder, edit_interval=0,
        poll_policy=policy, typical_seconds={"first": 0.3, "second": 0.3},
    ) as built:  # fmt: skip
        yield built


async def run_job(service: Services) -> JobStatus:
    job = await service.jobs.create(SPEC, Requester(1, 10, 20), command="video")
    final = await service.runner.run(job, RecordingReporter())
    assert final is not None
    return final.status


async def test_a_job_that_failed_over_is_reported_state_by_state_with_its_money(
    service: Services, fakes: tuple[FakeWaveSpeed, FakeWaveSpeed], recorder: Recorder
) -> None:
    fakes[0].fail_next_submit(503, "maintenance")
    assert await run_job(service) == JobStatus.DELIVERED
    # Each state entered once, in order, each move from the state before (a gauge per state stays right).
    states = [status for _, status in recorder.moves]
    assert states[0] == JobStatus.RESERVED and states[-1] == JobStatus.DELIVERED
    assert [previous for previous, _ in recorder.moves] == [None, *states[:-1]]
    assert {JobStatus.SUBMITTING, JobStatus.SUBMITTED, JobStatus.DOWNLOADING, JobStatus.POSTING} <= set(states)
    # Reserved at the dearer provider's price, settled at the cheaper one's, the difference released.
    assert recorder.money == [("reserved", 490_000, 0), ("settled", 280_000, 210_000)]
    # The refused create counted as an outage on "first"; then create, polls and the download on "second".
    assert recorder.calls[0] == ("first", "create", "unavailable")
    second = [(operation, error) for provider, operation, error in recorder.calls if provider == "second"]
    assert second[0] == ("create", None) and second[-1] == ("download", None)
    assert ("poll", None) in second and all(error is None for _, error in second)
    # The end was seen by a poll, bounded by the time since the one before it.
    [(provider, basis, delay)] = recorder.notices
    assert (provider, basis) == ("second", "poll") and 0 <= delay < 5


async def test_a_failed_job_is_reported_refunded(
    service: Services, fakes: tuple[FakeWaveSpeed, FakeWaveSpeed], recorder: Recorder
) -> None:
    fakes[0].next_scenario(outcome="failed", error_text="the model could not do it")
    assert await run_job(service) == JobStatus.FAILED
    assert recorder.moves[-1][1] == JobStatus.FAILED
    assert recorder.money == [("reserved", 490_000, 0), ("refunded", 490_000, 0)]
    assert [(p, b) for p, b, _ in recorder.notices] == [("first", "poll")]


async def test_a_job_woken_by_a_callback_is_noticed_from_the_callback(
    tmp_path: Path, fakes: tuple[FakeWaveSpeed, FakeWaveSpeed], recorder: Recorder
) -> None:
    provider = WaveSpeedProvider("ws-test-key", fakes[0].base_url, timeout=2)
    # Polls 5 s apart: after the first one, only the wake can make the job look again in time.
    sparse = PollPolicy(dense=5, sparse_cap=5)
    async with built_services(
        tmp_path, observe_providers({"first": provider}, recorder), PRICES, metrics=recorder, edit_interval=0,
        poll_policy=sparse, typical_seconds={"first": 100},
    ) as built:  # fmt: skip
        job = await built.jobs.create(SPEC, Requester(1, 10, 20), command="video")
        built.jobs.start(job, RecordingReporter())
        async with asyncio.timeout(10):
            # Waiting for states: the task exists, a poll saw it unfinished, and then the task ended.
            while not (fakes[0].tasks and ("first", "poll", None) in recorder.calls):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            [task] = fakes[0].tasks.values()
            while task.completed_at is None:  # noqa: ASYNC110 - the stand-in's clock-based state
                await asyncio.sleep(0.01)
        assert built.runner.wake("first", task.id)  # what the webhook receiver does for a verified callback
        await built.runner.wait_idle()
    [(name, basis, delay)] = recorder.notices
    assert (name, basis) == ("first", "callback") and 0 <= delay < 2
