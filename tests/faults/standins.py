"""Stand-ins the fault-injection runs add to tests/fakes: a provider gate that can go down, a Discord that
refuses uploads, and the picture `/animate` sends."""

from __future__ import annotations

import asyncio
import io
import socket
from typing import Any

from PIL import Image

from tests.fakes.discord_server import DiscordError, FakeDiscord


class ProviderGate:
    """A TCP pass-through in front of a provider stand-in, which can go down and come back on the same port.

    Down means nothing listens on the port, so new connections are refused (ECONNREFUSED), exactly what a
    provider host that is down looks like; open connections are cut as well, so the bot's pooled
    keep-alive connections cannot hide the outage. A bound, never-listening placeholder socket keeps the
    port reserved meanwhile: without it the kernel hands the free port to the next outgoing connection on
    the machine, and the gate could not come back. Output downloads do not pass through the gate (the
    stand-ins hand out their own URLs), like a CDN that stays up while the API is down."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.outages = 0
        self._down = 0  # outages in progress: they may overlap, and the gate reopens when the last ends
        self._placeholder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._placeholder.bind(("127.0.0.1", 0))
        self.port: int = self._placeholder.getsockname()[1]
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()

    def release(self) -> None:
        self.close()
        self._placeholder.close()

    async def outage(self, seconds: float) -> None:
        self.outages += 1
        self._down += 1
        self.close()
        try:
            await asyncio.sleep(seconds)
        finally:
            self._down -= 1
        if self._down == 0:
            await self.open()

    async def _serve(self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        if self._server is None:  # accepted just before the gate went down
            client.transport.abort()
            return
        self._transports.add(client.transport)
        try:
            upstream_reader, upstream = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client.transport.abort()
            self._transports.discard(client.transport)
            return
        self._transports.add(upstream.transport)
        try:
            await asyncio.gather(_pipe(client_reader, upstream), _pipe(upstream_reader, client))
        finally:
            for writer in (client, upstream):
                writer.transport.abort()
                self._transports.discard(writer.transport)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while chunk := await source.read(64 * 1024):
            sink.write(chunk)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()  # pass a half-close on, as HTTP clients and servers expect
    except OSError:
        sink.transport.abort()  # the other direction ends too


class UploadRefusingDiscord(FakeDiscord):
    """FakeDiscord that answers 413 / 40005 to the next few clip uploads, as Discord does when a channel's
    real limit is lower than the one the interaction announced."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.to_refuse = 0
        self.refused = 0

    def refuse_next_uploads(self, count: int) -> None:
        self.to_refuse += count

    def _validate(self, payload: dict[str, Any], files: list[Any], limit: int) -> None:
        if self.to_refuse > 0 and any(str(upload.filename).endswith(".mp4") for upload in files):
            self.to_refuse -= 1
            self.refused += 1
            raise DiscordError(413, 40005, "Request entity too large")
        super()._validate(payload, files, limit)


def jpeg(width: int = 640, height: int = 480) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (40, 120, 200)).save(buffer, "JPEG")
    return buffer.getvalue()
