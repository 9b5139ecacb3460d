"""Nothing lost, nothing charged twice: the real bot (a child process) under random faults, crashes included.

Each run prints its seed and its figures (also when it passes); `HAILUO_FAULT_SEED=<seed>` replays a run's
plan. The fast run is part of the default suite; the long one needs `--slow` (`pytest tests/faults --slow`).
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from tests.faults.runner import (
    STORAGE_FAULTS,
    FaultRun,
    Figures,
    RunSize,
    describe,
    make_plan,
    seed_from_environment,
)

FAST = RunSize(jobs=12, bursts=3, kills=1, terms=1, faults=7, task_faults=4)
LONG = RunSize(jobs=110, bursts=11, kills=4, terms=2, faults=36, task_faults=24)
# Storage-fault mode: the database locked, the disk full and a read-only start, among jobs and other faults.
STORAGE = RunSize(jobs=14, bursts=4, kills=0, terms=0, faults=3, task_faults=2, storage_faults=5)
LONG_STORAGE = RunSize(jobs=60, bursts=8, kills=2, terms=1, faults=12, task_faults=8, storage_faults=12)


# The default suite replays one fixed plan, so CI is repeatable; the long run explores a new seed each time.
FAST_SEED = 20261123
STORAGE_SEED = 20261207


async def run_and_report(
    tmp_path: Path, size: RunSize, capsys: pytest.CaptureFixture[str], limit_s: float, seed: int | None = None
) -> Figures:
    seed = seed_from_environment(seed)
    with capsys.disabled():
        print(f"\nfault injection: seed {seed} (replay with HAILUO_FAULT_SEED={seed}); logs in {tmp_path}")
    async with asyncio.timeout(limit_s):
        figures = await FaultRun(tmp_path, size, seed).run()
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
