"""The job engine on a real PostgreSQL: a job handed over is carried by a worker once however often it is
handed over, the jobs of a worker that is SIGKILLed are taken up by another worker, and those of a worker
told to stop are left to it while it finishes them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from engine.queue import JobQueue
from tests.waiting import until

ROOT = Path(__file__).resolve().parent.parent


def marks(folder: Path, kind: str) -> list[tuple[int, int]]:
    """(job id, pid) of every `kind` mark the workers left."""
    found = []
    for path in folder.glob(f"{kind}-*"):
        _, job, pid = path.name.split("-")
        found.append((int(job), int(pid)))
    return sorted(found)


async def test_a_job_handed_over_twice_is_carried_once(pg_url: str) -> None:
    carried: list[int] = []
    done = asyncio.Event()

    async def carry(job_id: int) -> None:
        carried.append(job_id)
        if len(carried) == 2:
            done.set()

    async with JobQueue(pg_url, heartbeat_seconds=0.5) as queue:
        for job_id in (7, 7, 8):
            await queue.hand_over(job_id)
        worker = asyncio.create_task(queue.run_worker(carry, concurrency=4))
        await asyncio.wait_for(done.wait(), 30)
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    assert sorted(carried) == [7, 8]


async def test_the_jobs_of_a_killed_worker_are_carried_by_another(pg_url: str, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    def worker(seconds: float) -> subprocess.Popen[bytes]:
        command = [sys.executable, str(ROOT / "tests" / "engine_worker.py"), pg_url, str(tmp_path), str(seconds)]
        return subprocess.Popen(command, env=env, cwd=ROOT)

    async with JobQueue(pg_url) as queue:
        for job_id in (1, 2, 3):
            await queue.hand_over(job_id)
    first = worker(seconds=600)
    try:
        await until(lambda: len(marks(tmp_path, "started")) == 3)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = worker(seconds=0.1)
        try:
            await until(lambda: len(marks(tmp_path, "finished")) == 3)
        finally:
            second.terminate()
            second.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    assert {job for job, pid in marks(tmp_path, "finished")} == {1, 2, 3}
    assert {pid for _, pid in marks(tmp_path, "finished")} == {second.pid}
    assert {pid for _, pid in marks(tmp_path, "started") if pid != second.pid} == {first.pid}


async def test_a_worker_told_to_stop_beats_on_until_it_has_finished_its_jobs(pg_url: str) -> None:
    """Stopping, the engine's worker cancels its heartbeat before it waits for the jobs it holds; without a
    heartbeat of our own meanwhile, every worker (this one too) took them, after `stalled_after`, for the
    jobs of a dead worker and ran them a second time, at the same time (found by the fault suite's worker
    mode: a SIGTERMed worker's job carried by the other worker while the first still carried it)."""
    started, release = asyncio.Event(), asyncio.Event()

    async def carry(job_id: int) -> None:
        started.set()
        await release.wait()

    async with JobQueue(pg_url, heartbeat_seconds=0.2, stalled_after=1) as queue:
        await queue.hand_over(1)
        worker = asyncio.create_task(queue.run_worker(carry, concurrency=4))
        await asyncio.wait_for(started.wait(), 30)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            told_at = conn.execute("SELECT NOW()").fetchone()
            worker.cancel()  # told to stop: it finishes the job it holds first

            def beat_past_stall_limit() -> bool:
                row = conn.execute(
                    "SELECT MIN(last_heartbeat) > %s + INTERVAL '1.5 seconds' FROM procrastinate_workers", told_at
                ).fetchone()
                return bool(row and row[0])

            try:
                await until(beat_past_stall_limit, timeout=30)
            except TimeoutError:
                pytest.fail("the stopping worker's heartbeat stopped while it still held a job")
            assert await queue.requeue_stalled() == [], "a stopping worker's job was taken for a dead worker's"
            task = conn.execute("SELECT status FROM procrastinate_jobs WHERE lock = 'job-1'").fetchone()
            assert task == ("doing",)
        release.set()
        await asyncio.gather(worker, return_exceptions=True)
