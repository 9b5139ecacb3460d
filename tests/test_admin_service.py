"""Admin controls below Discord: budget pools never overdraw under concurrent commands (the pool is drawn
in the same atomic reservation as every other limit), alerts go once per threshold, an empty pool falls
back or refuses as told, and the audit and grants are append-only."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cogs.admin_views import render_audit
from core.admin import AuditEntry, AuditLine
from core.errors import QuotaExceeded
from core.spec import GenerationSpec
from providers.wavespeed import WaveSpeedProvider
from services.admin import AdminService
from services.intake import Requester, Reservation
from services.jobs import JobService, build_job_services
from services.notices import LogChannel
from services.pricing import PriceTable, format_usd
from services.quotas import Limits, QuotaPolicy, period_key
from services.routing import ProviderRouter
from services.run import JobSettings
from storage.admin import SqlAdminStore
from storage.connect import database_for
from storage.jobs import SqlJobStore
from storage.sql import ConstraintError

PRICES = {"wavespeed": {"hailuo-2.3": {"t2v-standard-6s": 280_000}}}
SPEC = GenerationSpec(mode="t2v", quality="standard", duration=6, prompt="a cat")
GUILD, CHANNEL, LOG_CHANNEL, ADMIN = 10, 20, 30, 99


@dataclass
class AdminRig:
    jobs: JobService
    store: SqlJobStore
    admin_store: SqlAdminStore
    admin: AdminService
    posted: list[tuple[int, str]]  # what went to log channels


@contextlib.asynccontextmanager
async def admin_rig(data_dir: Path, db_url: str, policy: QuotaPolicy) -> AsyncIterator[AdminRig]:
    """The job services with admin controls, as app.py wires them; jobs are only reserved, never run."""
    async with database_for(db_url) as db:
        store, admin_store, notices = SqlJobStore(db), SqlAdminStore(db), LogChannel()
        posted: list[tuple[int, str]] = []

        async def send(channel_id: int, text: str) -> None:
            posted.append((channel_id, text))

        notices.attach(send)
        provider = WaveSpeedProvider("ws-test-key", "http://127.0.0.1:9", timeout=2)
        router = ProviderRouter({"wavespeed": provider}, pins={}, failure_threshold=3, cooldown_seconds=300)
        jobs, runner = build_job_services(
            store,
            router,
            PriceTable(PRICES, free=[]),
            policy,
            JobSettings(data_dir=data_dir),
            admin=admin_store,
            notices=notices,
        )
        try:
            yield AdminRig(jobs, store, admin_store, AdminService(admin_store, policy, notices), posted)
        finally:
            await runner.shutdown()
            await provider.aclose()


def member(user_id: int) -> Requester:
    return Requester(user_id=user_id, guild_id=GUILD, channel_id=CHANNEL)


async def fifty_at_once(rig: AdminRig) -> list[Reservation | BaseException]:
    """50 members' /video in the pool's channel at the same moment."""
    return await asyncio.gather(
        *(rig.jobs.reserve(SPEC, member(user_id), command="video") for user_id in range(1, 51)),
        return_exceptions=True,
    )


async def pool_spent(rig: AdminRig) -> int:
    [pool] = await rig.admin_store.pools(GUILD)
    return await rig.admin_store.pool_spent(pool.id, period_key(pool.period, datetime.now(UTC)))


def alert_percents(rig: AdminRig) -> list[int]:
    return [int(text.split("used ")[1].split(" %")[0]) for _, text in rig.posted if text.startswith("Budget pool")]


async def test_a_pool_never_overdraws_under_concurrent_reservations(tmp_path: Path, db_url: str) -> None:
    # Members' own limits are generous: only the pool ($2.00 = 7 jobs at $0.28) can stop them.
    async with admin_rig(tmp_path, db_url, QuotaPolicy(Limits(user_daily_videos=10, user_max_in_flight=2))) as rig:
        await rig.admin.set_log_channel(GUILD, ADMIN, LOG_CHANNEL)
        await rig.admin.create_pool(GUILD, ADMIN, "brainstorm", "2.00", "week", CHANNEL, None, "refuse")
        results = await fifty_at_once(rig)

        admitted = [r for r in results if isinstance(r, Reservation)]
        refused = [r for r in results if isinstance(r, QuotaExceeded)]
        spent = await pool_spent(rig)
        print(
            f"\npool $2.00, jobs $0.28, 50 concurrent: admitted {len(admitted)}, refused {len(refused)}, "
            f"pool spent {format_usd(spent)}, alerts {alert_percents(rig)}"
        )
        assert (len(admitted), len(refused)) == (7, 43)
        assert {error.limit for error in refused} == {"pool"}
        assert spent == 7 * 280_000 == (await rig.store.ledger_totals()).reserved
        # Paid by the pool: nothing counts against the members' own dollars.
        usage = await rig.store.usage(1, GUILD)
        assert (usage.user_day_micros, usage.user_month_micros) == (0, 0)
        # 98 % spent: the 50 % and 80 % alerts went out once each, 100 % not yet.
        assert alert_percents(rig) == [50, 80]
        assert all(channel == LOG_CHANNEL for channel, _ in rig.posted)


async def test_an_empty_pool_falls_back_to_own_allowances_within_the_servers_budget(
    tmp_path: Path, db_url: str
) -> None:
    # The server's $3.00 counts pool draws too: 7 jobs from the pool, then 3 from members' allowances.
    policy = QuotaPolicy(Limits(user_daily_videos=10, user_max_in_flight=2, guild_monthly_usd=3_000_000))
    async with admin_rig(tmp_path, db_url, policy) as rig:
        await rig.admin.create_pool(GUILD, ADMIN, "brainstorm", "2.00", "week", CHANNEL, None, "personal")
        results = await fifty_at_once(rig)

        admitted = [r for r in results if isinstance(r, Reservation)]
        from_pool = [r for r in admitted if not r.note]
        personal = [r for r in admitted if r.note]
        spent = await pool_spent(rig)
        print(
            f"\npool $2.00 (personal when empty), server $3.00, 50 concurrent: from the pool {len(from_pool)}, "
            f"from own allowances {len(personal)}, refused {len(results) - len(admitted)}, "
            f"pool spent {format_usd(spent)}"
        )
        assert (len(from_pool), len(personal)) == (7, 3)
        assert spent == 7 * 280_000
        assert (await rig.store.ledger_totals()).reserved == 10 * 280_000
        assert personal[0].note == (
            "The brainstorm budget has $0.04 left this week and this video costs $0.28. "
            "This one comes from your own allowance."
        )
        refused = [r for r in results if isinstance(r, QuotaExceeded)]
        assert {error.limit for error in refused} == {"guild_monthly_usd"}


async def test_pool_alerts_go_once_per_threshold_and_period(tmp_path: Path, db_url: str) -> None:
    async with admin_rig(tmp_path, db_url, QuotaPolicy(Limits(user_max_in_flight=2))) as rig:
        await rig.admin.set_log_channel(GUILD, ADMIN, LOG_CHANNEL)
        await rig.admin.create_pool(GUILD, ADMIN, "tiny", "0.56", "day", CHANNEL, None, "refuse")
        for user_id in (1, 2):
            await rig.jobs.reserve(SPEC, member(user_id), command="video")
        with pytest.raises(QuotaExceeded):
            await rig.jobs.reserve(SPEC, member(3), command="video")
        assert alert_percents(rig) == [50, 80, 100]


async def test_the_audit_and_grants_are_append_only(tmp_path: Path, db_url: str) -> None:
    async with admin_rig(tmp_path, db_url, QuotaPolicy()) as rig:
        await rig.admin.set_limit(GUILD, ADMIN, "server", GUILD, "user_daily_videos", "5")
        await rig.admin.grant(GUILD, ADMIN, 1, "1.00", "contest")
        db = rig.store.db
        for statement in (
            "UPDATE audit SET after = 'nothing'",
            "DELETE FROM audit",
            "UPDATE grants SET amount_micros = 1",
            "DELETE FROM grants",
        ):
            with pytest.raises(ConstraintError, match="append-only"):
                async with db.transaction() as conn:
                    await conn.execute(statement)
        [granted, limited] = await rig.admin.audit(GUILD, 10)
        assert (limited.line.action, limited.line.before, limited.line.after) == ("set-limit", "inherited", "5")
        assert (granted.line.action, granted.line.after, granted.line.reason) == ("grant", "$1.00", "contest")


def test_a_long_audit_fits_one_discord_message_and_says_what_it_left_out() -> None:
    long_reason = "because " * 40
    entries = [
        AuditEntry(datetime.now(UTC), AuditLine(GUILD, ADMIN, "freeze", f"user {n}", "", "frozen", long_reason))
        for n in range(50)
    ]
    text = render_audit(entries)
    assert len(text) <= 2000
    shown = text.count("**freeze**")
    assert 0 < shown < 50 and text.endswith(f"… and {50 - shown} more.")
    assert render_audit(entries[:2]).count("**freeze**") == 2
