"""The composition root: settings → plain values → store, providers, services, the callback receiver,
and the operator's endpoint with its metrics.

Nothing below this module reads settings: services get plain values (`JobSettings`, `QuotaPolicy`,
prices), providers get their own section and a `Wiring`, and the store is opened here and closed last.
Services report to the metrics port (`core.metrics`): the prometheus-backed adapter when `[ops] port` is
set, the no-op one otherwise.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import logsafe
from core.metrics import NO_METRICS, Metrics
from core.provider import Provider, WebhookProvider
from core.store import JobStore
from engine.queue import JobQueue
from ops_metrics import PrometheusMetrics
from ops_server import OpsServer, Readiness, serving
from providers.kit.entry import PaidSection
from providers.registry import build_providers
from services.admin import AdminService
from services.contests import ContestService
from services.cooldowns import SharedCooldowns
from services.jobs import JobService, build_job_services
from services.moderation import ModerationService
from services.notices import LogChannel
from services.observed import observe_providers
from services.polling import PollPolicy
from services.pricing import PriceTable
from services.quotas import LIMIT_KEYS, Limits, QuotaBook, QuotaPolicy
from services.review import ReviewService
from services.routing import ProviderRouter
from services.run import JobSettings
from services.runner import JobRunner
from settings import Config, QuotasSection, Settings, check_prices
from storage.admin import SqlAdminStore
from storage.connect import database_for
from storage.contests import SqlContestStore
from storage.cooldowns import SqlCooldownBoard
from storage.history import SqlHistory
from storage.jobs import SqlJobStore
from storage.moderation import SqlModerationStore, SqlReviewStore
from storage.sql import Database
from storage.urls import redact_url
from webhooks import WebhookReceiver, connection_limits

log = logging.getLogger("hailuo")

# WaveSpeed echoes the job's input (our image as a data URL) in its callback; the path token is checked
# before any of the body is read.
CALLBACK_MAX_BODY = 32 * 1024 * 1024


@dataclass
class App:
    settings: Settings
    db: Database
    store: SqlJobStore
    providers: dict[str, Provider]
    jobs: JobService
    runner: JobRunner
    quotas: QuotaBook
    receiver: WebhookReceiver | None
    admin: AdminService
    notices: LogChannel  # the Discord client attaches how to post to a log channel
    history: SqlHistory  # /history's queries and the kept clips' rows (for /show)
    moderation: ModerationService
    review: ReviewService
    contests: ContestService
    # The operator's view: what services report to (NO_METRICS when [ops] is off), the same as a
    # Prometheus registry (None when off), what /healthz waits for, and the endpoint itself.
    metrics: Metrics = NO_METRICS
    prometheus: PrometheusMetrics | None = None
    readiness: Readiness = field(default_factory=Readiness)
    ops: OpsServer | None = None
    # The job engine (workers.separate): gateways hand jobs over through it, workers run them from it.
    queue: JobQueue | None = None


@asynccontextmanager
async def open_app(settings: Settings, *, ops: bool = True, worker: bool = False) -> AsyncIterator[App]:
    """Open the store, build providers and services, start the callback receiver when configured, and
    the operator's endpoint when `[ops] port` is set and `ops` (False: a one-off run, `sync` or `generate`,
    which must not take the port of a bot already running)."""
    section = settings.config.ops
    prometheus = PrometheusMetrics() if ops and section.port else None
    readiness = Readiness()
    if worker:  # a worker never connects to the gateway: it is ready once it can reach Discord's REST API
        readiness.up("gateway")
        readiness.down("discord", "not logged in yet")
    # Listening before the database opens, so /healthz can say that start-up is under way.
    async with (
        serving(readiness, prometheus, section.listen_host, section.port) as server,
        _compose(settings, prometheus or NO_METRICS, readiness, worker=worker) as app,
    ):
        app.prometheus, app.ops = prometheus, server
        yield app


@asynccontextmanager
async def _compose(
    settings: Settings, metrics: Metrics, readiness: Readiness, *, worker: bool = False
) -> AsyncIterator[App]:
    cfg = settings.config
    db = await database_for(settings.database_url).open()
    readiness.up("database")  # open and migrated
    log.info("database: %s", redact_url(settings.database_url))
    store = SqlJobStore(db)
    providers: dict[str, Provider] = {}
    receiver: WebhookReceiver | None = None
    runner: JobRunner | None = None
    queue: JobQueue | None = None
    cooldowns: SharedCooldowns | None = None
    try:
        if cfg.workers.separate:
            workers = cfg.workers
            queue = JobQueue(
                settings.database_url,
                heartbeat_seconds=workers.heartbeat_seconds,
                stalled_after=workers.stalled_after_seconds,
            )
            await queue.open()
        public_url = cfg.webhooks.public_base_url.rstrip("/")
        token = await webhook_path_token(store) if public_url else None
        callback_url_for = (lambda name: f"{public_url}/webhooks/{name}/{token}") if token else None
        names = settings.enabled_providers()
        providers = build_providers(
            names,
            {name: cfg.providers.section(name) for name in names},
            settings.secrets.secret,
            data_dir=cfg.bot.data_dir,
            process_tag=process_tag(cfg),
            callback_url_for=callback_url_for,
        )
        paid_offers = {n: p.capabilities.offers for n, p in providers.items() if not p.capabilities.free}
        check_prices(cfg, paid_offers, settings.config_path.name)
        router = ProviderRouter(
            # Each request timed when metrics are on; the receiver keeps the bare providers.
            observe_providers(providers, metrics) if metrics is not NO_METRICS else providers,
            pins={guild: section.providers for guild, section in cfg.guilds.items()},
            failure_threshold=cfg.providers.failure_threshold,
            cooldown_seconds=cfg.providers.cooldown_seconds,
        )
        # Cool-downs hold for every process on this database, and across a restart: read before any job is routed.
        cooldowns = SharedCooldowns(router, SqlCooldownBoard(db), metrics=metrics)
        await cooldowns.start()
        prices = PriceTable(cfg.prices, free=[n for n, p in providers.items() if p.capabilities.free])
        # Callbacks arrive only when the bot has a public URL *and* the provider can tell a genuine one
        # from a forgery; the rest are polled densely, whatever their keys or secrets say.
        with_callbacks: dict[str, WebhookProvider] = {
            name: provider
            for name, provider in providers.items()
            if callback_url_for is not None
            and provider.capabilities.verifies_callbacks
            and isinstance(provider, WebhookProvider)
        }
        policy = quota_policy(cfg.quotas)
        admin_store = SqlAdminStore(db)
        notices = LogChannel()
        history = SqlHistory(db)
        moderation = ModerationService(
            SqlModerationStore(db), admin_store, notices, strikes_to_freeze=cfg.moderation.strikes_to_freeze
        )
        review = ReviewService(SqlReviewStore(db))
        jobs, runner = build_job_services(
            store,
            router,
            prices,
            policy,
            job_settings(cfg, providers),
            # Read at each job's start: a provider counts only once the receiver can verify its callbacks.
            # A worker has no receiver: a gateway's verifies the callbacks and forwards them (engine.queue).
            callbacks_live=(lambda name: name in with_callbacks)
            if worker
            else (lambda name: receiver is not None and receiver.ready(name)),
            admin=admin_store,
            notices=notices,
            output_records=history,
            moderation=moderation,
            review=review,
            metrics=metrics,
            handoff=queue if not worker else None,  # a worker runs what it takes; a gateway hands over
        )
        # Gateways receive callbacks; a worker has no receiver: the gateway forwards each verified callback
        # to the worker running its job.
        if with_callbacks and token is not None and not worker:
            receiver = WebhookReceiver(
                with_callbacks,
                _waker(runner, queue),
                path_token=token,
                host=cfg.webhooks.listen_host,
                port=cfg.webhooks.listen_port,
                max_body=CALLBACK_MAX_BODY,
                limits=connection_limits(cfg.webhooks),
            )
            await receiver.start()  # a provider that is down is retried later; it never stops the bot
        log.info("providers in use: %s", ", ".join(providers) or "none")
        quotas = QuotaBook(store, policy, admin_store)
        admin = AdminService(admin_store, policy, notices)
        contests = ContestService(SqlContestStore(db))
        yield App(
            settings,
            db,
            store,
            providers,
            jobs,
            runner,
            quotas,
            receiver,
            admin,
            notices,
            history,
            moderation,
            review,
            contests,
            metrics=metrics,
            readiness=readiness,
            queue=queue,
        )
    finally:
        if runner is not None:
            await runner.shutdown()  # jobs stop where they stand; the next start resumes them
        if receiver is not None:
            await receiver.stop()
        for provider in providers.values():
            await provider.aclose()
        if queue is not None:
            await queue.close()
        if cooldowns is not None:
            await cooldowns.stop()
        readiness.down("database", "closed")
        await db.close()


def job_settings(cfg: Config, providers: dict[str, Provider]) -> JobSettings:
    bot = cfg.bot
    sections = {name: cfg.providers.section(name) for name in providers}
    return JobSettings(
        data_dir=bot.data_dir,
        process_tag=process_tag(cfg),
        deadline_seconds=bot.job_deadline_seconds,
        max_output_bytes=bot.max_output_mib * 1024 * 1024,
        typical_seconds={name: section.typical_seconds for name, section in sections.items()},
        edit_interval=bot.progress_edit_interval,
        edits_per_second=bot.progress_edits_per_second,
        poll_policy=PollPolicy(dense=bot.poll_dense_seconds, sparse_cap=bot.poll_sparse_cap_seconds),
        polls_per_second={
            name: section.max_polls_per_second for name, section in sections.items() if isinstance(section, PaidSection)
        },
        max_concurrent_deliveries=bot.max_concurrent_deliveries,
        max_concurrent_reencodes=bot.max_concurrent_reencodes,
        keep_outputs_days=cfg.storage.keep_outputs_days,
        max_outputs_bytes=int(cfg.storage.max_outputs_gib * 1024**3),
    )


def process_tag(cfg: Config) -> str:
    """This process's name in the shared data directory, with workers (its host and pid); "" alone."""
    return f"{socket.gethostname()}-{os.getpid()}" if cfg.workers.separate else ""


