"""With callbacks on, the poll a callback asks for does not queue behind the safety-net polls of every other
job in flight: those stay out of a poll budget that is already booked (services/watching.py)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from services.intake import Requester
from tests.fakes.wavespeed_server import FakeWaveSpeed
from tests.test_job_service import SPEC, RecordingReporter, wavespeed, wavespeed_service
from tests.waiting import until

__all__ = ["wavespeed"]  # the fixture, imported for pytest
FILLERS = 60  # jobs whose tasks never end; at one poll a second their first polls alone book a minute


async def test_a_woken_job_is_polled_ahead_of_the_safety_net(tmp_path: Path, wavespeed: FakeWaveSpeed) -> None:
    budget = {"wavespeed": 1.0}
    async with wavespeed_service(tmp_path, wavespeed, polls_per_second=budget, deadline_seconds=300) as service:
        service.crew.callbacks_live = lambda provider: True
        for _ in range(FILLERS):
            wavespeed.next_scenario(outcome="never")
        wavespeed.next_scenario(duration_s=0.5)  # the job whose callback arrives
        fillers = []
        for user in range(FILLERS):
            job = await service.jobs.create(SPEC, Requester(100 + user, 10, 20), command="video")
            fillers.append(asyncio.create_task(service.runner.run(job, RecordingReporter())))
        await until(lambda: len(wavespeed.tasks) == FILLERS)
        target = await service.jobs.create(SPEC, Requester(1, 10, 20), command="video")
        running = asyncio.create_task(service.runner.run(target, RecordingReporter()))
        try:
            await until(lambda: len(wavespeed.tasks) == FILLERS + 1)
            [task] = [t for t in wavespeed.tasks.values() if t.scenario.outcome == "completed"]
            await until(lambda: task.completed_at is not None)
            await until(lambda: service.runner.wake("wavespeed", task.id))  # once the job watches its task
            # Behind the fillers' polls it would wait about a minute; ahead of them, a second at most.
            final = await asyncio.wait_for(running, 30)
            assert final is not None and final.status == "delivered"
        finally:
            for pending in (*fillers, running):
                pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*fillers, running, return_exceptions=True)
