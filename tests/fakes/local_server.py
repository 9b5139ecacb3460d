"""What every provider stand-in shares: an aiohttp app on a free port of 127.0.0.1, a log of the
requests it answered, an outgoing session for the callbacks it sends, background tasks, and stopping
all of them in the right order."""

from __future__ import annotations

import asyncio
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Self

import aiohttp
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DROPPED = web.RequestKey("dropped", bool)  # set when a handler closed the connection unanswered


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    status: int  # 0 when the connection was dropped without an answer
    at: float
    has_auth: bool  # whether any Authorization header was sent
    query: dict[str, str] = field(default_factory=dict)


class LocalServer(ABC):
    """Subclasses add their routes (`add_routes`) and say how large a request body they accept
    (`client_max_size`, bytes); `answer` is where one can change how every request is answered."""

    client_max_size = 2 * 1024 * 1024

    def __init__(self) -> None:
        self.requests: list[RequestRecord] = []
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None  # opened by the subclass when it needs one
        self._background: set[asyncio.Task[None]] = set()  # callbacks in flight, cancelled on stop

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @abstractmethod
    def add_routes(self, router: web.UrlDispatcher) -> None: ...

    async def answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        return await handler(request)

    @web.middleware
    async def _log(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        status = 0
        try:
            response = await self.answer(request, handler)
            status = 0 if request.get(DROPPED) else response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            has_auth = "Authorization" in request.headers
            self.requests.append(
                RequestRecord(request.method, request.path, status, time.time(), has_auth, dict(request.query))
            )

    async def start(self) -> None:
        app = web.Application(middlewares=[self._log], client_max_size=self.client_max_size)
        self.add_routes(app.router)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
