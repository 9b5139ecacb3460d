"""An httpx transport that moves the bytes with aiohttp.

Why. Provider clients are written against httpx (its request/response model, MockTransport in tests),
but httpx's own transport (httpcore + h11, pure Python) is what ran the bot out of CPU at 1,000 jobs
in flight: about 1.4 ms of CPU per small request even one at a time, 14 ms per request with a few
hundred queued (httpcore's pool rescans every queued request against every connection whenever one
starts or ends), and 47 ms to download 10 MiB. aiohttp, already installed for discord.py, parses HTTP
in C and keeps its pool in O(1) queues: behind httpx's client this transport costs about 0.5 ms per
small request at any concurrency and 12 ms per 10 MiB (figures in the README, "Performance").

What it keeps from httpx: the client still builds the request, follows (or refuses) redirects,
decodes content-encoding (aiohttp is told not to) and raises httpx's exceptions, mapped here, so
`providers.kit.http.transport_error` keeps telling "nothing was sent" (connect errors) from "the request
may have reached the server" (everything after). aiohttp never retries a POST on its own.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import NoReturn

import aiohttp
import httpx
from yarl import URL

# Read size for bodies: big enough that a 20 MiB download is a few dozen reads, small enough that a
# chunk in memory does not matter (aiohttp pauses the socket when its own buffer is full).
READ_SIZE = 1024 * 1024


def _raise_mapped(exc: aiohttp.ClientError, request: httpx.Request) -> NoReturn:
    """Re-raise an aiohttp failure as the httpx exception httpx's own transport would have raised.

    Order matters: the connect errors derive from ClientOSError, the timeouts from ServerConnectionError."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        raise httpx.ConnectTimeout(message, request=request) from exc
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, DNS, TLS: nothing was sent
        raise httpx.ConnectError(message, request=request) from exc
    if isinstance(exc, aiohttp.ServerTimeoutError):
        raise httpx.ReadTimeout(message, request=request) from exc
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        raise httpx.RemoteProtocolError(message, request=request) from exc
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        raise httpx.UnsupportedProtocol(message, request=request) from exc
    raise httpx.ReadError(message, request=request) from exc


class _BodyStream(httpx.AsyncByteStream):
    """An aiohttp response body as an httpx stream; closing it returns the connection to the pool."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(READ_SIZE):
                yield chunk
        except aiohttp.ClientError as exc:
            _raise_mapped(exc, self._request)

    async def aclose(self) -> None:
        self._response.release()  # back to the pool when fully read, else the connection is closed


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp connection pool behind an httpx client. Created lazily, inside the running loop."""

    def __init__(self, *, verify: ssl.SSLContext | bool = True, max_connections: int = 100) -> None:
        self._verify = verify
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._verify, limit=self._max_connections)
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # httpx decodes, so size caps apply to the decoded bytes
                cookie_jar=aiohttp.DummyCookieJar(),  # the httpx client keeps cookies, if any
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._open()
        body = await request.aread()  # our request bodies are small (JSON, an image); aiohttp sizes them
        try:
            response = await session.request(
                request.method,
                URL(str(request.url), encoded=True),  # httpx already encoded it; do not re-quote signed URLs
                headers=[(k, v) for k, v in request.headers.multi_items() if k != "transfer-encoding"],
                data=body if body or request.method not in ("GET", "HEAD") else None,
                allow_redirects=False,  # the httpx client decides about redirects
                timeout=_timeout(request),
                skip_auto_headers=("Accept-Encoding", "User-Agent", "Accept", "Content-Type"),
            )
        except aiohttp.ClientError as exc:
            _raise_mapped(exc, request)
        except TimeoutError as exc:  # aiohttp's own deadline, when it surfaces unwrapped
            raise httpx.ReadTimeout("timed out", request=request) from exc
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_BodyStream(response, request),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _timeout(request: httpx.Request) -> aiohttp.ClientTimeout:
    """httpx's per-request timeouts in aiohttp's terms. aiohttp's `connect` also covers waiting for a
    free connection (httpx's `pool`); it has no write timeout, and bodies we send are small."""
    limits = request.extensions.get("timeout", {})
    connect, pool, read = limits.get("connect"), limits.get("pool"), limits.get("read")
    waiting = None if connect is None or pool is None else connect + pool
    return aiohttp.ClientTimeout(total=None, connect=waiting, sock_connect=connect, sock_read=read)
