"""A provider's poll budget is the deployment's: each process that runs jobs paces an equal share of it
(services/poll_share.py, `Crew.share_poll_budget`, `PollPacer.set_rate`). The arithmetic, the loop against a
scripted census, and on a real PostgreSQL the share halving while a second worker heartbeats."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.queue import JobQueue
from services.poll_share import follow_poll_share
from services.polling import PollPacer
from services.run import Crew
from tests.builders import built_services
from tests.test_metrics_port import Recorder
from tests.waiting import until

BUDGETS = {"wavespeed": 8.0, "toapis": 50.0}


@contextlib.asynccontextmanager
async def crew_with_budgets(tmp_path: Path, recorder: Recorder | None = None) -> AsyncIterator[Crew]:
    options = {"metrics": recorder} if recorder is not None else {}
    async with built_services(tmp_path, {}, {}, polls_per_second=BUDGETS, **options) as services:
        yield services.crew


def test_a_pacer_takes_a_new_rate_from_its_next_slot_on() -> None:
    pacer = PollPacer(per_second=10)
    assert [pacer.reserve(0.0) for _ in range(2)] == [0.0, pytest.approx(0.1)]
    pacer.set_rate(5)  # a second worker joined: half the rate
    assert pacer.per_second == 5
    assert [pacer.reserve(0.0) for _ in range(2)] == [pytest.approx(0.2), pytest.approx(0.4)]
    with pytest.raises(ValueError):
        pacer.set_rate(0)


async def test_the_crew_paces_each_provider_to_its_share(tmp_path: Path) -> None:
    recorder = Recorder()
    async with crew_with_budgets(tmp_path, recorder) as crew:
        assert {name: pacer.per_second for name, pacer in crew.pacers.items()} == BUDGETS  # alone: everything
        crew.share_poll_budget(4)
        assert crew.pacers["wavespeed"].per_second == 2 and crew.pacers["toapis"].per_second == 12.5
        crew.share_poll_budget(0)  # the census has not seen this process yet: it still runs jobs
        assert {name: pacer.per_second for name, pacer in crew.pacers.items()} == BUDGETS
        crew.share_poll_budget(1)  # unchanged: not reported again
    assert recorder.budgets == [
        ("wavespeed", 8.0),
        ("toapis", 50.0),
        ("wavespeed", 2.0),
        ("toapis", 12.5),
        ("wavespeed", 8.0),
        ("toapis", 50.0),
    ]


class ScriptedCensus:
    """Answers the counts given, in order (an exception is raised), then keeps answering the last; remembers
    the wavespeed rate the crew paced at when each question came."""

    def __init__(self, crew: Crew, *answers: int | Exception) -> None:
        self.crew, self.answers, self.rates_seen = crew, list(answers), []

    async def live_workers(self) -> int:
        self.rates_seen.append(self.crew.pacers["wavespeed"].per_second)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_the_share_holds_while_the_processes_cannot_be_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.poll_share")
    async with crew_with_budgets(tmp_path) as crew:
        census = ScriptedCensus(crew, 2, OSError("connection refused"), OSError("connection refused"), 4)
        follower = asyncio.create_task(follow_poll_share(crew, census, every=0.0))
        try:
            await until(lambda: len(census.rates_seen) >= 5)
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
    assert census.rates_seen[:5] == [8.0, 4.0, 4.0, 4.0, 2.0]  # the share of two held through the outage
    assert caplog.text.count("could not count the processes running jobs") == 1
    assert "counting the processes running jobs again" in caplog.text
    assert "poll budgets: 4 process(es) run jobs; this one's shares: wavespeed 2/s, toapis 12.5/s" in caplog.text


async def test_on_postgresql_the_share_halves_while_a_second_worker_heartbeats(pg_url: str, tmp_path: Path) -> None:
    async def carry(job_id: int) -> None:
        pass

    async with (
        crew_with_budgets(tmp_path) as crew,
        JobQueue(pg_url, heartbeat_seconds=0.2, stalled_after=2) as first,
        JobQueue(pg_url, heartbeat_seconds=0.2, stalled_after=2) as second,
    ):
        working = asyncio.create_task(first.run_worker(carry, concurrency=1, name="first"))
        following = asyncio.create_task(follow_poll_share(crew, first, first.heartbeat_seconds))
        try:
            await counted(first, 1)
            assert crew.pacers["wavespeed"].per_second == 8
            joined = asyncio.create_task(second.run_worker(carry, concurrency=1, name="second"))
            try:
                await until(lambda: crew.pacers["wavespeed"].per_second == 4)
                assert crew.pacers["toapis"].per_second == 25
            finally:
                joined.cancel()  # a graceful stop: the worker leaves the census at once
                await asyncio.gather(joined, return_exceptions=True)
            await until(lambda: crew.pacers["wavespeed"].per_second == 8)
            assert crew.pacers["toapis"].per_second == 50
        finally:
            for task in (following, working):
                task.cancel()
            await asyncio.gather(following, working, return_exceptions=True)


async def counted(queue: JobQueue, workers: int, timeout: float = 60) -> None:
    """Wait until the census counts this many workers."""
    async with asyncio.timeout(timeout):
        while True:
            if await queue.live_workers() == workers:
                return
            await asyncio.sleep(0.05)
