"""The workers benchmark: PostgreSQL, one gateway and 1, 2 or 4 worker processes, with 1,000 to 10,000 jobs
at the provider at once. Prints a markdown table and writes JSON.

    .venv/bin/python -m bench.workers                                  # 1, 2, 4 workers × 1,000, 5,000, 10,000
    .venv/bin/python -m bench.workers --workers 4 --jobs 10000         # one level
    .venv/bin/python -m bench.workers --quick                          # a tiny run, about a minute

A throw-away PostgreSQL server is started the way the tests start theirs (tests/pg_server.py), with a
scratch database per level. Provider time is compressed by `--compression`: every task ends 30–90 s ÷ c
after the moment the last of the level's jobs reached the provider (see bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.clips import load_clips
from bench.ledger import ledger_benchmark, scratch_database
from bench.run import RESULTS, ROOT, machine
from bench.workers_figures import collect
from bench.workers_level import WorkersConfig, run_workers_level, with_label
from bench.workers_table import ratios, render
from bench.workload import Job, Shape, draw
from tests.pg_server import PgServer, find_binaries


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 and 2 workers × 40 jobs at ×20, a small ledger")
    parser.add_argument("--workers", help="worker processes per level, comma-separated (default 1,2,4)")
    parser.add_argument("--jobs", help="jobs in flight per level, comma-separated (default 1000,5000,10000)")
    parser.add_argument(
        "--polling", help="extra levels with callbacks off, as WORKERSxJOBS, comma-separated (default 1x1000,4x10000)"
    )
    parser.add_argument("--compression", type=float, help="provider time 30–90 s divided by this (default 1)")
    parser.add_argument(
        "--burst-period", type=float, help="seconds between bursts of 200 commands (default 5; quick 1.5)"
    )
    parser.add_argument(
        "--animate-share",
        type=float,
        default=0.0,
        help="share of /animate among the commands (default 0: see bench/README.md)",
    )
    parser.add_argument("--clip-kib", type=int, default=64, help="every job's clip (tiny: delivery is not measured)")
    parser.add_argument(
        "--bot-setting",
        action="append",
        default=[],
        help='a [bot] line for every process, e.g. "max_concurrent_deliveries = 64"',
    )
    parser.add_argument("--concurrency", type=int, help="workers.concurrency (default: the level's job count)")
    parser.add_argument("--ledger-users", type=int, help="the ledger level's members (default 300; 0 = skip)")
    parser.add_argument("--ledger-attempts", type=int, default=20, help="reservations each member attempts")
    parser.add_argument("--out", type=Path, default=RESULTS / "workers.json")
    parser.add_argument("--bot-dir", type=Path, default=ROOT, help="the bot tree to run (bot.py in it)")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--render", type=Path, help="print the tables of a results file and exit")
    args = parser.parse_args(argv)
    # An empty list runs no such level (`--jobs "" --polling ""`: the ledger level alone).
    args.workers = _ints(args.workers if args.workers is not None else ("1,2" if args.quick else "1,2,4"))
    args.jobs = _ints(args.jobs if args.jobs is not None else ("40" if args.quick else "1000,5000,10000"))
    polling = args.polling if args.polling is not None else ("" if args.quick else "1x1000,4x10000")
    args.polling = [tuple(int(x) for x in level.split("x")) for level in polling.split(",") if level]
    args.compression = args.compression or (20.0 if args.quick else 1.0)
    args.burst_period = args.burst_period or (1.5 if args.quick else 5.0)
    args.ledger_users = args.ledger_users if args.ledger_users is not None else (50 if args.quick else 300)
    return args


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def plan(args: argparse.Namespace) -> list[tuple[int, int, bool]]:
    """(workers, jobs, callbacks) per level: the matrix with callbacks, then the polling rows."""
    levels = [(w, n, True) for n in args.jobs for w in args.workers]
    return levels + [(w, n, False) for w, n in args.polling]


def workload(n: int, args: argparse.Namespace) -> list[Job]:
    """bench/workload.py's commands (bursts of 200 within a second every 1.5 s, 60 % /video, 40 % /animate),
    each with its provider time drawn in 30–90 s ÷ c, counted from the provider's release (see HeldWaveSpeed)."""
    shape = Shape(
        compression=args.compression, burst_period=args.burst_period, animate_share=args.animate_share, seed=args.seed
    )
    return draw(n, shape)


async def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    bindir, source = find_binaries()
    if bindir is None:
        raise SystemExit(f"no PostgreSQL to run: {source}")
    clip = load_clips(RESULTS / "clips", [args.clip_kib * 1024])[args.clip_kib * 1024]
    results: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join(["python -m bench.workers", *sys.argv[1:]]),
        "machine": machine(),
        "postgresql": source,
        "compression": args.compression,
        "burst_period_s": args.burst_period,
        "animate_share": args.animate_share,
        "clip_bytes": len(clip),
        "bot_settings": args.bot_setting,
        "levels": [],
    }
    server = PgServer(bindir).start()
    try:
        postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
        for workers, n, callbacks in plan(args):
            results["levels"].append(await _level(args, server, postmaster, clip, workers, n, callbacks))
            _write(args.out, results)  # a long matrix keeps what it has measured so far
        if args.ledger_users:
            results["ledger"] = await _ledgers(args, server)
    finally:
        server.remove()
    results["ratios"] = ratios(results["levels"])
    results["finished_at"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return results


async def _level(
    args: argparse.Namespace, server: PgServer, postmaster: int, clip: bytes, workers: int, n: int, callbacks: bool
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hailuo-bench-db-") as tmp:
        async with scratch_database(server.url(), Path(tmp)) as url:
            cfg = WorkersConfig(
                workers=workers,
                compression=args.compression,
                callbacks=callbacks,
                bot_dir=args.bot_dir.resolve(),
                database_url=url,
                postmaster_pid=postmaster,
                clip=clip,
                log_dir=args.out.parent / "logs",
                concurrency=args.concurrency,
                bot_settings=tuple(args.bot_setting),
            )
            cfg = with_label(cfg, n)
            load_before = os.getloadavg()
            print(f"· {cfg.label} …", file=sys.stderr, flush=True)
            figures = collect(await run_workers_level(workload(n, args), cfg))
    figures["load_average_before"] = [round(x, 2) for x in load_before]
    figures["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(
        f"  delivered {figures['delivered']}, lost {figures['lost']}, "
        f"{figures['jobs_per_s'] or 0:.1f} jobs/s, notice p99 {figures['notice_s']['p99'] or 0:.2f} s",
        file=sys.stderr,
        flush=True,
    )
    return figures


async def _ledgers(args: argparse.Namespace, server: PgServer) -> list[dict[str, Any]]:
    """bench/ledger.py's level (members × attempts at once, limits that bind) on SQLite and on this server."""
    runs = []
    for url, writers in ((None, 1), (server.url(), 1), (server.url(), 4)):
        print(f"· ledger: {(url and 'postgresql') or 'sqlite'}, {writers} writer(s) …", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="hailuo-ledger-") as tmp:
            runs.append(
                await ledger_benchmark(
                    Path(tmp),
                    users=args.ledger_users,
                    attempts_per_user=args.ledger_attempts,
                    database_url=url,
                    writers=writers,
                )
            )
    return runs


def _write(out: Path, results: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.render:
        print(render(json.loads(args.render.read_text(encoding="utf-8"))))
        return 0
    results = asyncio.run(benchmark(args))
    _write(args.out, results)
    print(render(results))
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
