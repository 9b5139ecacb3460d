"""Nothing lost, nothing charged twice: the real bot (child processes) under random faults, crashes included.

Each run prints its seed and its figures (also when it passes); `HAILUO_FAULT_SEED=<seed>` replays a run's
plan. The fast runs are part of the default suite; the long ones need `--slow` (`pytest tests/faults --slow`).
Three modes: one bot on SQLite; storage faults (SQLite sick too); workers (PostgreSQL, a gateway and two
`bot.py worker` processes, either of them stopped).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

import pytest

from tests.faults.figures import Figures
from tests.faults.plan import STORAGE_FAULTS, RunSize, describe, make_plan, seed_from_environment
from tests.faults.runner import FaultRun

FAST = RunSize(jobs=12, bursts=3, kills=1, terms=1, faults=7, task_faults=4)
LONG = RunSize(jobs=110, bursts=11, kills=4, terms=2, faults=36, task_faults=24)
# Storage-fault mode: the database locked, the disk full and a read-only start, among jobs and other faults.
STORAGE = RunSize(jobs=14, bursts=4, kills=0, terms=0, faults=3, task_faults=2, storage_faults=5)
LONG_STORAGE = RunSize(jobs=60, bursts=8, kills=2, terms=1, faults=12, task_faults=8, storage_faults=12)
# Worker mode: `kills` and `terms` stop the gateway, `worker_kills` and `worker_terms` one of the two workers.
WORKERS = RunSize(jobs=12, bursts=3, kills=1, terms=1, faults=6, task_faults=4, workers=2, worker_kills=1,
                  worker_terms=1)  # fmt: skip
LONG_WORKERS = RunSize(jobs=80, bursts=8, kills=2, terms=2, faults=24, task_faults=16, workers=2, worker_kills=4,
                       worker_terms=3)  # fmt: skip


# The default suite replays one fixed plan, so CI is repeatable; the long run explores a new seed each time.
FAST_SEED = 20261123
STORAGE_SEED = 20261207
WORKERS_SEED = 20261215


async def run_and_report(
    tmp_path: Path,
    size: RunSize,
    capsys: pytest.CaptureFixture[str],
    limit_s: float,
    seed: int | None = None,
    database_url: str = "",
) -> Figures:
    seed = seed_from_environment(seed)
    with capsys.disabled():
        print(f"\nfault injection: seed {seed} (replay with HAILUO_FAULT_SEED={seed}); logs in {tmp_path}")
    async with asyncio.timeout(limit_s):
        figures = await FaultRun(tmp_path, size, seed, database_url=database_url).run()
    with capsys.disabled():
        print(figures.render())
    return figures


def assert_promise_kept(figures: Figures) -> None:
    problems = figures.problems()
    assert not problems, "\n".join([*problems, "", figures.render()])


def assert_run_was_whole(figures: Figures, size: RunSize) -> None:
    """The run exercised what it was meant to: every burst command became a job (unless it met a stopping
    bot), and every stop happened."""
    met_a_stop = figures.turned_away + figures.unacknowledged + figures.not_dispatched
    # With a sick database, a command may be told at once that nothing could be recorded.
    met_the_database = figures.apologised if size.storage_faults else 0
    assert figures.started >= size.jobs - met_a_stop - met_the_database, (
        f"{figures.started} jobs for {size.jobs} commands in bursts"
    )
    assert (figures.kills, len(figures.terms)) == (size.kills, size.terms)
    assert (len(figures.worker_kills), len(figures.worker_terms)) == (size.worker_kills, size.worker_terms)


async def test_fast_run_under_faults_and_crashes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    figures = await run_and_report(tmp_path, FAST, capsys, limit_s=240, seed=FAST_SEED)
    assert_promise_kept(figures)
    assert_run_was_whole(figures, FAST)


@pytest.mark.slow
async def test_long_run_under_faults_and_crashes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], slow_enabled: None
) -> None:
    figures = await run_and_report(tmp_path, LONG, capsys, limit_s=1500)
    assert_promise_kept(figures)
    assert_run_was_whole(figures, LONG)


async def test_storage_fault_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    figures = await run_and_report(tmp_path, STORAGE, capsys, limit_s=300, seed=STORAGE_SEED)
    assert_promise_kept(figures)
    assert_run_was_whole(figures, STORAGE)
    assert_storage_faults_applied(figures)


@pytest.mark.slow
async def test_long_storage_fault_run(tmp_path: Path, capsys: pytest.CaptureFixture[str], slow_enabled: None) -> None:
    figures = await run_and_report(tmp_path, LONG_STORAGE, capsys, limit_s=1500)
    assert_promise_kept(figures)
    assert_run_was_whole(figures, LONG_STORAGE)
    assert_storage_faults_applied(figures)


def assert_storage_faults_applied(figures: Figures) -> None:
    missed = [name for name in figures.faults if name.split(" ")[0] in STORAGE_FAULTS and "no target" in name]
    if missed:
        pytest.skip(f"this machine does not let the tests mount a file system: {missed} not injected")
    assert {name for name in figures.faults if name in STORAGE_FAULTS} == set(STORAGE_FAULTS)


def test_a_seed_fixes_the_plan() -> None:
    plans = [[describe(step) for step in make_plan(LONG, random.Random(42))] for _ in range(2)]
    assert plans[0] == plans[1]
    text = "\n".join(plans[0])
    assert text.count("SIGKILL") == LONG.kills and text.count("SIGTERM") == LONG.terms


async def test_worker_mode_run(tmp_path: Path, capsys: pytest.CaptureFixture[str], pg_url: str) -> None:
    """PostgreSQL, a gateway and two `bot.py worker` processes: the gateway SIGKILLed and SIGTERMed (the workers
    carry on), a worker SIGKILLed holding jobs (the other, or it once back, finishes them) and one SIGTERMed (it
    finishes what it holds, and no other worker takes them meanwhile)."""
    figures = await run_and_report(tmp_path, WORKERS, capsys, limit_s=300, seed=WORKERS_SEED, database_url=pg_url)
    assert_promise_kept(figures)
    assert_run_was_whole(figures, WORKERS)
    assert_workers_stopped_with_jobs_in_flight(figures)


@pytest.mark.slow
async def test_long_worker_mode_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pg_url: str, slow_enabled: None
) -> None:
    figures = await run_and_report(tmp_path, LONG_WORKERS, capsys, limit_s=1500, database_url=pg_url)
    assert_promise_kept(figures)
    assert_run_was_whole(figures, LONG_WORKERS)
    assert_workers_stopped_with_jobs_in_flight(figures)


def assert_workers_stopped_with_jobs_in_flight(figures: Figures) -> None:
    """Each worker stop met jobs: the SIGKILLed worker held some (another then finished them), and the
    SIGTERMed one held some (it finished them itself)."""
    assert all(figures.worker_kills), f"a worker was killed holding no job: {figures.worker_kills}"
    assert all(figures.worker_terms_held), f"a worker was stopped holding no job: {figures.worker_terms_held}"


def test_a_seed_fixes_the_worker_mode_plan() -> None:
    plans = [[describe(step) for step in make_plan(LONG_WORKERS, random.Random(42))] for _ in range(2)]
    assert plans[0] == plans[1]
    stops = [line for line in plans[0] if line.startswith("SIG")]
    counts = Counter(" ".join(line.split()[:2]) for line in stops)
    assert counts == {
        "SIGKILL gateway": LONG_WORKERS.kills,
        "SIGTERM gateway": LONG_WORKERS.terms,
        "SIGKILL worker": LONG_WORKERS.worker_kills,
        "SIGTERM worker": LONG_WORKERS.worker_terms,
    }
    # A worker is stopped while it holds a job (a reserved job waits in the queue, held by no worker).
    assert not [line for line in stops if "worker at 'reserved'" in line]
