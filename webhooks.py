"""The webhook receiver: providers' "your task ended" callbacks, turned into "poll this task now".

Runs only when the admin configures a public base URL. A callback is never trusted for the outcome, the
output or money: after it passes its provider's signature check it only wakes the job runner, which
polls the provider as usual. So a lost, late or duplicated callback costs at most some latency.

Defences, in order: an unguessable path token (a wrong one gets the same 404 as any unknown path, before
the body is read), a body size cap, the provider's signature and timestamp check, and a duplicate filter
on the provider's delivery id. Bodies, tokens and secrets never reach the logs (the access log is off
because it would print the path, and with it the token).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from core.provider import ProviderError, WebhookProvider, WebhookRejected, WebhookSignal
from providers.kit.http import sanitize

log = logging.getLogger("hailuo.webhooks")

OnSignal = Callable[[str, str], Awaitable[bool]]

MIN_TOKEN_LENGTH = 16  # the token is the first gate; a short one could be guessed
TOKEN_RE = re.compile(r"[A-Za-z0-9_~.-]+")  # one URL path segment, no escaping needed
DUPLICATE_TTL_S = 3600.0  # providers retry for minutes to hours; an hour covers the usual schedules
DUPLICATE_CAPACITY = 10_000
PREPARE_RETRY_S = 30.0  # how often a callback may trigger another attempt to fetch a missing secret
SHUTDOWN_TIMEOUT_S = 2.0


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
        host: str = "0.0.0.0",
        port: int = 8080,
        clock: Callable[[], float] = time.time,
        max_body: int = 1_048_576,
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
        self._token = path_token.encode()
        self._path_token = path_token
        self._recent = RecentEvents()
        self._prepared: set[str] = set()
        self._prepare_tried_at: dict[str, float] = {}
        self._runner: web.AppRunner | None = None
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
        app = web.Application(client_max_size=self.max_body)
        app.router.add_post("/webhooks/{provider}/{token}", self._handle_callback)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = self._runner.addresses[0][1]
        log.info("webhook receiver listening on %s:%d", self.host, self.port)
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
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> WebhookReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ----- handlers ----------------------------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _handle_callback(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["provider"]
        provider = self._authorised_provider(name, request.match_info["token"])
        if provider is None:
            raise web.HTTPNotFound()  # exactly what an unknown path gets: nothing to learn from it
        body = await self._read_body(request)
        if body is None:
            return web.Response(status=413, text="body too large")
        if name not in self._prepared and not await self._prepare(name):
            return web.Response(status=503, text="not ready")  # a sender that retries will succeed later
        try:
            signal = provider.verify_webhook(request.headers, body, self.clock())
        except WebhookRejected as exc:
            # The reason is a short fixed text from the provider module: no body, no secret.
            log.warning("rejected a %s callback: %s", name, exc)
            return web.Response(status=401, text="webhook rejected")
        return await self._dispatch(name, signal)

    def _authorised_provider(self, name: str, token: str) -> WebhookProvider | None:
        # Compare the token even for unknown providers, so timing does not tell names apart.
        token_ok = hmac.compare_digest(token.encode("utf-8", "replace"), self._token)
        provider = self.providers.get(name)
        return provider if token_ok and provider is not None else None

    async def _read_body(self, request: web.Request) -> bytes | None:
        """The raw body (signatures cover the exact bytes), or None when it is over the cap."""
        if request.content_length is not None and request.content_length > self.max_body:
            return None  # refused before reading a byte of it
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            return None

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
