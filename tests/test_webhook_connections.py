"""The webhook receiver against hostile connections over real sockets: idle and slow clients, floods, deep
JSON. Every wait is for a state (a socket reading EOF, a counter reaching a value) with a generous bound,
never a sleep followed by an assertion, so a busy machine makes these slower, not red."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

import httpx
import pytest

from core.provider import WebhookProvider
from providers.kit.transport import AiohttpTransport
from providers.minimax import MiniMaxProvider
from providers.toapis import ToApisProvider
from webhook_guard import BUSY_RESPONSE, ConnectionLimits, LogThrottle
from webhooks import WebhookReceiver

TOKEN = "tok_0123456789abcdefXYZ"
SECRET = "whsec-current-0123456789abcdef0123456789"
T0 = 1_800_000_000.0
LOGGER = "hailuo.webhooks"
BOUND_S = 20.0  # the most any state below may take to arrive, even beside a CPU hog
LONG = 600.0  # a timeout that must not fire during a test
DEEP = b"[" * 200_000 + b"]" * 200_000

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Signals:
    """The job runner's side; `gate`, when set, holds every signal until it opens."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, provider: str, task_id: str) -> bool:
        self.calls.append((provider, task_id))
        if self.gate is not None:
            await self.gate.wait()
        return True


@asynccontextmanager
async def receiver(limits: ConnectionLimits, signals: Signals) -> AsyncIterator[WebhookReceiver]:
    transport = AiohttpTransport(verify=False)  # never used: no request leaves this test
    providers: dict[str, WebhookProvider] = {
        "toapis": ToApisProvider("key", "https://toapis.test", transport=transport, webhook_secret=SECRET),
        "minimax": MiniMaxProvider("key", "https://mm.test", transport=transport),
    }
    try:
        async with WebhookReceiver(
            providers, signals, path_token=TOKEN, host="127.0.0.1", port=0, clock=lambda: T0, limits=limits
        ) as rx:
            yield rx
    finally:
        for provider in providers.values():
            await provider.aclose()


def limits(**changes: float) -> ConnectionLimits:
    base = {"max_connections": 8, "header_timeout": LONG, "idle_timeout": LONG, "body_timeout": LONG}
    return ConnectionLimits(**{**base, **changes})  # type: ignore[arg-type]


def toapis_callback(task_id: str, event_id: str = "evt_1") -> tuple[dict[str, str], bytes]:
    body = json.dumps({"id": event_id, "type": "generation.completed", "data": {"task_id": task_id}}).encode()
    stamp = str(int(T0))
    digest = hmac.new(SECRET.encode(), f"{event_id}.{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-ToAPIs-Webhook-Id": event_id,
        "X-ToAPIs-Webhook-Timestamp": stamp,
        "X-ToAPIs-Webhook-Signature": f"v1={digest}",
    }
    return headers, body


async def post(rx: WebhookReceiver, provider: str, headers: Mapping[str, str], body: bytes) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{rx.port}", timeout=BOUND_S) as http:
        return await http.post(f"/webhooks/{provider}/{TOKEN}", headers=dict(headers), content=body)


async def connect(rx: WebhookReceiver) -> Conn:
    return await asyncio.open_connection("127.0.0.1", rx.port)


async def read_to_eof(conn: Conn) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    reader, _ = conn
    received = b""
    async with asyncio.timeout(BOUND_S):
        try:
            while chunk := await reader.read(65536):
                received += chunk
        except ConnectionResetError:
            pass
    return received


async def wait_until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(BOUND_S):
        while not condition():  # noqa: ASYNC110 - the states are inside the receiver: polled, cheaply
            await asyncio.sleep(0.005)


def about(caplog: pytest.LogCaptureFixture, word: str) -> list[str]:
    """The receiver's log lines that mention `word`."""
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and word in r.getMessage()]


def close_all(conns: list[Conn]) -> None:
    for _, writer in conns:
        writer.close()


# ----- connection cap ------------------------------------------------------------------------------------


