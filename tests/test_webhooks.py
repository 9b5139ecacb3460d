"""The webhook receiver over a real socket, with WaveSpeed's real signature check and its local stand-in."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import resource
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import httpx
import pytest

import webhook_guard
import webhooks
from core.provider import Capabilities, ProviderError, WebhookProvider, WebhookSignal
from core.spec import GenerationSpec
from core.tasks import FailureKind, TaskStatus
from providers.wavespeed import WaveSpeedProvider
from tests.fakes.wavespeed_server import FakeWaveSpeed
from webhooks import PREPARE_RETRY_S, RecentEvents, WebhookReceiver

KEY = "ws-test-key"
TOKEN = "tok_0123456789abcdefXYZ"
T0 = 1_760_000_000.0
LOGGER = "hailuo.webhooks"


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Signals:
    """The job runner's side: records every signal; only tasks in `known` exist."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.known: set[str] = set()
        self.fail_next = False
        self.arrived = asyncio.Event()

    async def __call__(self, provider: str, task_id: str) -> bool:
        self.calls.append((provider, task_id))
        self.arrived.set()
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("database is locked")
        return task_id in self.known


class ChallengeProvider:
    """A minimal WebhookProvider in MiniMax's style: a `challenge` body is answered by echoing it."""

    name = "challenger"
    capabilities = Capabilities(offers=frozenset(), verifies_callbacks=True)

    def __init__(self, prepare_failures: int = 0) -> None:
        self.prepare_calls = 0
        self.prepare_failures = prepare_failures

    async def prepare_webhooks(self) -> None:
        self.prepare_calls += 1
        if self.prepare_calls <= self.prepare_failures:
            raise ProviderError(FailureKind.UNAVAILABLE, "could not connect")

    def verify_webhook(self, headers: Mapping[str, str], body: bytes, now: float) -> WebhookSignal:
        payload = json.loads(body)
        if "challenge" in payload:
            return WebhookSignal(task_id=None, reply={"challenge": payload["challenge"]})
        return WebhookSignal(task_id=payload["task_id"])

    async def submit(self, spec: GenerationSpec) -> str:
        raise AssertionError("the webhook receiver never calls this")

    async def poll(self, task_id: str) -> TaskStatus:
        raise AssertionError("the webhook receiver never calls this")

    async def download(self, url: str, dest: Path, max_bytes: int) -> int:
        raise AssertionError("the webhook receiver never calls this")

    async def cancel(self, task_id: str) -> bool:
        return False

    async def aclose(self) -> None:
        return None


@pytest.fixture
async def fake() -> AsyncIterator[FakeWaveSpeed]:
    async with FakeWaveSpeed(KEY, duration_s=0.05) as server:
        yield server


@pytest.fixture
async def wavespeed(fake: FakeWaveSpeed) -> AsyncIterator[WaveSpeedProvider]:
    client = WaveSpeedProvider(KEY, fake.base_url, timeout=2.0)
    yield client
    await client.aclose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def signals() -> Signals:
    return Signals()


@pytest.fixture
async def receiver(wavespeed: WaveSpeedProvider, signals: Signals, clock: Clock) -> AsyncIterator[WebhookReceiver]:
    providers: dict[str, WebhookProvider] = {"wavespeed": wavespeed, "challenger": ChallengeProvider()}
    async with WebhookReceiver(
        providers, signals, path_token=TOKEN, host="127.0.0.1", port=0, clock=clock, max_body=4096
    ) as server:
        yield server


@pytest.fixture
async def http(receiver: WebhookReceiver) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{receiver.port}", timeout=5.0) as client:
        yield client


def callback(
    fake: FakeWaveSpeed, task_id: str, *, stamp: float = T0, event_id: str = "evt-1", key: bytes | None = None
) -> tuple[dict[str, str], bytes]:
    """A WaveSpeed-style signed callback (docs/providers/wavespeed.md §7), signed here independently of the client."""
    body = json.dumps({"id": task_id, "status": "completed", "outputs": ["https://cdn.example/o.mp4"]}).encode()
    secret = key or fake.webhook_secret.removeprefix("whsec_").encode()
    signature = hmac.new(secret, f"{event_id}.{int(stamp)}.".encode() + body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(int(stamp)),
        "webhook-signature": f"v3,{signature}",
    }
    return headers, body


