"""The metrics port (`core.metrics`) on prometheus-client, and Discord's REST traffic counted from aiohttp.

Each `PrometheusMetrics` has a registry of its own rather than prometheus-client's global one: a metric
name can be registered once per registry, and tests run several bots in one process. `ops_server.py`
serves `render()` as `GET /metrics`; the README ("Operating it") lists every metric.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import aiohttp
import yarl
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

from core.jobs import TERMINAL_STATUSES, JobStatus
from core.metrics import NoticeBasis, Operation

# Provider requests: a poll takes tens of milliseconds, a create a second or two, a download of a large
# clip up to minutes.
REQUEST_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# Notice delay: the targets are p50 <= 1.5 s and p99 <= 5 s by polling, p99 < 0.5 s with callbacks.
NOTICE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 15.0, 30.0, 60.0)
# Event-loop lag: healthy is a few milliseconds; the target is p99 under 100 ms at 1,000 jobs.
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

UNFINISHED = [status for status in JobStatus if status not in TERMINAL_STATUSES]
_API_PATH = re.compile(r"/api/v\d+(/.*)$")
# A route's own words (`messages`, `@original`, `oauth2`); ids, tokens and emoji never look like these.
_WORD = re.compile(r"^@?[a-z][a-z0-9_-]{0,31}$")
# The segment after these (and their id) is a credential: it must never become a label value.
_TOKEN_AFTER = {"webhooks", "interactions"}
# Discord's X-RateLimit-Scope values on a 429 (docs/discord.md); anything else is counted as "unknown".
SCOPES = frozenset({"user", "global", "shared"})


def discord_route(url: yarl.URL) -> str | None:
    """The Discord API route of a request, with ids and tokens replaced (`/channels/{id}/messages/{id}`),
    so label values stay few and never carry a secret; None for anything else the session fetches (the
    gateway, attachments on the CDN)."""
    match = _API_PATH.search(url.path)
    if match is None:
        return None
    segments = match.group(1).strip("/").split("/")
    route: list[str] = []
    for index, segment in enumerate(segments):
        if index >= 2 and segments[index - 2] in _TOKEN_AFTER:
            route.append("{token}")
        elif segment.isdigit():
            route.append("{id}")
        elif _WORD.match(segment):
            route.append(segment)
        else:  # an emoji, a token where none was expected: whatever it is, not a label value
            route.append("{param}")
    return "/" + "/".join(route)


class PrometheusMetrics:
    """`core.metrics.Metrics` on a registry of its own, plus the Discord REST counters (`discord_trace`)."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.jobs = Gauge("hailuo_jobs", "Jobs of this process in each unfinished state", ["state"], registry=registry)
        self.jobs_ended = Counter(
            "hailuo_jobs_ended",
            "Jobs ended, by outcome (failed and cancelled are refunded)",
            ["outcome"],
            registry=registry,
        )
        self.reservations = Counter("hailuo_reservations", "Jobs whose cost was reserved", registry=registry)
        self.reserved_micros = Counter(
            "hailuo_reserved_microdollars", "Money reserved for jobs, in micro-dollars", registry=registry
        )
        self.refunds = Counter("hailuo_refunds", "Jobs refunded", registry=registry)
        self.refunded_micros = Counter(
            "hailuo_refunded_microdollars", "Money refunded, in micro-dollars", registry=registry
        )
        self.charged_micros = Counter(
            "hailuo_charged_microdollars", "Money charged for delivered jobs, in micro-dollars", registry=registry
        )
        self.released_micros = Counter(
            "hailuo_released_microdollars",
            "Reserved money released when a delivered job cost less than reserved, in micro-dollars",
            registry=registry,
        )
        self.provider_seconds = Histogram(
            "hailuo_provider_request_duration_seconds",
            "Provider requests, by provider and operation",
            ["provider", "operation"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.provider_errors = Counter(
            "hailuo_provider_errors",
            "Failed provider requests, by provider, operation and failure kind",
            ["provider", "operation", "kind"],
            registry=registry,
        )
        self.polls = Counter("hailuo_provider_polls", "Status polls sent, by provider", ["provider"], registry=registry)
        self.notice = Histogram(
            "hailuo_notice_delay_seconds",
            "From a task's end to the bot noticing it: basis poll is an upper bound (since the previous poll), "
            "basis callback counts from the callback's arrival",
            ["provider", "basis"],
            buckets=NOTICE_BUCKETS,
            registry=registry,
        )
        self.discord_requests = Counter(
            "hailuo_discord_requests",
            "Discord REST requests, by method, route and status (error: no answer)",
            ["method", "route", "status"],
            registry=registry,
        )
        self.discord_rate_limits = Counter(
            "hailuo_discord_rate_limits",
            "Discord REST answers 429, by method, route and X-RateLimit-Scope",
            ["method", "route", "scope"],
            registry=registry,
        )
        self.loop_lag_seconds = Histogram(
            "hailuo_event_loop_lag_seconds",
            "How late the event loop woke a task that slept a known time",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.cooldown_until = Gauge(
            "hailuo_provider_cooldown_until_seconds",
            "When the provider's cool-down ends (Unix seconds; out of rotation while above time(), 0: none yet)",
            ["provider"],
            registry=registry,
        )
        self.poll_share = Gauge(
            "hailuo_poll_budget_per_second",
            "Status polls per second this process may send to the provider: its share of max_polls_per_second",
            ["provider"],
            registry=registry,
        )
        # Shown at zero from the start, so a dashboard sees every state and outcome before the first job.
        for status in UNFINISHED:
            self.jobs.labels(status.value)
        for status in TERMINAL_STATUSES:
            self.jobs_ended.labels(status.value)

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The registry and its content type, in the format the scraper's Accept header asks for: the
        Prometheus text format (0.0.4) unless it asks for OpenMetrics or a newer text version."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type

    # ----- core.metrics.Metrics ------------------------------------------------------------------------

    def job_moved(self, previous: JobStatus | None, status: JobStatus) -> None:
        if previous is not None and previous not in TERMINAL_STATUSES:
            self.jobs.labels(previous.value).dec()
        if status in TERMINAL_STATUSES:
            self.jobs_ended.labels(status.value).inc()
        else:
            self.jobs.labels(status.value).inc()

    def reserved(self, micros: int) -> None:
        self.reservations.inc()
        self.reserved_micros.inc(micros)

    def refunded(self, micros: int) -> None:
        self.refunds.inc()
        self.refunded_micros.inc(micros)

    def settled(self, charged_micros: int, released_micros: int) -> None:
        self.charged_micros.inc(charged_micros)
        self.released_micros.inc(released_micros)

    def provider_call(self, provider: str, operation: Operation, seconds: float, error: str | None) -> None:
        self.provider_seconds.labels(provider, operation).observe(seconds)
        if operation == "poll":
            self.polls.labels(provider).inc()
        if error is not None:
            self.provider_errors.labels(provider, operation, error).inc()

    def notice_delay(self, provider: str, basis: NoticeBasis, seconds: float) -> None:
        self.notice.labels(provider, basis).observe(max(seconds, 0.0))

    def loop_lag(self, seconds: float) -> None:
        self.loop_lag_seconds.observe(seconds)

    def cooldown(self, provider: str, until: float | None) -> None:
        self.cooldown_until.labels(provider).set(until or 0.0)

    def poll_budget(self, provider: str, per_second: float) -> None:
        self.poll_share.labels(provider).set(per_second)

    # ----- Discord's REST traffic ----------------------------------------------------------------------

    def discord_trace(self) -> aiohttp.TraceConfig:
        """For discord.py's `Client(http_trace=...)`: every request its HTTP session makes is counted here."""
        trace = aiohttp.TraceConfig()
        trace.on_request_end.append(self._request_end)
        trace.on_request_exception.append(self._request_failed)
        return trace

    async def _request_end(
        self, _session: aiohttp.ClientSession, _context: SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        route = discord_route(params.url)
        if route is None:
            return
        status = params.response.status
        self.discord_requests.labels(params.method, route, str(status)).inc()
        if status == 429:
            scope = params.response.headers.get("X-RateLimit-Scope", "")
            self.discord_rate_limits.labels(params.method, route, scope if scope in SCOPES else "unknown").inc()

    async def _request_failed(
        self, _session: aiohttp.ClientSession, _context: SimpleNamespace, params: aiohttp.TraceRequestExceptionParams
    ) -> None:
        route = discord_route(params.url)
        if route is not None:
            self.discord_requests.labels(params.method, route, "error").inc()
