"""A local stand-in for WaveSpeedAI v3 on a real socket, scriptable per task.

The wire facts are in docs/providers/wavespeed.md; the § numbers below are its sections.

Wire behaviour follows the reference: `{"code","message","data"}` envelopes, `POST /api/v3/{model_id}`
for the Hailuo 2.3 and Hailuo 02 endpoints, `GET /api/v3/predictions/{id}/result` (and the bare
`/predictions/{id}` variant), Bearer auth, the per-endpoint parameter rules, and output files under
`/outputs/{id}.mp4` (no auth, like a CDN).

Webhooks (§7): `GET /api/v3/webhook/secret` serves a `whsec_` secret. A task submitted with
`?webhook=<url>` gets ONE signed callback (the un-enveloped prediction) POSTed to that URL when it
ends: time-based tasks at their scheduled end, poll-based ones when a poll first sees them terminal.
Every callback sent is recorded in `webhook_deliveries`; `send_webhook` sends extra (stale, forged or
repeated) ones for tests.

Account limits (§10): a tier limits the videos started per minute and the tasks run at once (`TIERS`: Bronze
2/2, Silver 500/300, Gold 3,000/3,000). `videos_per_minute` counts the tasks created in a rolling minute
on the fake's `clock` (`time.time` unless given); a submit over it answers HTTP 429 with the envelope
`{"code": 429, "message": "Too many requests", "data": null}` and creates nothing (the real 429's body
and headers are undocumented: no `Retry-After` is invented). `max_concurrent` caps the tasks running at
once: a task over it is created but waits, reported `created`, until a running task ends; its scenario
(its duration, or its polls) starts counting when it gets its slot (`started_at`). Both default to Gold, so
the benchmark's 1,000 jobs pass; None turns a limit off. Tasks that never end keep their slot.

Tests script the next task with `next_scenario(...)` and inject failures with `fail_next_submit`,
`fail_next_polls`, `malformed_next_polls`, `drop_next_submit_after_create`, `slow_next_submit` and
`set_balance_exhausted`. Every task records when it was submitted, when it started, when it became
terminal (`completed_at`) and when a poll first saw that (`terminal_seen_at`), so benchmarks can measure
how long the bot took to notice. JSON answers are `application/json`; no request-id header is sent (none is
documented).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import io
import json
import os
import subprocess
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import aiohttp
from aiohttp import web

from tests.fakes.local_server import DROPPED, LocalServer
from tests.fakes.rate_limits import Clock, SlidingWindow

Outcome = Literal["completed", "failed", "nsfw", "never", "cancelled", "unknown_status", "no_outputs"]


@dataclass(frozen=True)
class Rule:
    """What one endpoint accepts (§3)."""

    needs_image: bool
    durations: tuple[int, ...]  # 1080P endpoints make 6 s clips and accept `duration: 6` at most
    end_image: bool = False  # only Hailuo 02 i2v-pro documents `end_image` (§3)


# model_id → its rules; 10 s is never possible at 1080P (§3).
ENDPOINTS: dict[str, Rule] = {
    "minimax/hailuo-2.3/t2v-standard": Rule(False, (6, 10)),
    "minimax/hailuo-2.3/t2v-pro": Rule(False, (6,)),
    "minimax/hailuo-2.3/i2v-standard": Rule(True, (6, 10)),
    "minimax/hailuo-2.3/i2v-pro": Rule(True, (6,)),
    "minimax/hailuo-2.3/fast": Rule(True, (6, 10)),
    "minimax/hailuo-2.3/fast-pro": Rule(True, (6,)),
    "minimax/hailuo-02/t2v-standard": Rule(False, (6, 10)),
    "minimax/hailuo-02/t2v-pro": Rule(False, (6,)),
    "minimax/hailuo-02/i2v-standard": Rule(True, (6, 10)),
    "minimax/hailuo-02/i2v-pro": Rule(True, (6,), end_image=True),
}
IMAGE_MIMES = ("image/jpeg", "image/jpg", "image/png")  # "Format is JPG/JPEG/PNG"
MAX_IMAGE_BYTES = 20 * 1024 * 1024
UNKNOWN_STATUS_WORD = "rebalancing"
QUEUE_SHARE = 0.25  # time-based tasks report `created` for the first quarter of their duration
CHUNK = 64 * 1024
SECRET_PREFIX = "whsec_"
STALE_BY_S = 600  # how far in the past a `stale=True` callback is stamped (the window is 300 s)
WEBHOOK_TIMEOUT_S = 10.0
SLOT_CHECK_S = 0.02  # how often a waiting task's end-of-task callback looks for its slot


@dataclass(frozen=True)
class AccountTier:
    """What a WaveSpeedAI account level allows (§10): videos started per minute, tasks running at once."""

    videos_per_minute: int
    concurrency: int


TIERS = {
    "bronze": AccountTier(2, 2),
    "silver": AccountTier(500, 300),
    "gold": AccountTier(3000, 3000),
}
GOLD = TIERS["gold"]


@dataclass
class Scenario:
    """How one task behaves. Poll-based when `queued_polls` or `processing_polls` is set, else time-based.

    `unknown_status` reports an unknown status word where `processing` would be, then completes.
    """

    duration_s: float | None = None  # None → the fake's default duration
    queued_polls: int | None = None
    processing_polls: int | None = None
    outcome: Outcome = "completed"
    error_text: str = ""
    output_bytes: bytes | None = None  # None → a small valid mp4
    output_status: int = 200
    output_delay: float = 0.0
    output_chunked: bool = False  # serve without Content-Length

    @property
    def poll_based(self) -> bool:
        return self.queued_polls is not None or self.processing_polls is not None


@dataclass
class FakeTask:
    id: str
    model_id: str
    body: dict[str, object]
    scenario: Scenario
    duration_s: float
    submitted_at: float  # time.time()
    webhook_url: str | None = None  # from `?webhook=` on the submit
    started_at: float | None = None  # when it got a slot (the submit itself unless over `max_concurrent`)
    polls: int = 0  # polls answered with the task's status (injected failures not counted)
    start_polls: int = 0  # polls answered while it waited for a slot
    terminal_seen_at: float | None = None  # first time a poll answered with a terminal status
    output_requests: int = 0
    webhook_sent: bool = False  # the one automatic end-of-task callback has gone out
    _terminal_at: float | None = field(default=None, repr=False)

    @property
    def ends_at(self) -> float | None:
        """A started time-based task's scheduled end; None otherwise."""
        if self.started_at is None or self.scenario.poll_based or self.scenario.outcome == "never":
            return None
        return self.started_at + self.duration_s

    @property
    def completed_at(self) -> float | None:
        """When the status first became terminal (time-based: the scheduled moment, polled or not)."""
        if self.scenario.outcome == "never":
            return None
        if self.scenario.poll_based:
            return self._terminal_at
        end = self.ends_at
        return end if end is not None and time.time() >= end else None

    def phase(self, now: float) -> Literal["queued", "processing", "terminal"]:
        if self.started_at is None:
            return "queued"
        sc = self.scenario
        if sc.poll_based:
            queued, processing = sc.queued_polls or 0, sc.processing_polls or 0
            polls = self.polls - self.start_polls
            if polls <= queued:
                return "queued"
            phase: Literal["processing", "terminal"] = "processing" if polls <= queued + processing else "terminal"
        else:
            elapsed = now - self.started_at
            if elapsed < self.duration_s * QUEUE_SHARE:
                return "queued"
            phase = "processing" if elapsed < self.duration_s else "terminal"
        return "processing" if sc.outcome == "never" else phase

    def status_word(self, now: float) -> str:
        phase = self.phase(now)
        if phase == "queued":
            return "created"
        if phase == "processing":
            return UNKNOWN_STATUS_WORD if self.scenario.outcome == "unknown_status" else "processing"
        return {"failed": "failed", "cancelled": "cancelled"}.get(self.scenario.outcome, "completed")


