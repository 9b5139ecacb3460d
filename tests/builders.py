"""One builder for the services under test: a real store (SQLite, or the database at `database_url`), the
given providers, plain settings."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.metrics import NO_METRICS, Metrics
from core.provider import Provider
from services.jobs import JobService, build_job_services
from services.pricing import PriceTable
from services.quotas import Limits, QuotaPolicy
from services.routing import ProviderRouter
from services.run import Crew, JobSettings
from services.runner import JobRunner
from storage.connect import database_for
from storage.jobs import SqlJobStore

# What config.toml ships, for the limits tests do not care about.
DEFAULT_QUOTAS = QuotaPolicy(Limits(user_daily_videos=10, user_max_in_flight=2))


@dataclass
class Services:
    jobs: JobService  # what adapters call
    runner: JobRunner  # what the bot's start and stop call
    store: SqlJobStore
    router: ProviderRouter
    crew: Crew


@contextlib.asynccontextmanager
async def built_services(
    data_dir: Path,
    providers: Mapping[str, Provider],
    prices: Mapping[str, Mapping[str, Mapping[str, int]]],
    *,
    quotas: QuotaPolicy = DEFAULT_QUOTAS,
    pins: Mapping[int, list[str]] | None = None,
    failure_threshold: int = 3,
    cooldown_seconds: float = 300,
    metrics: Metrics = NO_METRICS,
    database_url: str | None = None,
    **settings: Any,
) -> AsyncIterator[Services]:
    """The job services over a fresh store (SQLite in `data_dir` unless `database_url` names another); the
    providers are closed at the end."""
    async with database_for(database_url or f"sqlite:///{data_dir / 'jobs.db'}") as db:
        store = SqlJobStore(db)
        router = ProviderRouter(
            providers, pins=pins or {}, failure_threshold=failure_threshold, cooldown_seconds=cooldown_seconds
        )
        price_table = PriceTable(prices, free=[name for name, p in providers.items() if p.capabilities.free])
        jobs, runner = build_job_services(
            store, router, price_table, quotas, JobSettings(data_dir=data_dir, **settings), metrics=metrics
        )
        try:
            yield Services(jobs, runner, store, router, runner.crew)
        finally:
            await runner.shutdown()
            for provider in providers.values():
                await provider.aclose()
