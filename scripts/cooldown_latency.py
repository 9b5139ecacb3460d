"""How long another process takes to learn of a provider cool-down (README "Workers").

    python scripts/cooldown_latency.py --database-url postgresql://user@host:5432/postgres [--rounds 200]

Two "processes" (each its own connection pool, listening connection, router and SharedCooldowns, in one
Python process) on a scratch database created on that server and dropped after. Each round one takes the
provider out (as an auth failure would), then brings it back (as a good answer would); the time is from the
router's decision to the other router's view changing: the write, its commit, NOTIFY, and the other's
re-read of the table. Prints the median, p95 and max of each direction, in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.tasks import FailureKind
from services.cooldowns import SharedCooldowns
from services.routing import ProviderRouter
from storage.cooldowns import SqlCooldownBoard
from storage.postgres import PgDatabase

SCRATCH = "hailuo_cooldown_latency"


class Stopwatch:
    """The metrics port's cool-down gauge, noting when the view changed (the rest of the port: nothing)."""

    def __init__(self) -> None:
        self.changed = asyncio.Event()
        self.at = 0.0

    def cooldown(self, provider: str, until: float | None) -> None:
        self.at = time.perf_counter()
        self.changed.set()

    def __getattr__(self, name: str) -> object:
        return lambda *args, **kwargs: None


async def one_way(taker: ProviderRouter, heard: Stopwatch, act: str) -> float:
    heard.changed.clear()
    began = time.perf_counter()
    if act == "out":
        taker.record_failure("wavespeed", FailureKind.AUTH)
    else:
        taker.record_success("wavespeed")
    await asyncio.wait_for(heard.changed.wait(), 10)
    return (heard.at - began) * 1000


async def measure(url: str, rounds: int) -> dict[str, list[float]]:
    async with PgDatabase(url) as first_db, PgDatabase(url) as second_db:
        routers = [ProviderRouter({"wavespeed": None}) for _ in range(2)]  # type: ignore[dict-item]
        watches = [Stopwatch(), Stopwatch()]
        shared = [
            SharedCooldowns(router, SqlCooldownBoard(db), metrics=watch)  # type: ignore[arg-type]
            for router, db, watch in zip(routers, (first_db, second_db), watches, strict=True)
        ]
        for each in shared:
            await each.start()
        await asyncio.sleep(0.5)  # both listening
        times: dict[str, list[float]] = {"out": [], "back": []}
        try:
            for _ in range(rounds):
                for act in ("out", "back"):
                    times[act].append(await one_way(routers[0], watches[1], act))
        finally:
            for each in shared:
                await each.stop()
        return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="a PostgreSQL server (a scratch database is made on it)")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the router's WARNING at every take-out, 200 times over
    server = args.database_url
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {SCRATCH}".encode())
        conn.execute(f"CREATE DATABASE {SCRATCH}".encode())
    scratch = urlunsplit(urlsplit(server)._replace(path=f"/{SCRATCH}"))
    try:
        times = asyncio.run(measure(scratch, args.rounds))
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {SCRATCH} WITH (FORCE)".encode())
    for act, values in times.items():
        values.sort()
        p95 = values[int(len(values) * 0.95) - 1]
        median = statistics.median(values)
        print(f"{act:5} n={len(values)}  median {median:.1f} ms  p95 {p95:.1f} ms  max {values[-1]:.1f} ms")


if __name__ == "__main__":
    main()