@dataclass(frozen=True)
class WebhookDelivery:
    """One callback POST the stand-in made."""

    url: str
    task_id: str
    event_id: str
    headers: dict[str, str]
    body: bytes
    status: int  # the receiver's HTTP answer; 0 when it could not be reached
    at: float
    stale: bool = False
    bad_signature: bool = False

    @property
    def json(self) -> dict[str, Any]:
        payload: dict[str, Any] = json.loads(self.body)
        return payload


@dataclass(frozen=True)
class _Failure:
    status: int
    message: str
    retry_after: float | None = None
    http_status: int | None = None  # set to answer HTTP 2xx with an error `code` in the envelope


_mp4_lock = threading.Lock()
_mp4_cache: bytes | None = None


def default_mp4() -> bytes:
    """A 1 s 320x240 H.264 clip, rendered once per process with the bundled ffmpeg."""
    global _mp4_cache
    with _mp4_lock:
        if _mp4_cache is None:
            import imageio_ffmpeg

            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "out.mp4"
                subprocess.run(
                    [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi",
                     "-i", "testsrc=size=320x240:rate=10", "-t", "1", "-pix_fmt", "yuv420p", "-c:v", "libx264",
                     "-movflags", "+faststart", "-y", str(out)],
                    check=True,
                    capture_output=True,
                    timeout=60,
                )  # fmt: skip
                _mp4_cache = out.read_bytes()
        return _mp4_cache