async def post(
    http: httpx.AsyncClient, headers: dict[str, str], body: bytes, *, provider: str = "wavespeed", token: str = TOKEN
) -> httpx.Response:
    return await http.post(f"/webhooks/{provider}/{token}", headers=headers, content=body)


# ----- accepted callbacks --------------------------------------------------------------------------------


async def test_a_good_signature_signals_the_task_once(
    fake: FakeWaveSpeed, http: httpx.AsyncClient, signals: Signals
) -> None:
    signals.known.add("task-1")
    response = await post(http, *callback(fake, "task-1"))

    assert response.status_code == 200 and response.json() == {"ok": True}
    assert signals.calls == [("wavespeed", "task-1")]


async def test_a_replayed_event_id_signals_only_once(
    fake: FakeWaveSpeed, http: httpx.AsyncClient, signals: Signals, clock: Clock
) -> None:
    signals.known.add("task-1")
    first = await post(http, *callback(fake, "task-1", event_id="evt-7"))
    clock.now += 60  # a sender's retry: same event id, fresh timestamp and signature
    again = await post(http, *callback(fake, "task-1", event_id="evt-7", stamp=clock.now))
    other = await post(http, *callback(fake, "task-1", event_id="evt-8", stamp=clock.now))

    assert [first.status_code, again.status_code, other.status_code] == [200, 200, 200]
    assert signals.calls == [("wavespeed", "task-1")] * 2  # evt-7 once, evt-8 once


async def test_an_event_id_is_forgotten_after_an_hour(
    fake: FakeWaveSpeed, http: httpx.AsyncClient, signals: Signals, clock: Clock
) -> None:
    await post(http, *callback(fake, "task-1", event_id="evt-7"))
    clock.now += 3601
    await post(http, *callback(fake, "task-1", event_id="evt-7", stamp=clock.now))
    assert len(signals.calls) == 2