def quota_policy(quotas: QuotasSection) -> QuotaPolicy:
    """Config limits as plain values; a role overrides only the keys its table sets."""
    base = Limits(**{key: getattr(quotas, key) for key in LIMIT_KEYS})
    roles = {
        role: {key: getattr(o, key) for key in LIMIT_KEYS if key in o.model_fields_set}
        for role, o in quotas.roles.items()
    }
    return QuotaPolicy(base, roles, max_variants=quotas.max_variants)


async def webhook_path_token(store: JobStore) -> str:
    """A secret path segment for callback URLs, made once and kept: it guards providers that do not
    sign their callbacks (MiniMax), and makes every other URL unguessable too."""
    made = secrets.token_urlsafe(24)
    # Masked in every log line from here on: before it is stored, since the database driver logs parameters.
    logsafe.register(made)
    # Processes starting together each make one; the first stored is the one every process uses.
    token = await store.claim_meta("webhook_path_token", made)
    logsafe.register(token)
    return token


def _waker(runner: JobRunner, queue: JobQueue | None) -> Callable[[str, str], Awaitable[bool]]:
    async def wake(provider: str, task_id: str) -> bool:
        if runner.wake(provider, task_id):
            return True
        if queue is None:
            return False
        await queue.wake(provider, task_id)  # whichever worker runs it polls it now
        return True

    return wake
