"""Ledger throughput: many members reserving at once, and proof of no overspend, on SQLite (a fresh file)
or PostgreSQL (a fresh database created beside the one the URL names, dropped afterwards).

Drives `SqlJobStore.reserve` directly (the same call and the same quota check `JobService.create`
makes), all attempts concurrently, with limits that bind: each member can afford 7 jobs a day, the
servers and the bot as a whole less than all members together. `writers` stores, each with its own
connections, share the attempts round-robin, as that many bot processes would. Afterwards the ledger
is summed per member, per server and overall and compared with each limit: anything above is overspend.

    .venv/bin/python -m bench.ledger                                         # SQLite, 300 × 20
    .venv/bin/python -m bench.ledger --database-url postgresql://…/postgres --writers 4
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from config_sections import usd_to_micros
from core.errors import QuotaExceeded
from core.jobs import NewJob
from services.quotas import Limits, check_fits
from storage.connect import database_for
from storage.jobs import SqlJobStore
from storage.urls import dialect_of, redact_url

PRICE_USD = "0.28"
USER_DAILY_USD = "2.00"  # 7 jobs at $0.28
GUILD_MONTHLY_USD = "150.00"
GLOBAL_MONTHLY_USD = "300.00"
GUILDS = 3


@contextlib.asynccontextmanager
async def scratch_database(url: str | None, folder: Path) -> AsyncIterator[str]:
    """A URL of an empty database: a new SQLite file in `folder`, or a new PostgreSQL database on the
    server of `url` (the ledger is append-only: a run cannot clean up after itself any other way)."""
    if url is None or dialect_of(url) == "sqlite":
        yield f"sqlite:///{folder / 'ledger.db'}"
        return
    name = f"hailuo_ledger_{secrets.token_hex(4)}"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(f"CREATE DATABASE {name}".encode())
    parts = urlsplit(url)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(f"DROP DATABASE {name} WITH (FORCE)".encode())


async def ledger_benchmark(
    folder: Path,
    *,
    users: int,
    attempts_per_user: int,
    database_url: str | None = None,
    writers: int = 1,
) -> dict[str, float | int | str]:
    async with scratch_database(database_url, folder) as url:
        return await _run(url, users, attempts_per_user, writers)


async def _run(url: str, users: int, attempts_per_user: int, writers: int) -> dict[str, float | int | str]:
    limits = Limits(
        user_daily_usd=usd_to_micros(USER_DAILY_USD),
        guild_monthly_usd=usd_to_micros(GUILD_MONTHLY_USD),
        global_monthly_usd=usd_to_micros(GLOBAL_MONTHLY_USD),
    )
    price = usd_to_micros(PRICE_USD)
    assert price is not None
    databases = [await database_for(url).open() for _ in range(writers)]
    stores = [SqlJobStore(db) for db in databases]
    refused = 0

    async def attempt(n: int, user: int) -> None:
        nonlocal refused
        now = datetime.now(UTC)
        job = NewJob(
            user_id=user, guild_id=1 + user % GUILDS, channel_id=1, interaction_id=None, command="video",
            mode="t2v", quality="standard", duration=6, optimize_prompt=True, model="hailuo-2.3",
            prompt="ledger benchmark", input_image=None, provider="wavespeed", cost_micros=price,
        )  # fmt: skip
        try:
            await stores[n % writers].reserve(job, check_fits(limits, price, now), now=now)
        except QuotaExceeded:
            refused += 1

    order = [user for _ in range(attempts_per_user) for user in range(1, users + 1)]
    started = time.perf_counter()
    try:
        await asyncio.gather(*(attempt(n, user) for n, user in enumerate(order)))
        elapsed = time.perf_counter() - started
        spent = await databases[0].fetchall(
            "SELECT user_id, guild_id, SUM(amount_micros) AS spent FROM ledger WHERE kind = 'reserve'"
            " GROUP BY user_id, guild_id"
        )
    finally:
        for db in databases:
            await db.close()
    per_user = [int(row["spent"]) for row in spent]
    per_guild: dict[int, int] = {}
    for row in spent:
        per_guild[row["guild_id"]] = per_guild.get(row["guild_id"], 0) + int(row["spent"])
    total = sum(per_user)
    over = sum(max(0, s - (usd_to_micros(USER_DAILY_USD) or 0)) for s in per_user)
    over += sum(max(0, s - (usd_to_micros(GUILD_MONTHLY_USD) or 0)) for s in per_guild.values())
    over += max(0, total - (usd_to_micros(GLOBAL_MONTHLY_USD) or 0))
    attempts = len(order)
    return {
        "backend": databases[0].dialect,
        "locking": "advisory locks" if databases[0].dialect == "postgresql" else "one writer",
        "writers": writers,
        "users": users,
        "attempts": attempts,
        "admitted": attempts - refused,
        "refused": refused,
        "seconds": round(elapsed, 3),
        "attempts_per_s": round(attempts / elapsed, 1),
        "admitted_per_s": round((attempts - refused) / elapsed, 1),
        "spent_usd": total / 1e6,
        "limit_usd": float(GLOBAL_MONTHLY_USD),
        "overspend_micros": over,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="PostgreSQL server to create a scratch database on (default: SQLite)")
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--attempts", type=int, default=20, help="reservations each member attempts")
    parser.add_argument("--writers", type=int, default=1, help="stores with their own connections (processes)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hailuo-ledger-") as tmp:
        figures = asyncio.run(
            ledger_benchmark(
                Path(tmp),
                users=args.users,
                attempts_per_user=args.attempts,
                database_url=args.database_url,
                writers=args.writers,
            )
        )
    if args.database_url:
        figures["server"] = redact_url(args.database_url)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