async def test_an_unknown_task_is_acknowledged_and_logged_but_never_polled(
    fake: FakeWaveSpeed, http: httpx.AsyncClient, signals: Signals, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    response = await post(http, *callback(fake, "someone-elses-task"))

    assert response.status_code == 200
    assert signals.calls == [("wavespeed", "someone-elses-task")]  # asked, and told "unknown"
    assert any(r.levelno == logging.INFO and "do not know" in r.getMessage() for r in caplog.records)
    assert not [r for r in fake.requests if "/predictions/" in r.path]  # the receiver never polls itself


async def test_a_failing_handler_answers_500_and_lets_the_retry_through(
    fake: FakeWaveSpeed, http: httpx.AsyncClient, signals: Signals
) -> None:
    signals.known.add("task-1")
    signals.fail_next = True
    failed = await post(http, *callback(fake, "task-1", event_id="evt-3"))
    retried = await post(http, *callback(fake, "task-1", event_id="evt-3"))

    assert (failed.status_code, retried.status_code) == (500, 200)
    assert len(signals.calls) == 2


async def test_a_challenge_reply_is_echoed(http: httpx.AsyncClient, signals: Signals) -> None:
    body = json.dumps({"challenge": "c-123"}).encode()
    response = await post(http, {"Content-Type": "application/json"}, body, provider="challenger")

    assert response.status_code == 200 and response.json() == {"challenge": "c-123"}
    assert signals.calls == []


async def test_healthz(http: httpx.AsyncClient) -> None:
    response = await http.get("/healthz")
    assert response.status_code == 200 and response.text == "ok"


# ----- refused callbacks ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [("bad_signature", "signature mismatch"), ("stale", "outside"), ("future", "outside"), ("no_id", "missing")],
)
async def test_bad_signatures_and_stale_timestamps_are_401_and_logged_without_the_body(
    fake: FakeWaveSpeed,
    http: httpx.AsyncClient,
    signals: Signals,
    caplog: pytest.LogCaptureFixture,
    change: str,
    reason: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    stamp = {"stale": T0 - 301, "future": T0 + 301}.get(change, T0)
    headers, body = callback(fake, "task-secretive", stamp=stamp, key=b"forged" if change == "bad_signature" else None)
    if change == "no_id":
        del headers["webhook-id"]

    response = await post(http, headers, body)

    assert response.status_code == 401 and response.text == "webhook rejected"
    assert signals.calls == []
    [record] = [r for r in caplog.records if r.name == LOGGER]
    assert record.levelno == logging.WARNING and reason in record.getMessage()
    assert "task-secretive" not in caplog.text and TOKEN not in caplog.text


@pytest.mark.parametrize(("provider", "token"), [("wavespeed", "tok_0123456789abcdefXYz"), ("nobody", TOKEN)])
async def test_a_wrong_token_or_provider_is_a_plain_404(
    fake: FakeWaveSpeed,
    http: httpx.AsyncClient,
    signals: Signals,
    caplog: pytest.LogCaptureFixture,
    provider: str,
    token: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    response = await post(http, *callback(fake, "task-1"), provider=provider, token=token)
    unrouted = await http.post("/no/such/path", content=b"{}")

    assert response.status_code == 404 and signals.calls == []
    assert response.text == unrouted.text  # indistinguishable from a path that does not exist
    assert not [r for r in caplog.records if r.name == LOGGER]


async def test_an_oversized_body_is_413(http: httpx.AsyncClient, signals: Signals) -> None:
    big = b'{"task_id": "t", "pad": "' + b"x" * 5000 + b'"}'

    declared = await post(http, {"Content-Type": "application/json"}, big, provider="challenger")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the cap must hold while reading
        for start in range(0, len(big), 1000):
            yield big[start : start + 1000]

    streamed = await http.post(f"/webhooks/challenger/{TOKEN}", content=chunks())

    assert (declared.status_code, streamed.status_code) == (413, 413)
    assert signals.calls == []


async def test_a_provider_whose_secret_is_missing_gets_503_until_it_can_be_fetched(
    signals: Signals, clock: Clock
) -> None:
    flaky = ChallengeProvider(prepare_failures=2)  # at start, and at the first callback
    body = json.dumps({"task_id": "task-9"}).encode()
    async with (
        WebhookReceiver({"flaky": flaky}, signals, path_token=TOKEN, host="127.0.0.1", port=0, clock=clock) as rx,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{rx.port}") as http,
    ):
        clock.now += PREPARE_RETRY_S
        first = await post(http, {}, body, provider="flaky")
        soon = await post(http, {}, body, provider="flaky")  # too soon to ask the provider again
        clock.now += PREPARE_RETRY_S
        later = await post(http, {}, body, provider="flaky")

    assert [first.status_code, soon.status_code, later.status_code] == [503, 503, 200]
    assert flaky.prepare_calls == 3
    assert signals.calls == [("flaky", "task-9")]


async def test_a_provider_down_at_start_is_retried_in_the_background_until_ready(
    signals: Signals, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhooks, "PREPARE_RETRY_S", 0.05)
    flaky = ChallengeProvider(prepare_failures=3)
    async with WebhookReceiver({"flaky": flaky}, signals, path_token=TOKEN, host="127.0.0.1", port=0) as rx:
        assert not rx.ready("flaky")  # started all the same: the bot is not held up
        async with asyncio.timeout(10):
            while not rx.ready("flaky"):  # noqa: ASYNC110 - waiting for the receiver's own retries
                await asyncio.sleep(0.01)
    assert flaky.prepare_calls == 4


async def test_a_provider_whose_preparation_crashes_does_not_stop_the_receiver(signals: Signals) -> None:
    class Crashing(ChallengeProvider):
        async def prepare_webhooks(self) -> None:
            raise RuntimeError("a bug in a provider module")

    async with WebhookReceiver({"crashing": Crashing()}, signals, path_token=TOKEN, host="127.0.0.1", port=0) as rx:
        assert not rx.ready("crashing") and rx.port != 0


# ----- construction and helpers --------------------------------------------------------------------------


def test_url_for_builds_the_callback_url(signals: Signals) -> None:
    rx = WebhookReceiver({}, signals, path_token=TOKEN)
    assert rx.url_for("https://bot.example.org/", "wavespeed") == f"https://bot.example.org/webhooks/wavespeed/{TOKEN}"


@pytest.mark.parametrize("token", ["", "short", "x" * 15, "a/b" + "x" * 20, "späßchen" + "x" * 20])
def test_guessable_or_unroutable_tokens_are_refused(signals: Signals, token: str) -> None:
    with pytest.raises(ValueError):
        WebhookReceiver({}, signals, path_token=token)


def test_recent_events_are_bounded_and_expire() -> None:
    recent = RecentEvents(ttl=10, capacity=3)
    assert all(recent.add(("p", str(i)), now=float(i)) for i in range(4))
    assert len(recent) == 3
    assert recent.add(("p", "0"), now=4.0)  # the oldest was evicted, so it counts as new again
    assert not recent.add(("p", "3"), now=5.0)
    assert recent.add(("p", "3"), now=13.0)  # expired after the TTL


# ----- end to end: the stand-in's own signed callback ------------------------------------------------------


async def test_the_fakes_signed_callback_reaches_on_signal_with_its_task_id(
    fake: FakeWaveSpeed, signals: Signals
) -> None:
    providers: dict[str, WebhookProvider] = {}
    async with WebhookReceiver(providers, signals, path_token=TOKEN, host="127.0.0.1", port=0) as rx:
        # Built after start(): its callback URL needs the port. Its secret is fetched on the first callback.
        client = WaveSpeedProvider(
            KEY, fake.base_url, webhook_url=rx.url_for(f"http://127.0.0.1:{rx.port}", "wavespeed")
        )
        providers["wavespeed"] = client
        try:
            task_id = await client.submit(GenerationSpec("t2v", "standard", 6, f"a comet {uuid.uuid4().hex}"))
            signals.known.add(task_id)
            await asyncio.wait_for(signals.arrived.wait(), timeout=5)
            [delivery] = await fake.wait_for_deliveries(1)
        finally:
            await client.aclose()

    assert signals.calls == [("wavespeed", task_id)]
    assert delivery.status == 200 and delivery.task_id == task_id
    assert [r.method for r in fake.requests if r.path == "/api/v3/webhook/secret"] == ["GET"]


async def test_a_callback_echoing_a_large_input_is_lost_to_a_small_cap(fake: FakeWaveSpeed, signals: Signals) -> None:
    # WaveSpeed echoes the input in the callback (docs/providers/wavespeed.md §7), and our images travel as
    # data URLs: a cap below the input's size loses the callback (413). Polling still finishes the job; this
    # documents the trade.
    providers: dict[str, WebhookProvider] = {}
    async with WebhookReceiver(providers, signals, path_token=TOKEN, host="127.0.0.1", port=0, max_body=2048) as rx:
        client = WaveSpeedProvider(
            KEY, fake.base_url, webhook_url=rx.url_for(f"http://127.0.0.1:{rx.port}", "wavespeed")
        )
        providers["wavespeed"] = client
        try:
            await client.submit(GenerationSpec("t2v", "standard", 6, "x" * 3000))
            [delivery] = await fake.wait_for_deliveries(1)
        finally:
            await client.aclose()

    assert delivery.status == 413 and signals.calls == []


# ----- listen address and descriptors ------------------------------------------------------------------


def test_the_receiver_listens_on_loopback_unless_told_otherwise(signals: Signals) -> None:
    assert WebhookReceiver({}, signals, path_token=TOKEN).host == "127.0.0.1"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True), ("0.0.0.0", False), ("::", False)],
)
def test_loopback_hosts_are_recognised(host: str, loopback: bool) -> None:
    assert webhooks._loopback(host) is loopback