async def test_idle_connections_beyond_the_cap_are_closed_and_a_real_callback_still_gets_in() -> None:
    signals = Signals()
    async with receiver(limits(max_connections=8), signals) as rx:
        conns: list[Conn] = []
        try:
            for n in range(1, 31):  # one at a time, so the order the receiver sees them in is known
                conns.append(await connect(rx))
                await wait_until(lambda n=n: rx.connection_stats().admitted == n)  # type: ignore[misc]

            # The 22 that waited longest were closed to make room, silently: they never sent a request.
            assert [await read_to_eof(conn) for conn in conns[:22]] == [b""] * 22
            stats = rx.connection_stats()
            assert (stats.open, stats.evicted, stats.refused) == (8, 22, 0)
            assert not any(reader.at_eof() for reader, _ in conns[22:])

            response = await post(rx, "toapis", *toapis_callback("vid_1"))  # the 8 idle ones are still open
            assert response.status_code == 200 and signals.calls == [("toapis", "vid_1")]
            assert await read_to_eof(conns[22]) == b""  # the oldest idle one made room for it
        finally:
            close_all(conns)


async def test_when_every_slot_is_busy_newcomers_get_a_503_at_once_and_the_log_stays_short(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    signals = Signals()
    signals.gate = asyncio.Event()
    async with receiver(limits(max_connections=2), signals) as rx:
        held = [asyncio.create_task(post(rx, "toapis", *toapis_callback(f"vid_{i}", f"evt_{i}"))) for i in (1, 2)]
        await wait_until(lambda: len(signals.calls) == 2)  # both slots are inside a request now

        flood = [await connect(rx) for _ in range(200)]
        answers = await asyncio.gather(*(read_to_eof(conn) for conn in flood))
        close_all(flood)

        assert answers == [BUSY_RESPONSE] * 200
        assert rx.connection_stats().refused == 200
        signals.gate.set()
        assert [(await task).status_code for task in held] == [200, 200]

    assert about(caplog, "refused") == [
        "refused a webhook connection: all 2 are busy with requests (webhooks.max_connections)",
        "199 more webhook connections refused, all busy in the last 60 s",  # reported at shutdown
    ]
    assert not [r for r in caplog.records if r.exc_info]


async def test_a_flood_of_idle_connections_logs_one_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with receiver(limits(max_connections=4), Signals()) as rx:
        conns = [await connect(rx) for _ in range(300)]
        await wait_until(lambda: rx.connection_stats().admitted == 300)
        close_all(conns)
        assert rx.connection_stats().evicted == 296
    assert about(caplog, "idle") == [
        "4 webhook connections open (webhooks.max_connections): closing the longest idle for each new one",
        "295 more idle webhook connections closed to make room in the last 60 s",  # reported at shutdown
    ]


# ----- deadlines -----------------------------------------------------------------------------------------


async def test_connections_that_send_no_complete_head_in_time_are_closed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with receiver(limits(header_timeout=0.2), Signals()) as rx:
        silent = [await connect(rx) for _ in range(5)]
        loris = await connect(rx)
        loris[1].write(f"POST /webhooks/toapis/{TOKEN} HTTP/1.1\r\nHost: x\r\n".encode())

        async def dribble() -> None:  # one more header line now and then: never a complete head
            while not loris[0].at_eof():
                loris[1].write(b"X-A: b\r\n")
                await asyncio.sleep(0.02)

        dribbler = asyncio.create_task(dribble())
        try:
            assert [await read_to_eof(conn) for conn in [*silent, loris]] == [b""] * 6
        finally:
            dribbler.cancel()
            close_all([*silent, loris])
        await wait_until(lambda: rx.connection_stats().open == 0)
        assert rx.connection_stats().header_timeouts == 6

        response = await post(rx, "toapis", *toapis_callback("vid_1"))  # a prompt client is unaffected
        assert response.status_code == 200
    timeouts = [r for r in caplog.records if "sent no request" in r.getMessage()]
    assert len(timeouts) == 1 and timeouts[0].levelno == logging.INFO


async def test_a_kept_alive_connection_is_closed_when_idle_or_dribbling_after_an_answer() -> None:
    async with receiver(limits(idle_timeout=0.2), Signals()) as rx:
        quiet, dribbling = await connect(rx), await connect(rx)
        for reader, writer in (quiet, dribbling):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            async with asyncio.timeout(BOUND_S):
                answer = await reader.readuntil(b"ok")
            assert answer.startswith(b"HTTP/1.1 200") and b"Connection: close" not in answer
        dribbling[1].write(b"GET /healthz HTTP/1.1\r\n")  # the next head, never finished

        assert [await read_to_eof(quiet), await read_to_eof(dribbling)] == [b"", b""]
        close_all([quiet, dribbling])
        await wait_until(lambda: rx.connection_stats().open == 0)
        assert rx.connection_stats().header_timeouts == 0  # aiohttp's keep-alive timer closed these


async def test_a_body_that_arrives_too_slowly_is_answered_408_and_closed() -> None:
    async with receiver(limits(body_timeout=0.2), Signals()) as rx:
        conn = await connect(rx)
        conn[1].write(f"POST /webhooks/toapis/{TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{}}".encode())
        answer = await read_to_eof(conn)
        close_all([conn])
        assert answer.startswith(b"HTTP/1.1 408") and answer.endswith(b"body too slow")


async def test_stop_closes_what_is_still_open() -> None:
    async with receiver(limits(), Signals()) as rx:
        conns = [await connect(rx) for _ in range(3)]
        await wait_until(lambda: rx.connection_stats().open == 3)
    assert [await read_to_eof(conn) for conn in conns] == [b""] * 3
    close_all(conns)


# ----- deep JSON through the receiver --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "good"),
    [
        ("minimax", ({}, b'{"task_id": "7", "status": "success"}')),
        ("toapis", toapis_callback("7")),
    ],
)
async def test_a_deeply_nested_callback_is_a_400_without_a_traceback_and_the_next_one_works(
    caplog: pytest.LogCaptureFixture, provider: str, good: tuple[dict[str, str], bytes]
) -> None:
    caplog.set_level(logging.DEBUG)
    signals = Signals()
    async with receiver(limits(), signals) as rx:
        for _ in range(3):
            deep = await post(rx, provider, {"Content-Type": "application/json"}, DEEP)
            assert deep.status_code == 400 and deep.text == "body too complex"
        ok = await post(rx, provider, *good)

    assert ok.status_code == 200 and signals.calls == [(provider, "7")]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    refusals = [r for r in caplog.records if "refused a" in r.getMessage() and "callback" in r.getMessage()]
    assert len(refusals) == 1 and len(refusals[0].getMessage()) < 200  # three refusals, one short line


