"""Ledger throughput: many members reserving at once on one SQLite file, and proof of no overspend.

Drives `SqlJobStore.reserve` directly (the same call and the same quota check `JobService.create`
makes), all attempts concurrently, with limits that bind: each member can afford 7 jobs a day, the
servers and the bot as a whole less than all members together. Afterwards the ledger is summed per
member, per server and overall and compared with each limit: anything above is overspend.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

from core.errors import QuotaExceeded
from core.jobs import NewJob
from services.quotas import Limits, check_fits
from settings import usd_to_micros
from storage.db import SqliteDatabase
from storage.jobs import SqlJobStore

PRICE_USD = "0.28"
USER_DAILY_USD = "2.00"  # 7 jobs at $0.28
GUILD_MONTHLY_USD = "150.00"
GLOBAL_MONTHLY_USD = "300.00"
GUILDS = 3


async def ledger_benchmark(folder: Path, *, users: int, attempts_per_user: int) -> dict[str, float | int]:
    limits = Limits(
        user_daily_usd=usd_to_micros(USER_DAILY_USD),
        guild_monthly_usd=usd_to_micros(GUILD_MONTHLY_USD),
        global_monthly_usd=usd_to_micros(GLOBAL_MONTHLY_USD),
    )
    price = usd_to_micros(PRICE_USD)
    assert price is not None
    db = await SqliteDatabase(folder / "ledger.db").open()
    repo = SqlJobStore(db)
    refused = 0

    async def attempt(user: int) -> None:
        nonlocal refused
        now = datetime.now(UTC)
        job = NewJob(
            user_id=user, guild_id=1 + user % GUILDS, channel_id=1, interaction_id=None, command="video",
            mode="t2v", quality="standard", duration=6, optimize_prompt=True, model="hailuo-2.3",
            prompt="ledger benchmark", input_image=None, provider="wavespeed", cost_micros=price,
        )  # fmt: skip
        try:
            await repo.reserve(job, check_fits(limits, price, now), now=now)
        except QuotaExceeded:
            refused += 1

    order = [user for _ in range(attempts_per_user) for user in range(1, users + 1)]
    started = time.perf_counter()
    try:
        await asyncio.gather(*(attempt(user) for user in order))
        elapsed = time.perf_counter() - started
        spent = await db.fetchall(
            "SELECT user_id, guild_id, SUM(amount_micros) AS spent FROM ledger WHERE kind = 'reserve'"
            " GROUP BY user_id, guild_id"
        )
    finally:
        await db.close()
    per_user = [row["spent"] for row in spent]
    per_guild: dict[int, int] = {}
    for row in spent:
        per_guild[row["guild_id"]] = per_guild.get(row["guild_id"], 0) + row["spent"]
    total = sum(per_user)
    over = sum(max(0, s - (usd_to_micros(USER_DAILY_USD) or 0)) for s in per_user)
    over += sum(max(0, s - (usd_to_micros(GUILD_MONTHLY_USD) or 0)) for s in per_guild.values())
    over += max(0, total - (usd_to_micros(GLOBAL_MONTHLY_USD) or 0))
    attempts = len(order)
    return {
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
