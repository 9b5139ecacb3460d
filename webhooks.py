"""The webhook receiver: providers' "your task ended" callbacks, turned into "poll this task now".

Runs only when the admin configures a public base URL. A callback is never trusted for the outcome, the
output or money: after it passes its provider's signature check it only wakes the job runner, which
polls the provider as usual. So a lost, late or duplicated callback costs at most some latency.

Defences, in order: a cap on open connections and deadlines for the request head, the idle wait between
requests and the body (webhook_guard.py: idle or slow clients cannot hold the bot's file descriptors); an
unguessable path token (a wrong one gets the same 404 as any unknown path, before the body is read); a
body size cap; a structure check before any JSON is parsed (nesting, item count); the provider's
signature and timestamp check; and a duplicate filter on the provider's delivery id. Bodies, tokens and
secrets never reach the logs (the access log is off because it would print the path, and with it the
token), and every refusal is logged through a throttle: a flood costs a line a minute, not a line each.

It listens on 127.0.0.1 unless told otherwise: a reverse proxy on the same machine is the way in.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from core.provider import ProviderError, WebhookProvider, WebhookRejected, WebhookSignal
from providers.kit.http import sanitize
from providers.kit.json_limits import JsonTooComplex, check_structure
from settings import WebhooksSection
from webhook_guard import ConnectionGuard, ConnectionLimits, ConnectionStats, LogThrottle

log = logging.getLogger("hailuo.webhooks")

OnSignal = Callable[[str, str], Awaitable[bool]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MIN_TOKEN_LENGTH = 16  # the token is the first gate; a short one could be guessed
TOKEN_RE = re.compile(r"[A-Za-z0-9_~.-]+")  # one URL path segment, no escaping needed
DUPLICATE_TTL_S = 3600.0  # providers retry for minutes to hours; an hour covers the usual schedules
DUPLICATE_CAPACITY = 10_000
PREPARE_RETRY_S = 30.0  # how often a callback may trigger another attempt to fetch a missing secret
SHUTDOWN_TIMEOUT_S = 2.0
BACKLOG = 128  # connections the kernel queues before we accept them (asyncio's default is 100)
# After an answer sent before its body was read (404, 413), aiohttp reads and drops the rest of the body
# for this long so the client can see the answer; aiohttp's 10 s would let a client hold the slot longer.
LINGER_S = 2.0
CONTAINER_MARKERS = ("/.dockerenv", "/run/.containerenv")  # Docker, Podman


class RecentEvents:
    """A bounded, time-limited set of (provider, event id) pairs: least recently added go first."""

    def __init__(self, ttl: float = DUPLICATE_TTL_S, capacity: int = DUPLICATE_CAPACITY) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def add(self, key: tuple[str, str], now: float) -> bool:
        """Record `key`; False when it was already recorded within the TTL (a duplicate)."""
        self._expire(now)
        if key in self._seen:
            return False
        self._seen[key] = now
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True

    def discard(self, key: tuple[str, str]) -> None:
        self._seen.pop(key, None)

    def __len__(self) -> int:
        return len(self._seen)

    def _expire(self, now: float) -> None:
        # Insertion order is time order (the clock only moves forward), so expired entries are at the front.
        while self._seen:
            oldest_key, seen_at = next(iter(self._seen.items()))
            if now - seen_at < self.ttl:
                break
            del self._seen[oldest_key]


class WebhookReceiver:
    """An aiohttp server for `POST /webhooks/{provider}/{path_token}` and `GET /healthz`."""

    def __init__(
        self,
        providers: Mapping[str, WebhookProvider],
        on_signal: OnSignal,
        *,
        path_token: str,
        host: str = "127.0.0.1",
        port: int = 8080,
        clock: Callable[[], float] = time.time,
        max_body: int = 1_048_576,
        limits: ConnectionLimits = ConnectionLimits(),  # noqa: B008 - frozen, so one shared default is fine
    ) -> None:
        if len(path_token) < MIN_TOKEN_LENGTH or not TOKEN_RE.fullmatch(path_token):
            raise ValueError(f"path_token must be at least {MIN_TOKEN_LENGTH} URL-safe characters")
        # Kept by reference and read per request: a provider added after start() (one built with this
        # receiver's URL) is served, and has its secret fetched when its first callback arrives.
        self.providers = providers
        self.on_signal = on_signal
        self.host = host
        self.port = port  # the real port once started (useful with port=0)
        self.clock = clock
        self.max_body = max_body
        self.limits = limits
        self._token = path_token.encode()
        self._path_token = path_token
        self._recent = RecentEvents()
        self._prepared: set[str] = set()
        self._prepare_tried_at: dict[str, float] = {}
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self._guard: ConnectionGuard | None = None
        self._stats_at_stop = ConnectionStats()
        # Every refusal and every connection-level event is logged through this: a line at once, then a
        # count a minute per kind. A sender (or a forger) repeating itself cannot flood the log.
        self._throttle = LogThrottle(log)
        self._retrier: asyncio.Task[None] | None = None

    def url_for(self, public_base_url: str, provider: str) -> str:
        """The callback URL to hand to `provider` (contains the path token: treat it as a secret)."""
        return f"{public_base_url.rstrip('/')}/webhooks/{provider}/{self._path_token}"

    # ----- lifecycle ---------------------------------------------------------------------------------

    def ready(self, provider: str) -> bool:
        """Whether `provider`'s callbacks can be verified now (its secret is loaded): until then its jobs
        are polled as if callbacks were off."""
        return provider in self._prepared

    async def start(self) -> None:
        """Fetch the providers' signing secrets, then listen. A provider that cannot be reached now does
        not hold anything up: it is retried in the background (and when its callbacks arrive); until
        then its callbacks are answered 503 and its jobs are polled densely."""
        for name in list(self.providers):
            await self._prepare(name)
        # client_max_size also caps bodies without a Content-Length (chunked), which the handler cannot
        # check up front.
        app = web.Application(client_max_size=self.max_body, middlewares=[self._track_request])
        app.router.add_post("/webhooks/{provider}/{token}", self._handle_callback)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(
            app,
            access_log=None,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            # Armed at connect and after each answer, and not reset by partial data: it closes idle and
            # dribbling kept-alive connections (aiohttp's default is an hour).
            keepalive_timeout=self.limits.idle_timeout,
            lingering_time=LINGER_S,
        )
        await self._runner.setup()
        server = self._runner.server
        assert server is not None
        # Our own listening socket instead of a TCPSite: every accepted connection goes through the guard,
        # which can turn it away before aiohttp builds anything for it.
        self._guard = ConnectionGuard(self.limits, server, self._throttle)
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.protocol_factory, self.host, self.port, backlog=BACKLOG
        )
        self._guard.install()
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("webhook receiver listening on %s:%d", self.host, self.port)
        if _loopback(self.host) and any(os.path.exists(marker) for marker in CONTAINER_MARKERS):
            log.warning(
                "webhook receiver listens on %s inside a container: unless the reverse proxy shares its "
                'network, nothing can reach it; set webhooks.listen_host = "0.0.0.0" and publish the port to '
                "the proxy only",
                self.host,
            )
        if any(name not in self._prepared for name in self.providers):
            self._retrier = asyncio.create_task(self._prepare_until_ready(), name="webhook-prepare")

    async def _prepare_until_ready(self) -> None:
        while unprepared := [name for name in self.providers if name not in self._prepared]:
            await asyncio.sleep(PREPARE_RETRY_S)
            for name in unprepared:
                await self._prepare(name)

    async def stop(self) -> None:
        if self._retrier is not None:
            self._retrier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retrier
            self._retrier = None
        if self._server is not None:
            self._server.close()  # no new connections; aiohttp then finishes or closes the open ones
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._guard is not None:
            self._guard.close()
            self._stats_at_stop = self._guard.snapshot()
            self._guard = None
        self._throttle.close()  # reports what it still counts
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def connection_stats(self) -> ConnectionStats:
        """What the connection guard has done since start (after stop: until stop; zeros before start)."""
        return self._guard.snapshot() if self._guard is not None else self._stats_at_stop

    async def __aenter__(self) -> WebhookReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ----- handlers ----------------------------------------------------------------------------------

    @web.middleware
    async def _track_request(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # Tells the guard which connections are busy (not to be closed for a newcomer) and that the first
        # request head arrived in time.
        connection = ConnectionGuard.request_started(request.transport)
        try:
            return await handler(request)
        finally:
            if connection is not None:
                connection.request_finished()

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _handle_callback(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["provider"]
        provider = self._authorised_provider(name, request.match_info["token"])
        if provider is None:
            raise web.HTTPNotFound()  # exactly what an unknown path gets: nothing to learn from it
        body = await self._read_body(request)
        if isinstance(body, web.Response):
            return body
        try:
            # Before any provider parses it: json.loads recurses per bracket, and a deep body would end
            # as a RecursionError, a 500 and a traceback.
            check_structure(body)
        except JsonTooComplex as exc:
            self._log_refusal(f"{name}: too complex", "refused a %s callback: %s", name, exc)
            return web.Response(status=400, text="body too complex")
        if name not in self._prepared and not await self._prepare(name):
            return web.Response(status=503, text="not ready")  # a sender that retries will succeed later
        try:
            signal = provider.verify_webhook(request.headers, body, self.clock())
        except WebhookRejected as exc:
            # The reason is a short fixed text from the provider module: no body, no secret.
            self._log_refusal(f"{name}: {exc}", "rejected a %s callback: %s", name, exc)
            return web.Response(status=401, text="webhook rejected")
        except Exception:  # a provider's bug: one traceback a minute, however many callbacks trigger it
            self._throttle.log(
                f"{name}: crashed",
                logging.ERROR,
                "reading a %s callback failed",
                name,
                more=f"{name} callbacks that could not be read",
                exc_info=True,
            )
            return web.Response(status=500, text="internal error")
        return await self._dispatch(name, signal)

    def _log_refusal(self, key: str, msg: str, *args: object) -> None:
        self._throttle.log(key, logging.WARNING, msg, *args, more=f"refused callbacks ({key})")

    def _authorised_provider(self, name: str, token: str) -> WebhookProvider | None:
        # Compare the token even for unknown providers, so timing does not tell names apart.
        token_ok = hmac.compare_digest(token.encode("utf-8", "replace"), self._token)
        provider = self.providers.get(name)
        return provider if token_ok and provider is not None else None

    async def _read_body(self, request: web.Request) -> bytes | web.Response:
        """The raw body (signatures cover the exact bytes), or the answer when it is too large or too slow."""
        if request.content_length is not None and request.content_length > self.max_body:
            return web.Response(status=413, text="body too large")  # refused before reading a byte of it
        try:
            async with asyncio.timeout(self.limits.body_timeout):
                return await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413, text="body too large")
        except TimeoutError:
            self._throttle.log(
                "slow body",
                logging.INFO,
                "closed a webhook connection whose body took over %.1f s",
                self.limits.body_timeout,
                more="webhook connections closed for a slow body",
            )
            slow = web.Response(status=408, text="body too slow")
            slow.force_close()
            await slow.prepare(request)
            await slow.write_eof()
            # Closed now (after the answer is flushed): aiohttp would otherwise linger LINGER_S reading
            # the rest of a body that has already been too slow.
            if request.transport is not None:
                request.transport.close()
            return slow

    async def _dispatch(self, name: str, signal: WebhookSignal) -> web.Response:
        """Act on a verified signal: answer a challenge, drop duplicates, wake the job runner."""
        key = (name, signal.event_id) if signal.event_id else None
        if key is not None and not self._recent.add(key, self.clock()):
            log.debug("ignored a repeated %s callback", name)
            return self._answer(signal)
        if signal.task_id is not None:
            try:
                known = await self.on_signal(name, signal.task_id)
            except Exception:
                if key is not None:
                    self._recent.discard(key)  # not handled: let the sender's retry through
                log.exception("handling a %s callback failed", name)
                return web.Response(status=500, text="internal error")
            if not known:
                log.info("%s callback for a task we do not know: %s", name, sanitize(signal.task_id, limit=64))
        return self._answer(signal)

    @staticmethod
    def _answer(signal: WebhookSignal) -> web.Response:
        # A provider's verification handshake (MiniMax echoes a challenge) wants its own JSON back.
        return web.json_response(signal.reply if signal.reply is not None else {"ok": True})

    async def _prepare(self, name: str) -> bool:
        """Run `prepare_webhooks` for `name` unless it succeeded already or was tried very recently."""
        if name in self._prepared:
            return True
        now = self.clock()
        last = self._prepare_tried_at.get(name)
        if last is not None and now - last < PREPARE_RETRY_S:
            return False
        self._prepare_tried_at[name] = now
        try:
            await self.providers[name].prepare_webhooks()
        except ProviderError as exc:
            log.warning("%s webhooks not ready (%s); its jobs keep polling, retrying later", name, exc)
            return False
        except Exception:  # a provider's bug must not keep the bot (or any other provider) from running
            log.exception("%s webhooks could not be prepared; its jobs keep polling, retrying later", name)
            return False
        log.info("%s webhooks ready", name)
        self._prepared.add(name)
        return True


def connection_limits(section: WebhooksSection) -> ConnectionLimits:
    """The guard's limits from `[webhooks]`."""
    return ConnectionLimits(
        max_connections=section.max_connections,
        header_timeout=section.header_timeout_seconds,
        idle_timeout=section.idle_timeout_seconds,
        body_timeout=section.body_timeout_seconds,
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