async def test_a_provider_bug_is_a_500_with_one_traceback_however_often_it_happens(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)

    def crash(*_args: object) -> None:
        raise RecursionError("a parser the structure check did not cover")

    monkeypatch.setattr(MiniMaxProvider, "verify_webhook", crash)
    async with receiver(limits(), Signals()) as rx:
        answers = [await post(rx, "minimax", {}, b"{}") for _ in range(5)]
    assert [a.status_code for a in answers] == [500] * 5
    assert len([r for r in caplog.records if r.exc_info]) == 1


# ----- the throttle ---------------------------------------------------------------------------------------


async def test_the_log_throttle_reports_one_line_then_a_count_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="throttle-test")
    throttle = LogThrottle(logging.getLogger("throttle-test"), interval=0.05)
    for i in range(1000):
        throttle.log("k", logging.WARNING, "event %d", i, more="events")
    await wait_until(lambda: len(caplog.records) == 2)
    assert [r.getMessage() for r in caplog.records] == ["event 0", "999 more events in the last 0.05 s"]

    for i in range(2):  # the flood goes on: counted in the next interval, reported at its end or at close
        throttle.log("k", logging.WARNING, "event %d", i, more="events")
    throttle.log("other", logging.INFO, "another kind", more="others")  # its own line at once
    throttle.close()
    assert [r.getMessage() for r in caplog.records[2:]] == ["another kind", "2 more events in the last 0.05 s"]
