"""The hailuo-bot benchmark (issue 5). Drives the real bot (`python bot.py`, its own process) through the
local Discord and WaveSpeed stand-ins at several loads, prints a table and writes JSON.

    .venv/bin/python -m bench.run                     # 10, 100 jobs at ×4, 1000 at ×1, webhooks, big clips, ledger
    .venv/bin/python -m bench.run --quick             # 10 and 100 jobs at ×20 and the ledger, about a minute
    .venv/bin/python -m bench.run --levels 100 --compression 1   # real-time provider durations

Provider time is compressed by `--compression` (30–90 s becomes 30/c–90/c s). Poll delays are absolute
seconds, so polling figures at ×c are those of short jobs; they are also replayed at real durations
(see bench/replay.py) and printed as "at real durations". Compression also multiplies the rate at
which clips finish (N in flight finish at N·c/60 per second), so the 1,000-job level runs at ×1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.clips import load_clips
from bench.ledger import ledger_benchmark
from bench.level import LevelConfig, run_level
from bench.table import render
from bench.workload import MIB, Shape, clip_sizes, draw

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def detect_polling(bot_dir: Path) -> str:
    """How the bot tree under test polls, for the replay model: "schedule" (services/polling.py's
    PollSchedule) or, in trees from before it existed, "backoff"."""
    polling = bot_dir / "services" / "polling.py"
    has_schedule = polling.is_file() and "class PollSchedule" in polling.read_text(encoding="utf-8")
    return "schedule" if has_schedule else "backoff"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="levels 10 and 100 at ×20, no extra phases")
    parser.add_argument("--levels", help="comma-separated jobs per level (default 10,100,1000; quick 10,100)")
    parser.add_argument("--compression", type=float, help="provider time divided by this (default 4; quick 20)")
    parser.add_argument(
        "--real-time-from",
        type=int,
        help="levels of at least this many jobs run at ×1 (default 1000; quick: never): compressing time "
        "also multiplies the rate of deliveries, which would measure a different load",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--bot-dir", type=Path, default=ROOT, help="the bot tree to run (bot.py in it)")
    parser.add_argument(
        "--bot-polling",
        choices=["auto", "backoff", "schedule"],
        default="auto",
        help="how the bot under test polls, for the replay model (auto: read its services/polling.py)",
    )
    parser.add_argument("--sdk-sample", type=int, default=200, help="jobs per level that get an SDK-loop twin")
    parser.add_argument("--upload-limit-mib", type=float, default=25.0, help="Discord's upload limit (no re-encode)")
    parser.add_argument("--heartbeat-ms", type=int, default=250, help="gateway heartbeat (event-loop lag samples)")
    parser.add_argument("--webhooks-level", type=int, help="jobs in a level with callbacks on (0 = skip)")
    parser.add_argument("--bigclips-level", type=int, help="jobs all finishing at once with 20 MiB clips (0 = skip)")
    parser.add_argument("--ledger-users", type=int, help="members reserving concurrently (0 = skip)")
    parser.add_argument("--ledger-attempts", type=int, default=20, help="reservations each member attempts")
    parser.add_argument(
        "--ledger-database-url", help="run the ledger level on PostgreSQL: a scratch database on this server"
    )
    parser.add_argument("--ledger-writers", type=int, default=1, help="ledger stores with their own connections")
    parser.add_argument("--clip-scale", type=float, default=1.0, help="shrink clips (the smoke test uses 0.05)")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    full = not args.quick
    args.levels = [int(x) for x in (args.levels or ("10,100,1000" if full else "10,100")).split(",") if x]
    args.compression = args.compression or (4.0 if full else 20.0)
    if args.bot_polling == "auto":
        args.bot_polling = detect_polling(args.bot_dir)
    args.real_time_from = args.real_time_from if args.real_time_from is not None else (1000 if full else 0)
    args.webhooks_level = args.webhooks_level if args.webhooks_level is not None else (100 if full else 0)
    args.bigclips_level = args.bigclips_level if args.bigclips_level is not None else (100 if full else 0)
    args.ledger_users = args.ledger_users if args.ledger_users is not None else (300 if full else 100)
    return args


def machine() -> dict[str, Any]:
    mem_kib = next(
        (
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        0,
    )
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "cpu_model": next(
            (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("model name")), "?"),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }  # fmt: skip


async def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    shape = Shape(compression=args.compression, clip_scale=args.clip_scale, seed=args.seed)
    clips = load_clips(RESULTS / "clips", clip_sizes(shape))
    cfg = LevelConfig(
        compression=args.compression,
        bot_dir=args.bot_dir.resolve(),
        bot_polling=args.bot_polling,
        upload_limit=int(args.upload_limit_mib * MIB),
        heartbeat_ms=args.heartbeat_ms,
        sdk_sample=args.sdk_sample,
        log_dir=args.out.parent / "logs",
    )
    results: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join(["python -m bench.run", *sys.argv[1:]]),
        "machine": machine(),
        "compression": args.compression,
        "bot_dir": str(cfg.bot_dir),
        "bot_polling": args.bot_polling,
        "levels": [],
        "extras": [],
    }
    plans: list[tuple[str, list[Any], LevelConfig]] = []
    for n in args.levels:
        c = 1.0 if args.real_time_from and n >= args.real_time_from else args.compression
        plans.append(
            (f"{n} jobs", draw(n, replace(shape, compression=c)), replace(cfg, compression=c, label=f"{n} jobs"))
        )
    if args.webhooks_level:
        n = args.webhooks_level
        plans.append((f"{n} jobs, webhooks", draw(n, shape), replace(cfg, webhooks=True, label=f"{n} + webhooks")))
    if args.bigclips_level:
        plans.append(
            (f"{args.bigclips_level} × 20 MiB at once", big_clips(args, shape), replace(cfg, label="big clips"))
        )
        clips.update(load_clips(RESULTS / "clips", [int(20 * MIB * args.clip_scale)]))
    for name, jobs, level_cfg in plans:
        load_before = os.getloadavg()
        print(f"· {name} (×{level_cfg.compression:g}) …", file=sys.stderr, flush=True)
        figures = await run_level(jobs, clips, level_cfg)
        figures["load_average_before"] = [round(x, 2) for x in load_before]
        figures["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        (results["levels"] if level_cfg.label.endswith("jobs") else results["extras"]).append(figures)
    if args.ledger_users:
        print(f"· ledger: {args.ledger_users} members × {args.ledger_attempts} …", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="hailuo-ledger-") as tmp:
            results["ledger"] = await ledger_benchmark(
                Path(tmp),
                users=args.ledger_users,
                attempts_per_user=args.ledger_attempts,
                database_url=args.ledger_database_url,
                writers=args.ledger_writers,
            )
    results["finished_at"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return results


def big_clips(args: argparse.Namespace, shape: Shape) -> list[Any]:
    """Jobs that all end at the same moment with 20 MiB clips: the deliveries overlap, so the RSS they
    add shows whether memory grows with clip size."""
    jobs = draw(args.bigclips_level, replace(shape, burst_size=max(args.bigclips_level, 1)))
    end = max(job.at for job in jobs) + 30 / args.compression
    size = int(20 * MIB * args.clip_scale)
    return [replace(job, provider_seconds=end - job.at, clip_bytes=size) for job in jobs]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    results = asyncio.run(benchmark(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    print(render(results))
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
