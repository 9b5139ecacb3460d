"""The image check in its worker processes (services/image_pool.py), with real Pillow and real processes.

Every hostile file is refused inside a worker that then reports its own CPU time and peak memory: the
bound is proved per file (2 s of CPU, 200 MB), and the worker's RLIMIT_CPU / RLIMIT_AS make those hard
limits. The limits themselves are shown to work by lifting the structure budget so a bomb reaches the
decoder: the kernel (CPU), the allocator (memory) or pebble (wall clock) stops it and the member gets
the "too complex" refusal, while the next check gets a fresh worker. Every wait is for a state.
"""

from __future__ import annotations

import asyncio
import io
import logging
import multiprocessing
from collections.abc import AsyncIterator, Callable

import pytest
from pebble.pool.process import WORKERS_NAME
from PIL import Image

from core.errors import UserError
from services.image_pool import BUSY, UNAVAILABLE, ImageChecker
from services.image_structure import Budget
from services.images import TOO_COMPLEX, inspect_image
from tests import hostile_images as hostile
from tests.test_images import encode

MB = 1_000_000
CPU_BOUND_SECONDS = 2.0
PEAK_BOUND_BYTES = 200 * MB
# Lets the 4,000-scan bomb through every structural check, so only the process limits can stop it.
NO_BUDGET = Budget(segments=10**6, jpeg_scans=10**6, jpeg_block_passes=10**12, jpeg_coefficient_bytes=10**12)


@pytest.fixture
async def checker() -> AsyncIterator[ImageChecker]:
    checker = ImageChecker()
    yield checker
    await checker.close()


async def until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Wait for a state (polled), failing with `what` if it never comes."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                if condition():
                    return
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


def pool_workers() -> list[multiprocessing.process.BaseProcess]:
    return [p for p in multiprocessing.active_children() if p.name == WORKERS_NAME]


async def test_every_hostile_file_is_refused_in_the_worker_within_2_s_of_cpu_and_200_mb(
    checker: ImageChecker,
) -> None:
    failures = []
    for item in hostile.corpus():
        result, usage = await checker.measure(item.build(1))
        if not isinstance(result, UserError) or item.expect not in result.message:
            failures.append(f"{item.name}: {result!r}")
        elif usage is None:
            failures.append(f"{item.name}: the worker was killed instead of refusing it")
        elif usage.cpu_seconds >= CPU_BOUND_SECONDS or usage.peak_rss_bytes >= PEAK_BOUND_BYTES:
            failures.append(f"{item.name}: {usage.cpu_seconds:.2f} s CPU, {usage.peak_rss_bytes / MB:.0f} MB peak")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    ("fmt", "size"), [("JPEG", (1600, 1200)), ("PNG", (640, 480)), ("WEBP", (800, 600))], ids=["jpeg", "png", "webp"]
)
async def test_a_normal_image_comes_back_described_with_its_own_bytes(
    checker: ImageChecker, fmt: str, size: tuple[int, int]
) -> None:
    data = encode(fmt, size, noise=True)
    result = await checker.check(data)
    assert (result.width, result.height) == size
    assert result.data is data  # the bytes never went round the worker and back
    assert result == inspect_image(data)


async def test_refusals_carry_the_same_message_as_in_process(checker: ImageChecker) -> None:
    with pytest.raises(UserError, match="the short side must be more than 300 px"):
        await checker.check(encode("PNG", (250, 400)))


async def test_the_pool_starts_no_process_until_the_first_check() -> None:
    before = len(pool_workers())
    checker = ImageChecker()
    assert len(pool_workers()) == before
    await checker.close()  # closing a pool that never started is free


async def test_a_bomb_past_the_budget_is_killed_at_the_cpu_limit_and_the_worker_replaced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # No wall clock to speak of (10 minutes): only RLIMIT_CPU can stop the ~20-46 s bomb.
    checker = ImageChecker(cpu_seconds=1, timeout=600, budget=NO_BUDGET)
    try:
        with caplog.at_level(logging.WARNING, logger="services.image_pool"):
            result, usage = await checker.measure(hostile.progressive_scan_repeat())
        assert isinstance(result, UserError) and result.message == TOO_COMPLEX
        assert usage is None  # killed, not refused by the check
        assert "SIGXCPU" in caplog.text or "SIGKILL" in caplog.text, caplog.text
        assert (await checker.check(encode("JPEG", (640, 480)))).mime == "image/jpeg"
    finally:
        await checker.close()


async def test_a_check_over_the_memory_limit_is_refused_as_too_complex() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (4000, 4000), (20, 90, 160)).save(buffer, "WEBP", lossless=True)  # 16 MP: ~64 MB to decode
    data = buffer.getvalue()
    assert inspect_image(data).width == 4000  # fine where memory is not limited
    checker = ImageChecker(memory_bytes=32 * 1024 * 1024)
    try:
        result, usage = await checker.measure(data)
        assert isinstance(result, UserError) and result.message == TOO_COMPLEX
        assert usage is not None  # the allocation failed; the worker itself was fine
    finally:
        await checker.close()


async def test_a_bomb_over_the_wall_clock_is_killed(caplog: pytest.LogCaptureFixture) -> None:
    # The bomb needs far more than a second of CPU, so more than a second of wall clock.
    checker = ImageChecker(cpu_seconds=600, timeout=1, budget=NO_BUDGET)
    try:
        with caplog.at_level(logging.WARNING, logger="services.image_pool"), pytest.raises(UserError) as caught:
            await checker.check(hostile.progressive_scan_repeat())
        assert caught.value.message == TOO_COMPLEX
        assert "timeout" in caplog.text.lower(), caplog.text
    finally:
        await checker.close()


async def test_close_kills_a_check_in_flight_at_once() -> None:
    checker = ImageChecker(cpu_seconds=600, timeout=600, budget=NO_BUDGET)
    check = asyncio.create_task(checker.check(hostile.progressive_scan_repeat()))
    await until(lambda: checker.running == 1, "the bomb is being decoded in a worker")
    async with asyncio.timeout(10):  # SIGTERM must end the bot within 10 s: this is its image part
        await checker.close()
        with pytest.raises(UserError) as caught:
            await check
    assert caught.value.message == UNAVAILABLE
    assert pool_workers() == []
    with pytest.raises(UserError, match="could not check"):
        await checker.check(encode("JPEG", (640, 480)))


async def test_a_flood_is_refused_as_busy_beyond_the_queue_bound() -> None:
    checker = ImageChecker(workers=1, max_pending=2, cpu_seconds=600, timeout=600, budget=NO_BUDGET)
    bomb = hostile.progressive_scan_repeat()
    admitted = [asyncio.create_task(checker.check(bomb)) for _ in range(2)]
    await until(lambda: checker.pending == 2 and checker.running == 1, "one bomb running, one queued")
    with pytest.raises(UserError) as caught:
        await checker.check(encode("JPEG", (640, 480)))
    assert caught.value.message == BUSY
    await checker.close()
    for task in admitted:
        with pytest.raises(UserError, match="could not check"):
            await task