@pytest.mark.parametrize("in_container", [True, False])
async def test_loopback_inside_a_container_is_warned_about(
    signals: Signals,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    in_container: bool,
) -> None:
    marker = tmp_path / ".dockerenv"
    if in_container:
        marker.touch()
    monkeypatch.setattr(webhooks, "CONTAINER_MARKERS", (str(marker),))
    caplog.set_level(logging.WARNING, logger=LOGGER)
    async with WebhookReceiver({}, signals, path_token=TOKEN, host="127.0.0.1", port=0):
        pass
    warned = [r for r in caplog.records if "inside a container" in r.getMessage()]
    assert len(warned) == (1 if in_container else 0)


@pytest.mark.parametrize(("soft", "warned"), [(256, False), (255, True), (resource.RLIM_INFINITY, False)])
def test_a_cap_above_a_quarter_of_the_descriptor_limit_is_warned_about(
    monkeypatch: pytest.MonkeyPatch, soft: int, warned: bool
) -> None:
    monkeypatch.setattr(webhook_guard.resource, "getrlimit", lambda _which: (soft, resource.RLIM_INFINITY))
    warning = webhook_guard.descriptor_warning(64)
    assert (warning is not None) is warned
    if warning:
        assert "255 files" in warning and "max_connections is 64" in warning
