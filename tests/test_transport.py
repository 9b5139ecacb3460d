"""The aiohttp-backed httpx transport against a raw socket server: what goes on the wire, what comes
back, and which httpx exception each failure becomes (the money rules depend on that mapping)."""

from __future__ import annotations

import asyncio
import gzip
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from core.tasks import FailureKind
from providers.kit.http import build_client, build_download_client, transport_error
from providers.kit.transport import AiohttpTransport

# A self-signed certificate for 127.0.0.1 (valid until 2126), made with
# openssl req -x509 -newkey rsa:2048 -nodes -days 36500 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1
CERT = Path(__file__).parent / "fakes" / "localhost-cert.pem"
KEY = CERT.with_name("localhost-key.pem")

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "RawServer"], Awaitable[None]]


class RawServer:
    """An HTTP/1.1 peer written by hand, so a test controls every byte and every disconnect."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.connections = 0
        self.requests: list[bytes] = []  # request line + headers + body, as received
        self.base_url = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        port = self._server.sockets[0].getsockname()[1]
        self.base_url = f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer, self)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        raw = head + (await reader.readexactly(length) if length else b"")
        self.requests.append(raw)
        return raw


def answer(body: bytes, *, status: str = "200 OK", headers: tuple[str, ...] = ()) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def keep_answering(body: bytes, **kw: object) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        while True:
            await server.read_request(reader)
            writer.write(answer(body, **kw))  # type: ignore[arg-type]
            await writer.drain()

    return handler


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=AiohttpTransport(verify=False), timeout=2.0) as http:
        yield http


async def test_the_request_reaches_the_server_as_httpx_built_it(client: httpx.AsyncClient) -> None:
    async with RawServer(keep_answering(b"{}")) as server:
        url = f"{server.base_url}/v1/tasks%2Fx?sig=ab%2Fc%3D&e=%7e"
        await client.post(url, json={"prompt": "ü"}, headers={"Authorization": "Key s"})
    raw = server.requests[0]
    head, body = raw.split(b"\r\n\r\n", 1)
    # A signed URL arrives byte for byte: re-quoting %2F or %3D would break its signature.
    assert head.startswith(b"POST /v1/tasks%2Fx?sig=ab%2Fc%3D&e=%7e HTTP/1.1\r\n")
    assert b"\r\nauthorization: key s\r\n" in head.lower()
    assert b"content-type: application/json" in head.lower()
    assert body == '{"prompt":"ü"}'.encode()
    assert head.lower().count(b"user-agent:") == 1 and b"aiohttp" not in head.lower()


async def test_a_streamed_body_is_sent_with_a_length_not_half_chunked(client: httpx.AsyncClient) -> None:
    async def parts() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b"def"

    async with RawServer(keep_answering(b"")) as server:
        await client.post(server.base_url, content=parts())  # httpx marks this Transfer-Encoding: chunked
    head, body = server.requests[0].split(b"\r\n\r\n", 1)
    assert b"transfer-encoding" not in head.lower() and b"content-length: 6" in head.lower() and body == b"abcdef"


async def test_status_repeated_headers_and_body_come_back(client: httpx.AsyncClient) -> None:
    headers = ("Set-Cookie: a=1", "Set-Cookie: b=2", "Retry-After: 7")
    async with RawServer(keep_answering(b'{"ok":1}', status="429 Too Many Requests", headers=headers)) as server:
        response = await client.get(server.base_url)
    assert response.status_code == 429 and response.reason_phrase == "Too Many Requests"
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert response.headers["retry-after"] == "7" and response.json() == {"ok": 1}


async def test_a_compressed_body_is_decoded_by_httpx(client: httpx.AsyncClient) -> None:
    packed = gzip.compress(b"hello " * 1000)
    async with RawServer(keep_answering(packed, headers=("Content-Encoding: gzip",))) as server:
        response = await client.get(server.base_url)
    assert response.content == b"hello " * 1000


async def test_connections_are_reused_but_not_after_a_body_left_unread(client: httpx.AsyncClient) -> None:
    async with RawServer(keep_answering(b"x" * 3_000_000)) as server:
        for _ in range(3):
            assert len((await client.get(server.base_url)).content) == 3_000_000
        assert server.connections == 1
        async with client.stream("GET", server.base_url) as response:
            await anext(response.aiter_bytes())  # read a little, then walk away
        await client.get(server.base_url)
    assert server.connections == 2


async def test_redirects_are_handed_to_the_client_not_followed(client: httpx.AsyncClient) -> None:
    async with RawServer(keep_answering(b"", status="302 Found", headers=("Location: /elsewhere",))) as server:
        response = await client.get(server.base_url)
    assert response.status_code == 302 and len(server.requests) == 1


async def test_refused_connection_is_a_connect_error_so_nothing_was_created(client: httpx.AsyncClient) -> None:
    async with RawServer(keep_answering(b"")) as server:
        url = server.base_url
    with pytest.raises(httpx.ConnectError) as info:
        await client.post(url, json={})
    error = transport_error(info.value, creating=True)
    assert error.kind is FailureKind.UNAVAILABLE and error.maybe_created is False


async def test_no_free_connection_in_time_is_a_connect_timeout() -> None:
    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        await server.read_request(reader)
        await asyncio.sleep(5)

    transport = AiohttpTransport(verify=False, max_connections=1)
    async with RawServer(hold) as server, httpx.AsyncClient(transport=transport) as http:
        first = asyncio.create_task(http.get(server.base_url, timeout=5.0))
        await asyncio.sleep(0.1)
        with pytest.raises(httpx.ConnectTimeout):
            await http.post(server.base_url, json={}, timeout=httpx.Timeout(5.0, connect=0.1, pool=0.1))
        first.cancel()
    assert len(server.requests) == 1  # the POST never left


async def test_a_dropped_connection_after_a_post_is_ambiguous_and_not_retried(client: httpx.AsyncClient) -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        await server.read_request(reader)  # the create arrived; the answer never leaves

    async with RawServer(drop) as server:
        with pytest.raises(httpx.RemoteProtocolError) as info:
            await client.post(server.base_url, json={"paid": True})
    assert len(server.requests) == 1
    assert transport_error(info.value, creating=True).maybe_created is True


async def test_no_answer_in_time_is_a_read_timeout(client: httpx.AsyncClient) -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        await server.read_request(reader)
        await asyncio.sleep(2)

    async with RawServer(stall) as server:
        with pytest.raises(httpx.ReadTimeout) as info:
            await client.post(server.base_url, json={}, timeout=0.2)
    assert transport_error(info.value, creating=True).maybe_created is True


async def test_a_body_that_stalls_is_a_read_timeout(client: httpx.AsyncClient) -> None:
    async def stall_midway(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        await server.read_request(reader)
        writer.write(answer(b"x" * 100)[:-50])
        await writer.drain()
        await asyncio.sleep(2)

    async with RawServer(stall_midway) as server:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(server.base_url, timeout=0.2)


async def test_a_truncated_body_is_a_protocol_error(client: httpx.AsyncClient) -> None:
    async def truncate(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        await server.read_request(reader)
        writer.write(answer(b"x" * 1000)[:-990])

    async with RawServer(truncate) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(server.base_url)


async def test_garbage_instead_of_http_is_a_protocol_error(client: httpx.AsyncClient) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        await server.read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")

    async with RawServer(garbage) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(server.base_url)


async def test_the_transport_can_be_closed_and_reopened() -> None:
    transport = AiohttpTransport(verify=False)
    async with RawServer(keep_answering(b"ok")) as server:
        async with httpx.AsyncClient(transport=transport) as http:
            assert (await http.get(server.base_url)).text == "ok"
        await transport.aclose()  # closing twice is harmless
        async with httpx.AsyncClient(transport=transport) as http:
            assert (await http.get(server.base_url)).text == "ok"


def server_tls() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(CERT, KEY)
    return context


async def test_an_untrusted_certificate_is_refused_before_anything_is_sent() -> None:
    async with (
        RawServer(keep_answering(b"ok"), tls=server_tls()) as server,
        httpx.AsyncClient(transport=AiohttpTransport(verify=ssl.create_default_context())) as http,
    ):
        with pytest.raises(httpx.ConnectError) as info:
            await http.post(server.base_url, json={"paid": True})
    assert server.requests == []
    assert transport_error(info.value, creating=True).maybe_created is False


async def test_a_trusted_certificate_works() -> None:
    trusting = ssl.create_default_context(cafile=str(CERT))
    async with (
        RawServer(keep_answering(b"ok"), tls=server_tls()) as server,
        httpx.AsyncClient(transport=AiohttpTransport(verify=trusting)) as http,
    ):
        assert (await http.get(server.base_url)).text == "ok"


async def test_provider_clients_verify_certificates_by_default() -> None:
    async with RawServer(keep_answering(b"ok"), tls=server_tls()) as server:
        for client in (build_client(server.base_url, "key"), build_download_client()):
            async with client as http:
                with pytest.raises(httpx.ConnectError):
                    await http.get(f"{server.base_url}/out.mp4")
    assert server.requests == []
