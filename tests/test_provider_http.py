"""Shared provider HTTP helpers: Retry-After parsing, error mapping, and streaming downloads."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from core.provider import ProviderError
from core.tasks import FailureKind
from providers.kit.download import stream_download
from providers.kit.http import (
    build_client,
    build_download_client,
    error_from_response,
    kind_for_status,
    parse_retry_after,
    response_message,
    sanitize,
    transport_error,
)

NOW = 1_800_000_000.0

# ----- Retry-After -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", 5.0),
        (" 0 ", 0.0),
        ("1.5", 1.5),
        ("-3", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        ("", None),
        (formatdate(NOW + 30, usegmt=True), 30.0),
        (formatdate(NOW - 30, usegmt=True), 0.0),
        ("Wed, 99 Foo 2026 25:00:00 GMT", None),
    ],
)
def test_parse_retry_after_reads_seconds_and_http_dates(value: str, expected: float | None) -> None:
    assert parse_retry_after({"Retry-After": value}, now=NOW) == expected


def test_parse_retry_after_without_the_header_is_none() -> None:
    assert parse_retry_after({}) is None
    assert parse_retry_after(None) is None
    assert parse_retry_after(httpx.Headers({"retry-after": "2"})) == 2.0


# ----- sanitising and classifying --------------------------------------------------------------------------


def test_sanitize_redacts_secrets_strips_control_characters_and_truncates() -> None:
    text = "bad\r\nrequest\x00 echo sk-live-123456 and Bearer abcdefgh12345 " + "y" * 300
    out = sanitize(text, secrets=("sk-live-123456",))
    assert "sk-live-123456" not in out and "abcdefgh12345" not in out
    assert "\n" not in out and "\x00" not in out
    assert out.startswith("bad request") and len(out) == 100 and out.endswith("…")


def test_sanitize_of_a_non_string_is_empty() -> None:
    assert sanitize({"message": "x"}) == "" and sanitize(None) == ""


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        (401, "", FailureKind.AUTH),
        (403, "forbidden", FailureKind.AUTH),
        (403, "account balance too low", FailureKind.BALANCE),
        (402, "", FailureKind.BALANCE),
        (400, "Insufficient funds", FailureKind.BALANCE),
        (400, "insufficient image resolution", FailureKind.BAD_REQUEST),
        (422, "prompt flagged by moderation", FailureKind.MODERATION),
        (400, "invalid content-type", FailureKind.BAD_REQUEST),
        (429, "", FailureKind.RATE_LIMITED),
        (408, "", FailureKind.UNAVAILABLE),
        (500, "", FailureKind.UNAVAILABLE),
        (599, "", FailureKind.UNAVAILABLE),
        (302, "", FailureKind.INTERNAL),
    ],
)
def test_kind_for_status(status: int, message: str, kind: FailureKind) -> None:
    assert kind_for_status(status, message) is kind


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"code":400,"message":"bad duration","data":null}', "bad duration"),
        (b'{"error":{"code":"x","message":"nested text"}}', "nested text"),
        (b'{"detail":"fastapi style"}', "fastapi style"),
        (b'{"base_resp":{"status_code":1002,"status_msg":"rate limit"}}', "rate limit"),
        (b"<html>oops</html>", ""),
        (b'["not", "an", "object"]', ""),
    ],
)
def test_response_message_reads_common_error_shapes(body: bytes, message: str) -> None:
    assert response_message(httpx.Response(400, content=body)) == message


def test_only_a_gateway_timeout_leaves_a_create_ambiguous() -> None:
    assert error_from_response(httpx.Response(504), message="", creating=True).maybe_created is True
    assert error_from_response(httpx.Response(503), message="", creating=True).maybe_created is False
    assert error_from_response(httpx.Response(504), message="", creating=False).maybe_created is False


def test_error_from_response_carries_status_retry_after_and_request_id() -> None:
    response = httpx.Response(429, headers={"Retry-After": "4", "X-Request-Id": "req-1"})
    exc = error_from_response(response, message="slow down")
    assert (exc.kind, exc.status, exc.retry_after, exc.request_id) == (FailureKind.RATE_LIMITED, 429, 4.0, "req-1")
    assert exc.detail == "HTTP 429: slow down"


REQUEST = httpx.Request("POST", "https://api.test/x")


@pytest.mark.parametrize(
    ("exc", "creating", "kind", "maybe_created"),
    [
        (httpx.ConnectError("refused", request=REQUEST), True, FailureKind.UNAVAILABLE, False),
        (httpx.ConnectTimeout("slow", request=REQUEST), True, FailureKind.UNAVAILABLE, False),
        (httpx.PoolTimeout("busy", request=REQUEST), True, FailureKind.UNAVAILABLE, False),
        (httpx.ReadTimeout("slow", request=REQUEST), True, FailureKind.UNAVAILABLE, True),
        (httpx.ReadTimeout("slow", request=REQUEST), False, FailureKind.UNAVAILABLE, False),
        (httpx.RemoteProtocolError("dropped", request=REQUEST), True, FailureKind.UNAVAILABLE, True),
        (httpx.ReadError("reset", request=REQUEST), True, FailureKind.UNAVAILABLE, True),
        (httpx.UnsupportedProtocol("ftp", request=REQUEST), True, FailureKind.INTERNAL, False),
    ],
)
def test_transport_error_mapping(exc: httpx.HTTPError, creating: bool, kind: FailureKind, maybe_created: bool) -> None:
    error = transport_error(exc, creating=creating)
    assert error.kind is kind and error.maybe_created is maybe_created
    assert "refused" not in error.detail  # class names only, never the library's message


# ----- clients -----------------------------------------------------------------------------------------


async def test_build_client_sends_the_auth_scheme_through_the_injected_transport() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(302, headers={"Location": "https://elsewhere.test/"})

    async with build_client(
        "https://api.test/", "k-123", auth_scheme="Key", transport=httpx.MockTransport(handler)
    ) as c:
        response = await c.get("/v1/thing")
    assert response.status_code == 302  # redirects are not followed by API clients
    assert [str(r.url) for r in seen] == ["https://api.test/v1/thing"]
    assert seen[0].headers["Authorization"] == "Key k-123"


async def test_download_client_carries_no_credentials() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"x")

    async with build_download_client(transport=httpx.MockTransport(handler)) as c:
        await c.get("https://cdn.test/a.mp4")
    assert "Authorization" not in seen[0].headers


# ----- stream_download over a real socket --------------------------------------------------------------


class Origin:
    """A tiny output host whose routes misbehave in the ways CDNs do."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.sent: dict[str, int] = {}
        self.fail_first = 0
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/ok.mp4", self.ok)
        app.router.add_get("/flaky.mp4", self.flaky)
        app.router.add_get("/endless.mp4", self.endless)
        app.router.add_get("/truncated.mp4", self.truncated)
        app.router.add_get("/empty.mp4", self.empty)
        app.router.add_get("/gone.mp4", self.gone)
        app.router.add_get("/slow.mp4", self.slow)
        app.router.add_get("/redirect.mp4", self.redirect)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    def _hit(self, request: web.Request) -> None:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1

    async def ok(self, request: web.Request) -> web.Response:
        self._hit(request)
        return web.Response(body=b"v" * 200_000, content_type="video/mp4")

    async def flaky(self, request: web.Request) -> web.Response:
        self._hit(request)
        if self.hits[request.path] <= self.fail_first:
            return web.Response(status=503)
        return web.Response(body=b"ok-after-retry")

    async def endless(self, request: web.Request) -> web.StreamResponse:
        self._hit(request)
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for _ in range(10_000):  # 640 MB if nobody stops reading
                await response.write(b"e" * 65_536)
                self.sent[request.path] = self.sent.get(request.path, 0) + 65_536
        except (ConnectionResetError, ConnectionError):
            pass
        return response

    async def truncated(self, request: web.Request) -> web.StreamResponse:
        self._hit(request)
        response = web.StreamResponse(headers={"Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b"t" * 10)
        assert request.transport is not None
        request.transport.abort()
        return response

    async def empty(self, request: web.Request) -> web.Response:
        self._hit(request)
        return web.Response(body=b"")

    async def gone(self, request: web.Request) -> web.Response:
        self._hit(request)
        return web.Response(status=404)

    async def slow(self, request: web.Request) -> web.Response:
        self._hit(request)
        await asyncio.sleep(2)
        return web.Response(body=b"late")

    async def redirect(self, request: web.Request) -> web.Response:
        self._hit(request)
        raise web.HTTPFound("/ok.mp4")


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    server = Origin()
    await server.start()
    yield server
    await server.stop()


async def download_error(url: str, dest: Path, max_bytes: int = 1_000_000, **kw: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await stream_download(None, url, dest, max_bytes, backoff=0.01, **kw)
    assert info.value.kind is FailureKind.OUTPUT_INVALID
    assert not dest.exists() and not dest.with_name(dest.name + ".part").exists()
    return info.value


async def test_download_streams_to_the_file_and_leaves_no_part_file(origin: Origin, tmp_path: Path) -> None:
    dest = tmp_path / "clip.mp4"
    async with build_download_client() as client:
        size = await stream_download(client, f"{origin.base_url}/ok.mp4", dest, 200_000)
    assert size == 200_000 == dest.stat().st_size  # exactly the cap is allowed
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


async def test_download_follows_cdn_redirects(origin: Origin, tmp_path: Path) -> None:
    assert await stream_download(None, f"{origin.base_url}/redirect.mp4", tmp_path / "a.mp4", 500_000) == 200_000


class UnreadableStream(httpx.AsyncByteStream):
    """A body that must never be read."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        raise AssertionError("the body was read")
        yield b""  # pragma: no cover


async def test_declared_length_over_the_cap_is_refused_before_reading_the_body(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Length": "200000"}, stream=UnreadableStream())

    async with build_download_client(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(ProviderError) as info:
            await stream_download(client, "https://cdn.test/a.mp4", tmp_path / "a.mp4", 199_999)
    assert info.value.kind is FailureKind.OUTPUT_INVALID
    assert "200000 > 199999" in info.value.detail
    assert list(tmp_path.iterdir()) == []


async def test_endless_body_is_cut_off_just_past_the_cap(origin: Origin, tmp_path: Path) -> None:
    exc = await download_error(f"{origin.base_url}/endless.mp4", tmp_path / "clip.mp4", max_bytes=300_000)
    await asyncio.sleep(0.1)  # let the origin notice the hang-up
    assert "too large" in exc.detail
    assert origin.sent.get("/endless.mp4", 0) < 20_000_000


async def test_5xx_is_retried_then_succeeds(origin: Origin, tmp_path: Path) -> None:
    origin.fail_first = 2
    size = await stream_download(None, f"{origin.base_url}/flaky.mp4", tmp_path / "a.mp4", 1000, backoff=0.01)
    assert size == len(b"ok-after-retry") and origin.hits["/flaky.mp4"] == 3


async def test_persistent_5xx_gives_up_after_the_attempts(origin: Origin, tmp_path: Path) -> None:
    origin.fail_first = 99
    exc = await download_error(f"{origin.base_url}/flaky.mp4", tmp_path / "a.mp4", attempts=3)
    assert exc.status == 503 and origin.hits["/flaky.mp4"] == 3


async def test_404_is_not_retried(origin: Origin, tmp_path: Path) -> None:
    exc = await download_error(f"{origin.base_url}/gone.mp4", tmp_path / "a.mp4")
    assert exc.status == 404 and origin.hits["/gone.mp4"] == 1


async def test_truncated_body_is_retried_and_then_fails(origin: Origin, tmp_path: Path) -> None:
    exc = await download_error(f"{origin.base_url}/truncated.mp4", tmp_path / "a.mp4", attempts=2)
    assert "connection error" in exc.detail and origin.hits["/truncated.mp4"] == 2


async def test_empty_body_is_invalid(origin: Origin, tmp_path: Path) -> None:
    exc = await download_error(f"{origin.base_url}/empty.mp4", tmp_path / "a.mp4")
    assert "empty" in exc.detail


async def test_connection_refused_is_invalid_after_retries(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exc = await download_error(f"http://127.0.0.1:{port}/a.mp4", tmp_path / "a.mp4", attempts=2)
    assert "after 2 attempts" in exc.detail


async def test_overall_deadline_abandons_a_stalled_download(origin: Origin, tmp_path: Path) -> None:
    exc = await download_error(f"{origin.base_url}/slow.mp4", tmp_path / "a.mp4", total_timeout=0.2)
    assert "longer than" in exc.detail


async def test_file_urls_are_not_handled_here(tmp_path: Path) -> None:
    source = tmp_path / "local.mp4"
    source.write_bytes(b"x")
    exc = await download_error(source.as_uri(), tmp_path / "a.mp4")
    assert "scheme" in exc.detail