def _error(
    status: int, message: str, *, retry_after: float | None = None, http_status: int | None = None
) -> web.Response:
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
    return web.json_response(
        {"code": status, "message": message, "data": None}, status=http_status or status, headers=headers
    )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FakeWaveSpeed(LocalServer):
    client_max_size = 32 * 1024 * 1024  # room for a 20 MB image as base64 in a data URL

    def __init__(
        self,
        api_key: str = "ws-test-key",
        *,
        duration_s: float = 0.5,
        videos_per_minute: int | None = GOLD.videos_per_minute,
        max_concurrent: int | None = GOLD.concurrency,
        clock: Clock = time.time,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.clock = clock
        self.max_concurrent = max_concurrent
        self.rate_limited: list[float] = []  # clock time of every submit refused by `videos_per_minute`
        self._videos = SlidingWindow(videos_per_minute, 60.0) if videos_per_minute is not None else None
        self._running: list[FakeTask] = []  # tasks holding a slot (ended ones until their slot is needed)
        self._waiting: deque[FakeTask] = deque()  # tasks created over `max_concurrent`, oldest first
        self.default_duration_s = duration_s
        self.submits: list[dict[str, object]] = []  # every POST received: endpoint, json body, query
        self.tasks: dict[str, FakeTask] = {}
        self.balance = 10.0
        self._scenarios: deque[Scenario] = deque()
        self._submit_failures: deque[_Failure] = deque()
        self._poll_failures: deque[_Failure | None] = deque()  # None = malformed body
        self._drop_next_submit = False
        self._slow_next_submit = 0.0
        self._balance_exhausted = False
        # Looks like base64 on purpose: a client that wrongly base64-decodes it gets the wrong HMAC key.
        self.webhook_secret = SECRET_PREFIX + base64.b64encode(os.urandom(24)).decode()
        self.webhook_deliveries: list[WebhookDelivery] = []
        self._delivered = asyncio.Event()

    # ----- lifecycle (LocalServer) -------------------------------------------------------------------

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/api/v3/{model_id:.+}", self._submit)
        router.add_get("/api/v3/predictions/{task_id}/result", self._poll)
        router.add_get("/api/v3/predictions/{task_id}", self._poll)
        router.add_get("/api/v3/balance", self._balance)
        router.add_get("/api/v3/webhook/secret", self._webhook_secret)
        router.add_get("/outputs/{task_id}.mp4", self._output)

    # ----- scripting ---------------------------------------------------------------------------------

    def next_scenario(self, **kw: Any) -> Scenario:
        """Queue a Scenario (see its fields) for the next task created; later calls queue behind it."""
        scenario = Scenario(**kw)
        self._scenarios.append(scenario)
        return scenario

    def fail_next_submit(
        self, status: int, message: str, retry_after: float | None = None, *, http_status: int | None = None
    ) -> None:
        """The next submit answers this error (`http_status=200` puts it in a 2xx envelope instead)."""
        self._submit_failures.append(_Failure(status, message, retry_after, http_status))

    def fail_next_polls(self, n: int, status: int, retry_after: float | None = None, message: str = "") -> None:
        text = message or {429: "Too many requests", 401: "invalid authentication"}.get(status, "Internal error")
        self._poll_failures.extend(_Failure(status, text, retry_after) for _ in range(n))

    def malformed_next_polls(self, n: int) -> None:
        self._poll_failures.extend(None for _ in range(n))

    def drop_next_submit_after_create(self) -> None:
        """The next submit creates its task, then closes the connection without answering."""
        self._drop_next_submit = True

    def slow_next_submit(self, seconds: float) -> None:
        """The next submit creates its task, then waits `seconds` before answering (client read timeouts)."""
        self._slow_next_submit = seconds

    def set_balance_exhausted(self, exhausted: bool = True) -> None:
        self._balance_exhausted = exhausted

    def poll_count(self, task_id: str) -> int:
        task = self.tasks.get(task_id)
        return task.polls if task else 0

    def output_url(self, task_id: str) -> str:
        return f"{self.base_url}/outputs/{task_id}.mp4"

    async def wait_for_deliveries(self, count: int, timeout: float = 5.0) -> list[WebhookDelivery]:
        """Wait until at least `count` callbacks were sent (answered or not)."""
        async with asyncio.timeout(timeout):
            while len(self.webhook_deliveries) < count:
                self._delivered.clear()
                await self._delivered.wait()
        return self.webhook_deliveries

    # ----- handlers ----------------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        endpoint = request.match_info["model_id"]
        try:
            body: object = await request.json()
        except ValueError:
            body = None
        self.submits.append({"endpoint": endpoint, "json": body, "query": dict(request.query)})
        if not self._authorized(request):
            return _error(401, "invalid authentication")
        if self._submit_failures:
            failure = self._submit_failures.popleft()
            return _error(
                failure.status, failure.message, retry_after=failure.retry_after, http_status=failure.http_status
            )
        if self._balance_exhausted:
            return _error(402, "Insufficient balance")
        if endpoint not in ENDPOINTS:
            return _error(404, f"model {endpoint} not found")
        if not isinstance(body, dict):
            return _error(400, "request body must be a JSON object")
        if problem := validate_body(endpoint, body):
            return _error(400, problem)
        if self._videos is not None:
            now = self.clock()
            if self._videos.wait(now) > 0:
                self.rate_limited.append(now)
                return _error(429, "Too many requests")
            self._videos.add(now)
        task = self._create(endpoint, body, request.query.get("webhook") or None)
        return await self._answer_submit(request, task)

    def _create(self, model_id: str, body: dict[str, object], webhook_url: str | None) -> FakeTask:
        scenario = self._scenarios.popleft() if self._scenarios else Scenario()
        duration = scenario.duration_s if scenario.duration_s is not None else self.default_duration_s
        task = FakeTask(uuid.uuid4().hex, model_id, body, scenario, duration, time.time(), webhook_url)
        self.tasks[task.id] = task
        if self.max_concurrent is None:
            task.started_at = task.submitted_at
        else:
            self._waiting.append(task)
            self._hand_out_slots()
        if webhook_url and not scenario.poll_based and scenario.outcome != "never":
            self._spawn(self._callback_at_end(task))
        return task

    def _hand_out_slots(self) -> None:
        """Start waiting tasks, oldest first, in the slots free now or freed by tasks that have ended since.

        A task that gets a slot freed at a past moment starts at that moment, so its schedule does not
        depend on when this runs.
        """
        assert self.max_concurrent is not None
        while self._waiting:
            start_at = self._waiting[0].submitted_at
            if len(self._running) >= self.max_concurrent:
                ended = [(t.completed_at, i) for i, t in enumerate(self._running) if t.completed_at is not None]
                if not ended:
                    return
                freed_at, index = min(ended)
                del self._running[index]
                start_at = max(start_at, freed_at)
            task = self._waiting.popleft()
            task.started_at, task.start_polls = start_at, task.polls
            self._running.append(task)

    async def _answer_submit(self, request: web.Request, task: FakeTask) -> web.StreamResponse:
        if self._drop_next_submit:
            self._drop_next_submit = False
            transport = request.transport
            assert transport is not None
            request[DROPPED] = True
            transport.abort()
            return web.Response(status=200)  # never reaches the client
        if self._slow_next_submit:
            delay, self._slow_next_submit = self._slow_next_submit, 0.0
            await asyncio.sleep(delay)
        return web.json_response({"code": 200, "message": "success", "data": self._prediction(task, "created")})

    async def _poll(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return _error(401, "invalid authentication")
        if self._poll_failures:
            failure = self._poll_failures.popleft()
            if failure is None:
                return web.Response(
                    text='{"code":200,"message":"success","data":{"id":', content_type="application/json"
                )
            return _error(failure.status, failure.message, retry_after=failure.retry_after)
        task = self.tasks.get(request.match_info["task_id"])
        if task is None:
            return _error(404, "prediction not found")
        if task.started_at is None:
            self._hand_out_slots()
        task.polls += 1
        now = time.time()
        word = task.status_word(now)
        if task.phase(now) == "terminal":
            task._terminal_at = task._terminal_at or now
            task.terminal_seen_at = task.terminal_seen_at or now
            if task.scenario.poll_based:  # a poll is what ends a poll-based task
                self._spawn(self._callback_once(task))
        return web.json_response({"code": 200, "message": "success", "data": self._prediction(task, word)})

    async def _balance(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return _error(401, "invalid authentication")
        balance = 0.0 if self._balance_exhausted else self.balance
        return web.json_response({"code": 200, "message": "success", "data": {"balance": balance}})

    async def _webhook_secret(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return _error(401, "invalid authentication")
        return web.json_response({"code": 200, "message": "success", "data": {"secret": self.webhook_secret}})

    async def _output(self, request: web.Request) -> web.StreamResponse:
        task = self.tasks.get(request.match_info["task_id"])
        if task is None:
            return web.Response(status=404, text="Not Found")
        task.output_requests += 1
        sc = task.scenario
        if sc.output_delay:
            await asyncio.sleep(sc.output_delay)
        if sc.output_status != 200:
            return web.Response(status=sc.output_status, text="output unavailable")
        data = sc.output_bytes if sc.output_bytes is not None else await asyncio.to_thread(default_mp4)
        if not sc.output_chunked:
            return web.Response(body=data, content_type="video/mp4")
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(data), CHUNK):
            await response.write(data[start : start + CHUNK])
        await response.write_eof()
        return response

    def _prediction(self, task: FakeTask, word: str) -> dict[str, object]:
        sc = task.scenario
        has_output = word == "completed" and sc.outcome != "no_outputs"
        outputs = [self.output_url(task.id)] if has_output else []
        done = task.completed_at
        return {
            "id": task.id,
            "model": task.model_id,
            "outputs": outputs,
            "urls": {"get": f"{self.base_url}/api/v3/predictions/{task.id}/result"},
            "has_nsfw_contents": [sc.outcome == "nsfw"] * len(outputs),
            "status": word,
            "created_at": _iso(task.submitted_at),
            "error": (sc.error_text or "Generation failed") if word == "failed" else "",
            "timings": {"inference": int((done - (task.started_at or done)) * 1000) if done else 0},
        }

    # ----- webhooks (§7) --------------------------------------------------------------

    async def send_webhook(
        self, task_id: str, *, stale: bool = False, bad_signature: bool = False, event_id: str | None = None
    ) -> WebhookDelivery:
        """POST a signed callback with the task's current state to its webhook URL, and record it.

        `stale` stamps it 10 minutes in the past; `bad_signature` signs it with the wrong key; `event_id`
        reuses a delivery id, as a sender's retry of the same event would.
        """
        task = self.tasks[task_id]
        if not task.webhook_url:
            raise ValueError(f"task {task_id} was not submitted with ?webhook=")
        body = json.dumps(self._callback_body(task)).encode()
        event_id = event_id or uuid.uuid4().hex
        stamp = str(int(time.time()) - (STALE_BY_S if stale else 0))
        key = b"not-the-secret" if bad_signature else self.webhook_secret.removeprefix(SECRET_PREFIX).encode()
        signature = hmac.new(key, f"{event_id}.{stamp}.".encode() + body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "webhook-id": event_id,
            "webhook-timestamp": stamp,
            "webhook-signature": f"v3,{signature}",
        }
        status = await self._post_callback(task.webhook_url, headers, body)
        delivery = WebhookDelivery(
            task.webhook_url, task_id, event_id, headers, body, status, time.time(), stale, bad_signature
        )
        self.webhook_deliveries.append(delivery)
        self._delivered.set()
        return delivery

    def _callback_body(self, task: FakeTask) -> dict[str, object]:
        # §7: the prediction itself, with its input and without the `code/message/data` envelope.
        if task.started_at is None:
            self._hand_out_slots()
        prediction = self._prediction(task, task.status_word(time.time()))
        prediction.pop("timings")
        return {**prediction, "input": task.body}

    async def _post_callback(self, url: str, headers: dict[str, str], body: bytes) -> int:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_S))
        try:
            async with self._session.post(url, data=body, headers=headers, allow_redirects=False) as response:
                await response.read()
                return response.status
        except (aiohttp.ClientError, TimeoutError):
            return 0

    async def _callback_at_end(self, task: FakeTask) -> None:
        while (end := task.ends_at) is None:  # waiting for a slot
            await asyncio.sleep(SLOT_CHECK_S)
            self._hand_out_slots()
        # A hair past the end: the loop's clock and time.time() differ, and the body must say "ended".
        await asyncio.sleep(max(0.0, end - time.time()) + 0.01)
        await self._callback_once(task)

    async def _callback_once(self, task: FakeTask) -> None:
        if task.webhook_sent or not task.webhook_url:
            return
        task.webhook_sent = True
        await self.send_webhook(task.id)

    def _spawn(self, coro: Awaitable[None]) -> None:
        pending = asyncio.ensure_future(coro)
        self._background.add(pending)  # held, so the loop cannot drop it half-way
        pending.add_done_callback(self._background.discard)


# ----- request validation (§3) -----------------------------------------------------------


def validate_body(model_id: str, body: dict[str, object]) -> str | None:
    """The 400 message for a body this endpoint would refuse, or None when it is acceptable.

    Unlike (perhaps) the real service, which may drop unknown fields, the stand-in refuses `end_image`
    where it is not documented, so a client that sends it there fails loudly in tests.
    """
    rule = ENDPOINTS[model_id]
    prompt = body.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        return "prompt must be a string"
    if not rule.needs_image and not (isinstance(prompt, str) and prompt.strip()):
        return "prompt is required"
    for flag in ("enable_prompt_expansion", "go_fast"):
        if flag in body and not isinstance(body[flag], bool):
            return f"{flag} must be a boolean"
    if "duration" in body:
        duration = body["duration"]
        if isinstance(duration, bool) or duration not in rule.durations:
            return f"duration must be one of {', '.join(map(str, rule.durations))}"
    if "end_image" in body and not rule.end_image:
        return "end_image is not supported by this model"
    if not rule.needs_image:
        return None
    if problem := validate_image(body.get("image")):
        return problem
    if "end_image" in body:
        return validate_image(body["end_image"], "end_image")
    return None


def validate_image(image: object, name: str = "image") -> str | None:
    if not isinstance(image, str) or not image:
        return f"{name} is required"
    if image.startswith(("http://", "https://")):
        return None
    header, sep, payload = image.partition(",")
    if not sep or not header.startswith("data:") or not header.endswith(";base64"):
        return f"{name} must be a URL or a base64 data URL"
    mime = header.removeprefix("data:").removesuffix(";base64").strip().lower()
    if mime not in IMAGE_MIMES:
        return f"{name} format must be JPG, JPEG or PNG"
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return f"{name} is not valid base64"
    if len(data) > MAX_IMAGE_BYTES:
        return f"{name} file size cannot exceed 20MB"
    problem = _image_geometry_problem(data)
    return f"{name} {problem}" if problem else None


def _image_geometry_problem(data: bytes) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, (width, height) = img.format, img.size
    except (UnidentifiedImageError, OSError):
        return "could not be decoded"
    if fmt not in ("JPEG", "PNG"):
        return "format must be JPG, JPEG or PNG"
    if min(width, height) <= 300:
        return "short side must be greater than 300px"
    if not 2 / 5 < width / height < 5 / 2:
        return "aspect ratio must be between 2:5 and 5:2"
    return None
