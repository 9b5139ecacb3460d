"""The operator's endpoint (aiohttp): `GET /healthz` for a supervisor or load balancer, `GET /metrics`
for Prometheus. Off unless `[ops] port` is set; composed by `app.py`, the gateway wired by `bot.py`.

/healthz answers 200 only when every part the bot needs is up — the database open and migrated, the
Discord gateway connected — and 503 naming what is missing otherwise: before start-up is done, and
while the gateway is away after a disconnect (jobs carry on meanwhile; commands cannot arrive).
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from ops_metrics import PrometheusMetrics

log = logging.getLogger("hailuo.ops")


class ListenError(Exception):
    """The endpoint's port cannot be had; the message is the sentence the operator sees."""


class Readiness:
    """What the bot waits for before it is ready, each part missing (with why) until marked up."""

    def __init__(self) -> None:
        self._missing: dict[str, str] = {"database": "not open yet", "gateway": "not connected yet"}

    def up(self, part: str) -> None:
        self._missing.pop(part, None)

    def down(self, part: str, why: str) -> None:
        self._missing[part] = why

    @property
    def missing(self) -> dict[str, str]:
        return dict(self._missing)

    @property
    def ready(self) -> bool:
        return not self._missing


class OpsServer:
    def __init__(
        self, readiness: Readiness, metrics: PrometheusMetrics, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.readiness = readiness
        self.metrics = metrics
        self.host = host
        self.port = port  # the real port once started
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None)  # a scrape every 15 s would drown the log
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as exc:
            await runner.cleanup()
            if exc.errno == errno.EADDRINUSE:
                raise ListenError(f"ops.port: port {self.port} is already in use; free it or choose another.") from None
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]
        log.info("operator endpoint listening on %s:%d (/healthz, /metrics)", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        missing = self.readiness.missing
        if not missing:
            return web.json_response({"status": "ready", "database": "ok", "gateway": "ok"})
        return web.json_response({"status": "not ready", "missing": missing}, status=503)

    async def _metrics(self, request: web.Request) -> web.Response:
        body, content_type = self.metrics.render(request.headers.get("Accept", ""))
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type  # with its version parameter, which content_type= refuses
        return response


@contextlib.asynccontextmanager
async def serving(
    readiness: Readiness, metrics: PrometheusMetrics | None, host: str, port: int
) -> AsyncIterator[OpsServer | None]:
    """The endpoint for the duration of the block; nothing (None) when the port is 0 or there are no metrics."""
    if not port or metrics is None:
        yield None
        return
    server = OpsServer(readiness, metrics, host=host, port=port)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
