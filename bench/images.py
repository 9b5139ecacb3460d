"""The image-check benchmark (issue rows 1 and 14): the old check against the new one.

    .venv/bin/python -m bench.images            # about 3 minutes: every corpus file, then 6 bombs at once
    .venv/bin/python -m bench.images --quick    # about 20 s: the corpus at 1/20 scale, 6 smaller bombs

Per file of the adversarial corpus (tests/hostile_images.py) and a few normal photos:
- old: `bench/old_images.py` (services/images.py before this change) run in a thread, as the bot ran
  it (asyncio.to_thread), in a fresh process per file so its CPU time and peak RSS are its own;
- new: `services.image_pool.ImageChecker.measure`, i.e. the worker process with its limits, which
  reports its own CPU time and peak RSS.
Peak RSS includes the interpreter and Pillow (~20–40 MB) in both columns.

Then "6 bombs at once": a bot-like process (fresh for each run, so its peak RSS is its own) starts six
checks of the observed 0.39 MB scan bomb and, every 100 ms while they run, a /video-like
acknowledgement: a hop through the loop's default thread pool (the bot uses it for small file work)
and an HTTP POST to a local server. Printed: the acknowledgement latency (p50 / max) and the process's
peak RSS, old (checks in to_thread) against new (checks in the worker pool), and new with the structure
budget off (the bombs reach the decoder and the workers' CPU limit stops them).
Timings are measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from pebble import ProcessExpired, ProcessPool

from bench import old_images
from bench.image_worker import old_check_in_a_thread, outcome
from core.errors import UserError
from services.image_pool import ImageChecker, worker_context
from services.image_structure import Budget
from tests import hostile_images as hostile
from tests.test_images import encode

MB = 1_000_000
OLD_TIMEOUT = 300.0  # seconds of wall clock one old check may take before it is reported as "> N s"
BOMBS = 6
PROBE_EVERY = 0.1
LIFTED = Budget(segments=10**6, jpeg_scans=10**6, jpeg_block_passes=10**12, jpeg_coefficient_bytes=10**12)


# ----- one file, old and new --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    outcome: str  # "accepted 640×480" or the start of the refusal
    cpu_seconds: float | None
    peak_mb: float | None


def measure_old(files: list[tuple[str, bytes]]) -> dict[str, Measured]:
    results: dict[str, Measured] = {}
    with ProcessPool(max_workers=2, max_tasks=1, context=worker_context()) as pool:
        futures = {
            name: pool.schedule(old_check_in_a_thread, args=(data,), timeout=OLD_TIMEOUT) for name, data in files
        }
        for name, future in futures.items():
            try:
                text, cpu, peak = future.result()
                results[name] = Measured(text, cpu, peak / MB)
            except TimeoutError:
                results[name] = Measured(f"still running after {OLD_TIMEOUT:.0f} s", None, None)
            except ProcessExpired as exc:
                results[name] = Measured(f"worker died ({exc.exitcode})", None, None)
    return results


async def measure_new(files: list[tuple[str, bytes]]) -> dict[str, Measured]:
    checker = ImageChecker()
    results = {}
    try:
        for name, data in files:
            result, usage = await checker.measure(data)
            results[name] = Measured(
                outcome(result),
                usage.cpu_seconds if usage else None,
                usage.peak_rss_bytes / MB if usage else None,
            )
    finally:
        await checker.close()
    return results


def corpus_files(scale: float) -> list[tuple[str, bytes]]:
    files = [(item.name, item.build(scale)) for item in hostile.corpus()]
    photos = [
        ("normal-jpeg-12mp", encode("JPEG", (4000, 3000), noise=True, quality=85)),
        ("normal-jpeg-12mp-progressive", encode("JPEG", (4000, 3000), noise=True, quality=85, progressive=True)),
        ("normal-png-2mp", encode("PNG", (1600, 1200), noise=True)),
        ("normal-webp-2mp", encode("WEBP", (1600, 1200), noise=True)),
    ]
    return files + photos


# ----- six bombs at once, and a /video-like acknowledgement -----------------------------------------------------


async def ack_phase(mode: str, bombs: int, bomb_scale: float) -> dict[str, Any]:
    """Run in a fresh process: `bombs` checks of the scan bomb (old: to_thread; new: the pool; idle: none)
    and acknowledgement probes until they are all answered."""
    app = web.Application()

    async def callback(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    app.router.add_post("/interactions/{iid}/{token}/callback", callback)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    bomb = hostile.progressive_scan_repeat(bomb_scale)
    # "lifted": the structure budget off, so the bombs reach the decoder and only the workers' limits
    # (2 s of CPU each) stop them: the event loop's view of the second line of defence.
    checker = ImageChecker(budget=LIFTED) if mode == "lifted" else ImageChecker()
    latencies: list[float] = []
    started = time.perf_counter()

    async def one_check() -> float:
        try:
            if mode == "old":
                await asyncio.to_thread(old_images.inspect_image, bomb)
            else:
                await checker.check(bomb)
        except UserError:
            pass
        return time.perf_counter() - started

    async with aiohttp.ClientSession() as http:

        async def ack(index: int) -> None:
            scheduled = time.perf_counter()
            await asyncio.to_thread(json.dumps, {"type": 5, "data": {"flags": 64}})
            url = f"http://127.0.0.1:{port}/interactions/{index}/token/callback"
            async with http.post(url, json={"type": 5, "data": {"flags": 64}}) as response:
                await response.read()
            latencies.append(time.perf_counter() - scheduled)

        checks = [asyncio.create_task(one_check()) for _ in range(bombs if mode != "idle" else 0)]
        probes: list[asyncio.Task[None]] = []
        index = 0
        while index < 10 or not all(task.done() for task in checks):
            probes.append(asyncio.create_task(ack(index)))
            index += 1
            await asyncio.sleep(PROBE_EVERY)
        done_at = [task.result() for task in checks]
        await asyncio.gather(*probes)
    await checker.close()
    await runner.cleanup()
    return {
        "mode": mode,
        "probes": len(latencies),
        "ack_p50_ms": statistics.median(latencies) * 1000,
        "ack_max_ms": max(latencies) * 1000,
        "bombs_answered_s": max(done_at) if done_at else 0.0,
        "peak_rss_mb": peak_rss_bytes() / MB,
    }


def peak_rss_bytes() -> int:
    """This process's peak RSS since it started. Not ru_maxrss: Linux carries that over exec from the
    parent, so a phase started by a big parent would report the parent's peak."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def run_phase(mode: str, bombs: int, bomb_scale: float) -> dict[str, Any]:
    """Each phase in its own process: its peak RSS and its default thread pool are its own."""
    command = [sys.executable, "-m", "bench.images", "--phase", mode, "--bombs", str(bombs), "--scale", str(bomb_scale)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


# ----- printing --------------------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def print_files(files: list[tuple[str, bytes]], old: dict[str, Measured], new: dict[str, Measured]) -> None:
    header = f"{'file':36} {'MB':>6} | {'old: outcome':28} {'CPU s':>7} {'peak MB':>8} | "
    header += f"{'new: outcome':28} {'CPU s':>6} {'peak MB':>8}"
    print(header)
    print("-" * len(header))
    for name, data in files:
        o, n = old[name], new[name]
        print(
            f"{name:36} {len(data) / MB:6.2f} | {o.outcome:28} {fmt(o.cpu_seconds):>7} {fmt(o.peak_mb, 0):>8} | "
            f"{n.outcome:28} {fmt(n.cpu_seconds):>6} {fmt(n.peak_mb, 0):>8}"
        )


def print_phases(phases: list[dict[str, Any]], bombs: int) -> None:
    print()
    print(f"{bombs} scan bombs checked at once; a /video-like acknowledgement every {PROBE_EVERY * 1000:.0f} ms")
    header = f"{'checks run in':28} {'acks':>5} {'ack p50 ms':>11} {'ack max ms':>11} {'bombs answered s':>17} "
    header += f"{'bot peak RSS MB':>16}"
    print(header)
    print("-" * len(header))
    names = {
        "idle": "(no bombs: baseline)",
        "old": "old: asyncio.to_thread",
        "new": "new: worker pool",
        "lifted": "new, structure budget off",
    }
    for p in phases:
        print(
            f"{names[p['mode']]:28} {p['probes']:5d} {p['ack_p50_ms']:11.1f} {p['ack_max_ms']:11.1f} "
            f"{p['bombs_answered_s']:17.1f} {p['peak_rss_mb']:16.0f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.images", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the corpus and the bombs at 1/20 scale")
    parser.add_argument("--scale", type=float, help="the corpus and the bombs at this scale (default 1)")
    parser.add_argument("--phase", choices=["idle", "old", "new", "lifted"], help=argparse.SUPPRESS)
    parser.add_argument("--bombs", type=int, default=BOMBS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    scale = args.scale or (0.05 if args.quick else 1.0)
    if args.phase:
        print(json.dumps(asyncio.run(ack_phase(args.phase, args.bombs, scale))))
        return 0
    files = corpus_files(scale)
    print(f"image checks, old vs new (corpus scale {scale}; Python {sys.version.split()[0]})\n", flush=True)
    old = measure_old(files)
    new = asyncio.run(measure_new(files))
    print_files(files, old, new)
    phases = [run_phase(mode, BOMBS, scale) for mode in ("idle", "old", "new", "lifted")]
    print_phases(phases, BOMBS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
