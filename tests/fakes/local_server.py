"""What every provider stand-in shares: an aiohttp app on a free port of 127.0.0.1, an outgoing
session for the callbacks it sends, background tasks, and stopping all of them in the right order."""

from __future__ import annotations

import asyncio
import socket
from typing import Self

import aiohttp
from aiohttp import web


class LocalServer:
    """Subclasses add their routes (`add_routes`), their middlewares, and how large a request body
    they accept (`client_max_size`, bytes)."""

    client_max_size = 2 * 1024 * 1024

    def __init__(self) -> None:
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None  # opened by the subclass when it needs one
        self._background: set[asyncio.Task[None]] = set()  # callbacks in flight, cancelled on stop

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_routes(self, router: web.UrlDispatcher) -> None:
        raise NotImplementedError

    def middlewares(self) -> list[web.Middleware]:
        return []

    async def start(self) -> None:
        app = web.Application(middlewares=self.middlewares(), client_max_size=self.client_max_size)
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
