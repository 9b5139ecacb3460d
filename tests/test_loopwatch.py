"""The event-loop lag watch notices a callback that hogs the loop, and reports it in the log."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

import pytest

from services.loopwatch import LoopWatch, freeze_startup_objects, percentile


async def test_a_blocked_loop_shows_up_as_lag(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="services.loopwatch")
    watch = LoopWatch(every=0.01, report_every=0.1)
    task = asyncio.create_task(watch.run())
    await asyncio.sleep(0.03)
    time.sleep(0.2)  # noqa: ASYNC251 - the point: a callback that blocks the loop
    await asyncio.sleep(0.15)
    task.cancel()
    assert max(watch.samples) >= 0.15
    assert "event-loop lag p50" in caplog.text


def test_percentile_of_samples() -> None:
    assert percentile([], 0.99) == 0.0
    assert percentile([float(n) for n in range(100)], 0.99) == 99.0
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0


def test_start_up_objects_are_frozen_out_of_collections() -> None:
    try:
        frozen = freeze_startup_objects()
        assert frozen == gc.get_freeze_count() > 1000  # at least the imported modules' objects
        gc.collect()
        assert gc.get_freeze_count() == frozen  # a full collection no longer walks them
    finally:
        gc.unfreeze()
