"""A local stand-in for ToAPIs on a real socket, scriptable per task.

The wire facts are in docs/providers/toapis.md; the § numbers below are its sections.

Wire behaviour follows the reference: Bearer auth; `POST /v1/uploads/images` (multipart `file`, at most
10 MB, JPEG/PNG/WebP/GIF) answering `{"success":true,"data":{"id","url","mime_type","size"}}` with the image
then served at that URL; `POST /v1/videos/generations` and `GET /v1/videos/generations/{id}` with
OpenAI-style `generation.task` objects; errors `{"error":{"code","message","type"}}` whose code is an int
(401, 402, 404) or a word (`invalid_request`, `rate_limit_exceeded`, ...); 429s with `X-RateLimit-*` and
`Retry-After`; signed `X-ToAPIs-Webhook-*` final events; outputs under `/outputs/{id}.mp4` (no auth).

Submit rules: known model; prompt ≤ 2000 characters, required for text to video and for the 2.3 models
(§4 marks it required; Hailuo 02 makes it optional for image to video); duration 6 or 10 and 1080P only
6 s; resolutions 768P/1080P (and 512P for Hailuo 02 image to video); `image_urls` one public URL, never a
data URL, and required by the Fast model; `metadata.last_frame_image` only for MiniMax-Hailuo-02 with a
first frame and not at 512P; `metadata.callback_url` refused with `400 webhook_not_configured` unless the
fake has a webhook secret. Deviation from the real service: callbacks may go to http://127.0.0.1 (ToAPIs
wants HTTPS and refuses loopback), any path is accepted, and events go only to a task's own
`callback_url` (there is no token default URL here).

Rate limits (§9), on the fake's `clock` (`time.time` unless given): per user (here: per Authorization
header value, so a wrong key has its own allowance) with SEPARATE buckets for `async_submit` (generation
POSTs) and `async_query` (generation GETs). Each category has three token buckets, one per documented
window, each holding that window's count and refilling continuously (`per_minute`/60 s, `per_second`/1 s,
`burst`/`burst_window_s`); a request passes only when all three have a token. Default tier: submit 300/min,
5/s, 50 per 10 s; query 3,000/min, 50/s, 500 per 10 s (`submit_limits` / `query_limits` raise them). Every
answer of the `/v1` API, 200s and errors alike, carries `X-RateLimit-Limit`, `X-RateLimit-Remaining`,
`X-RateLimit-Reset` and `X-RateLimit-Category`: on any answer but a 429 they describe the per-minute bucket
after this request, and `X-RateLimit-Reset` is the Unix time at which the current minute's window ends, so an
ordinary 200 says e.g. `Remaining: 299` with a reset up to a minute ahead. That is what the real service
was seen to send (a client that waited for the reset after every answer polled about once a minute). A 429 has the body
`{"error":{"code":"rate_limit_exceeded","message":"Async task request rate exceeded"}}`, describes the
bucket that refused (`Remaining: 0`, reset when it is full) and adds `Retry-After` (whole seconds until a
request would pass). 429s do not use allowance; every other answer does (business failures, 401s and
scripted failures included). Unconfirmed and chosen here: whether the reset is a timestamp or a delta (a
timestamp), and the category of `POST /v1/uploads/images` (counted as `async_submit`). `/uploads/...` and
`/outputs/...` are file hosting, not the API: no rate-limit headers there. No `X-Request-Id` is sent (none
is documented). Scripted 429s (`fail_next_submit(429, ...)`, `fail_next_polls(n, 429)`) carry exhausted
headers (`Remaining: 0`, a reset `retry_after` or 5 s ahead) and a `Retry-After` only when one was given.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import math
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from aiohttp import web

from tests.fakes.local_server import DROPPED, Handler, LocalServer
from tests.fakes.rate_limits import Clock, TokenBucket, Window, retry_after_text
from tests.fakes.wavespeed_server import default_mp4

Outcome = Literal["completed", "failed", "policy", "never", "unknown_status"]

MODEL_23 = "MiniMax-Hailuo-2.3"
MODEL_23_FAST = "MiniMax-Hailuo-2.3-Fast"
MODEL_02 = "MiniMax-Hailuo-02"
RESOLUTIONS = {MODEL_23: ("768P", "1080P"), MODEL_23_FAST: ("768P", "1080P"), MODEL_02: ("512P", "768P", "1080P")}
MAX_PROMPT = 2000
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_IMAGE_BYTES = 20 * 1024 * 1024
UNKNOWN_STATUS_WORD = "upscaling"
POLICY_MESSAGE = "Generation failed: Content violates the content policy"
FAILED_MESSAGE = "Generation failed: upstream render error"
QUEUE_SHARE = 0.25  # time-based tasks report `queued` for the first quarter of their duration
STALE_BY = 600  # seconds a `stale=True` event is backdated
SUBMIT = "async_submit"
QUERY = "async_query"
RATE_LIMIT_MESSAGE = "Async task request rate exceeded"
SCRIPTED_429_WAIT = 5.0  # seconds ahead a scripted 429 without `retry_after` puts its reset
_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
    (b"GIF87a", "image/gif", "gif"),
    (b"GIF89a", "image/gif", "gif"),
)


@dataclass(frozen=True)
class RateTier:
    """One category's limits (§9): requests per minute, per second, and a burst per `burst_window_s`."""

    per_minute: int
    per_second: int
    burst: int
    burst_window_s: float = 10.0

    def buckets(self, now: float) -> tuple[TokenBucket, ...]:
        """The category's buckets, the per-minute one (the one the headers describe) first."""
        windows = (Window(self.per_minute, 60.0), Window(self.per_second, 1.0), Window(self.burst, self.burst_window_s))
        return tuple(window.bucket(now) for window in windows)


SUBMIT_TIER = RateTier(per_minute=300, per_second=5, burst=50)
QUERY_TIER = RateTier(per_minute=3000, per_second=50, burst=500)


@dataclass
class _Admission:
    """The rate-limit bookkeeping of one `/v1` request."""

    category: str
    buckets: tuple[TokenBucket, ...]
    took: bool = False  # a token was taken from every bucket (given back if the answer is a 429)


_RATE = web.RequestKey("toapis_rate", _Admission)


@dataclass
class Scenario:
    """How one task behaves. Poll-based when `queued_polls` or `processing_polls` is set, else time-based.

    `unknown_status` reports an unknown status word where `in_progress` would be, then completes; `policy`
    fails with a content-policy message.
    """

    duration_s: float | None = None  # None → the fake's default duration
    queued_polls: int | None = None
    processing_polls: int | None = None
    outcome: Outcome = "completed"
    output_bytes: bytes | None = None  # None → a small valid mp4
    output_status: int = 200

    @property
    def poll_based(self) -> bool:
        return self.queued_polls is not None or self.processing_polls is not None


@dataclass
class FakeTask:
    id: str
    model: str
    body: dict[str, Any]
    scenario: Scenario
    duration_s: float
    submitted_at: float  # time.time()
    polls: int = 0  # polls answered with the task's status (injected failures not counted)
    terminal_seen_at: float | None = None
    output_requests: int = 0
    _terminal_at: float | None = field(default=None, repr=False)

    @property
    def callback_url(self) -> str | None:
        metadata = self.body.get("metadata")
        url = metadata.get("callback_url") if isinstance(metadata, dict) else None
        return url if isinstance(url, str) else None

    @property
    def completed_at(self) -> float | None:
        """When the status first became terminal (time-based: the scheduled moment, polled or not)."""
        if self.scenario.outcome == "never":
            return None
        if self.scenario.poll_based:
            return self._terminal_at
        end = self.submitted_at + self.duration_s
        return end if time.time() >= end else None

    @property
    def failed(self) -> bool:
        return self.scenario.outcome in ("failed", "policy")

    def phase(self, now: float) -> Literal["queued", "processing", "terminal"]:
        sc = self.scenario
        if sc.poll_based:
            queued, processing = sc.queued_polls or 0, sc.processing_polls or 0
            if self.polls <= queued:
                return "queued"
            phase: Literal["processing", "terminal"] = "processing" if self.polls <= queued + processing else "terminal"
        else:
            elapsed = now - self.submitted_at
            if elapsed < self.duration_s * QUEUE_SHARE:
                return "queued"
            phase = "processing" if elapsed < self.duration_s else "terminal"
        return "processing" if sc.outcome == "never" else phase

    def progress(self, now: float) -> int:
        sc = self.scenario
        if sc.poll_based:
            done = self.polls - (sc.queued_polls or 0)
            share = done / ((sc.processing_polls or 0) + 1)
        else:
            share = (now - self.submitted_at) / self.duration_s
        return max(1, min(99, int(share * 100)))


@dataclass(frozen=True)
class UploadRecord:
    id: str
    filename: str | None
    size: int
    content_type: str | None  # the part's declared Content-Type
    url: str


@dataclass(frozen=True)
class SentWebhook:
    task_id: str
    url: str
    event_id: str
    headers: dict[str, str]
    body: bytes
    status: int | None  # the receiver's answer; None when it could not be reached
    error: str = ""


@dataclass(frozen=True)
class _Failure:
    status: int
    code: int | str
    message: str
    type: str | None = None
    retry_after: float | None = None


@dataclass
class _UploadFailure:
    status: int
    message: str
    after: int  # successful uploads still to let through first


def _error(
    status: int, code: int | str, message: str, type_: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    error: dict[str, object] = {"code": code, "message": message}
    if type_ is not None:
        error["type"] = type_
    return web.json_response({"error": error}, status=status, headers=headers)


def _invalid(message: str) -> web.Response:
    return _error(400, "invalid_request", message, "invalid_request_error")


def _unauthorized() -> web.Response:
    return _error(401, 401, "Authentication failed, please check your API key", "authentication_error")


def minute_window_end(now: float) -> float:
    """The end of the minute `now` falls in, as a Unix time: when the per-minute allowance resets."""
    return (math.floor(now / 60) + 1) * 60.0


def _rate_headers(category: str, limit: float, remaining: int, reset: float) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(int(limit)),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": str(math.ceil(reset)),
        "X-RateLimit-Category": category,
    }


def sign(secret: str, event_id: str, timestamp: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of `event_id.timestamp.body` (§8)."""
    return hmac.new(secret.encode(), f"{event_id}.{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


class FakeToApis(LocalServer):
    def __init__(
        self,
        api_key: str = "ta-test-key",
        *,
        duration_s: float = 0.5,
        webhook_secret: str | None = None,
        previous_webhook_secret: str | None = None,
        submit_limits: RateTier = SUBMIT_TIER,
        query_limits: RateTier = QUERY_TIER,
        clock: Clock = time.time,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.limits = {SUBMIT: submit_limits, QUERY: query_limits}
        self.clock = clock
        self.rate_limited: list[tuple[str, float]] = []  # (category, clock time) of every 429 the limits gave
        self.default_duration_s = duration_s
        self.webhook_secret = webhook_secret
        self.previous_webhook_secret = previous_webhook_secret
        self.submits: list[object] = []  # the JSON body of every generation POST received
        self.uploads: list[UploadRecord] = []  # every accepted upload
        self.tasks: dict[str, FakeTask] = {}
        self.webhooks: list[SentWebhook] = []  # every event sent, automatic or by `send_event`
        self._images: dict[str, tuple[bytes, str]] = {}  # served name → (bytes, mime)
        self._scenarios: deque[Scenario] = deque()
        self._submit_failures: deque[_Failure] = deque()
        self._upload_failures: deque[_UploadFailure] = deque()
        self._poll_failures: deque[_Failure | None] = deque()  # None = malformed body
        self._drop_next_submit = False
        self._slow_next_submit = 0.0
        self._timers: list[asyncio.TimerHandle] = []
        self._webhook_arrived = asyncio.Condition()
        self._buckets: dict[tuple[str, str], tuple[TokenBucket, ...]] = {}  # (Authorization, category) → buckets

    # ----- lifecycle (LocalServer) -------------------------------------------------------------------

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/uploads/images", self._upload)
        router.add_post("/v1/videos/generations", self._submit)
        router.add_get("/v1/videos/generations/{task_id}", self._poll)
        router.add_get("/uploads/{name}", self._uploaded)
        router.add_get("/outputs/{task_id}.mp4", self._output)

    async def start(self) -> None:
        await super().start()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        await super().stop()

    # ----- scripting ---------------------------------------------------------------------------------

    def next_scenario(self, **kw: Any) -> Scenario:
        """Queue a Scenario (see its fields) for the next task created; later calls queue behind it."""
        scenario = Scenario(**kw)
        self._scenarios.append(scenario)
        return scenario

    def fail_next_submit(
        self,
        status: int,
        code: int | str,
        message: str,
        type: str | None = None,  # the wire field's name
        retry_after: float | None = None,
        rate_headers: bool = False,
    ) -> None:
        """The next generation POST answers this error (before validation, creating nothing).

        `rate_headers` is kept for older callers: every answer carries `X-RateLimit-*` now, and a scripted
        429 always carries exhausted ones."""
        del rate_headers
        self._submit_failures.append(_Failure(status, code, message, type, retry_after))

    def fail_next_upload(self, status: int, message: str = "Upload failed", *, after: int = 0) -> None:
        """An upload answers `{"success": false, "message": ...}` with this status, after `after` more succeed."""
        self._upload_failures.append(_UploadFailure(status, message, after))

    def fail_next_polls(self, n: int, status: int, retry_after: float | None = None) -> None:
        code, message, type_ = {
            429: ("rate_limit_exceeded", "Async task request rate exceeded", None),
            401: (401, "Authentication failed, please check your API key", "authentication_error"),
        }.get(status, ("internal_error", "Internal server error", "server_error"))
        failure = _Failure(status, code, message, type_, retry_after)
        self._poll_failures.extend(failure for _ in range(n))

    def malformed_next_polls(self, n: int) -> None:
        self._poll_failures.extend(None for _ in range(n))

    def drop_next_submit_after_create(self) -> None:
        """The next valid generation POST creates its task, then closes the connection without answering."""
        self._drop_next_submit = True

    def slow_next_submit(self, seconds: float) -> None:
        """The next valid generation POST creates its task, then waits `seconds` before answering."""
        self._slow_next_submit = seconds

    def poll_count(self, task_id: str) -> int:
        task = self.tasks.get(task_id)
        return task.polls if task else 0

    def output_url(self, task_id: str) -> str:
        return f"{self.base_url}/outputs/{task_id}.mp4"

    async def wait_for_webhooks(self, count: int, timeout: float = 5.0) -> list[SentWebhook]:
        """Wait until `count` events have been sent (answered or failed); return them all."""
        async with asyncio.timeout(timeout), self._webhook_arrived:
            await self._webhook_arrived.wait_for(lambda: len(self.webhooks) >= count)
        return list(self.webhooks)

    async def send_event(
        self, task_id: str, *, stale: bool = False, bad_signature: bool = False, event_id: str | None = None
    ) -> SentWebhook:
        """Send the task's final event to its callback URL now. `event_id` repeats an earlier delivery."""
        task = self.tasks[task_id]
        if task.callback_url is None or self.webhook_secret is None:
            raise ValueError("the task has no callback_url or the fake has no webhook secret")
        return await self._deliver(task, task.callback_url, stale=stale, bad_signature=bad_signature, event_id=event_id)

    # ----- rate limits (§9) ------------------------------------------------------------------

    def _admit(self, request: web.Request, category: str) -> web.Response | None:
        """Take a token from each of the caller's buckets of `category`, or the 429 when one is empty."""
        now = self.clock()
        key = (request.headers.get("Authorization", ""), category)
        buckets = self._buckets.get(key)
        if buckets is None:
            buckets = self._buckets[key] = self.limits[category].buckets(now)
        admission = request[_RATE] = _Admission(category, buckets)
        waits = [bucket.wait(now) for bucket in buckets]
        if max(waits) > 0:
            self.rate_limited.append((category, now))
            refusing = buckets[waits.index(max(waits))]
            headers = _rate_headers(category, refusing.capacity, 0, refusing.full_at(now))
            headers["Retry-After"] = retry_after_text(max(waits))
            return _error(429, "rate_limit_exceeded", RATE_LIMIT_MESSAGE, headers=headers)
        for bucket in buckets:
            bucket.take(now)
        admission.took = True
        return None

    async def answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        admission = request.get(_RATE)
        if admission is None:  # not the API (file hosting, unknown routes)
            return response
        now = self.clock()
        if admission.took and response.status == 429:  # a scripted 429: 429s use no allowance
            for bucket in admission.buckets:
                bucket.give_back(now)
        if "X-RateLimit-Limit" not in response.headers:
            minute = admission.buckets[0]
            if response.status == 429:
                headers = _rate_headers(admission.category, minute.capacity, 0, now + SCRIPTED_429_WAIT)
            else:
                remaining = minute.remaining(now)
                headers = _rate_headers(admission.category, minute.capacity, remaining, minute_window_end(now))
            response.headers.update(headers)
        return response

    def _failure_response(self, failure: _Failure, category: str) -> web.Response:
        headers: dict[str, str] = {}
        if failure.status == 429:
            wait = failure.retry_after if failure.retry_after is not None else SCRIPTED_429_WAIT
            limit = self.limits[category].per_minute
            headers.update(_rate_headers(category, limit, 0, self.clock() + wait))
        if failure.retry_after is not None:
            headers["Retry-After"] = f"{failure.retry_after:g}"
        return _error(failure.status, failure.code, failure.message, failure.type, headers)

    # ----- handlers ----------------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        if limited := self._admit(request, SUBMIT):
            return limited
        if not self._authorized(request):
            return _unauthorized()
        if self._upload_failures:
            failure = self._upload_failures[0]
            if failure.after > 0:
                failure.after -= 1
            else:
                self._upload_failures.popleft()
                return web.json_response({"success": False, "message": failure.message}, status=failure.status)
        try:
            part = await _file_part(request)
        except (ValueError, aiohttp.ClientError, AssertionError):
            part = None
        if part is None:
            return web.json_response({"success": False, "message": "file is required"}, status=400)
        filename, content_type, data = part
        if len(data) > MAX_UPLOAD_BYTES:
            return web.json_response({"success": False, "message": "Image too large. Maximum size is 10MB"}, status=400)
        kind = _sniff(data)
        if kind is None:
            message = "Unsupported image type. Allowed: JPEG, PNG, WebP, GIF"
            return web.json_response({"success": False, "message": message}, status=400)
        mime, extension = kind
        upload_id = f"upload_{uuid.uuid4().hex[:12]}"
        name = f"{upload_id}.{extension}"
        self._images[name] = (data, mime)
        url = f"{self.base_url}/uploads/{name}"
        self.uploads.append(UploadRecord(upload_id, filename, len(data), content_type, url))
        payload = {"id": upload_id, "url": url, "mime_type": mime, "size": len(data)}
        return web.json_response({"success": True, "message": "", "data": payload})

    async def _uploaded(self, request: web.Request) -> web.StreamResponse:
        image = self._images.get(request.match_info["name"])
        if image is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=image[0], content_type=image[1])

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        try:
            body: object = await request.json()
        except ValueError:
            body = None
        self.submits.append(body)
        if limited := self._admit(request, SUBMIT):
            return limited
        if not self._authorized(request):
            return _unauthorized()
        if self._submit_failures:
            return self._failure_response(self._submit_failures.popleft(), SUBMIT)
        if not isinstance(body, dict):
            return _invalid("request body must be a JSON object")
        if problem := self.validate_body(body):
            return _invalid(problem)
        if body.get("metadata", {}).get("callback_url") is not None and self.webhook_secret is None:
            message = "Task webhooks are not configured for this token"
            return _error(400, "webhook_not_configured", message, "invalid_request_error")
        task = self._create(body)
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
        return web.json_response({**self._task_object(task, "queued", 0), "metadata": {}})

    def _create(self, body: dict[str, Any]) -> FakeTask:
        scenario = self._scenarios.popleft() if self._scenarios else Scenario()
        duration = scenario.duration_s if scenario.duration_s is not None else self.default_duration_s
        task = FakeTask(f"vid_{uuid.uuid4().hex.upper()[:26]}", body["model"], body, scenario, duration, time.time())
        self.tasks[task.id] = task
        if not scenario.poll_based and scenario.outcome != "never":
            loop = asyncio.get_running_loop()
            self._timers.append(loop.call_later(duration, self._task_ended, task))
        return task

    async def _poll(self, request: web.Request) -> web.StreamResponse:
        if limited := self._admit(request, QUERY):
            return limited
        if not self._authorized(request):
            return _unauthorized()
        if self._poll_failures:
            failure = self._poll_failures.popleft()
            if failure is None:
                return web.Response(text='{"id":"vid_', content_type="application/json")
            return self._failure_response(failure, QUERY)
        task = self.tasks.get(request.match_info["task_id"])
        if task is None:
            return _error(404, 404, "Task not found", "not_found_error")
        task.polls += 1
        now = time.time()
        phase = task.phase(now)
        if phase == "queued":
            return web.json_response(self._task_object(task, "queued", 0))
        if phase == "processing":
            word = UNKNOWN_STATUS_WORD if task.scenario.outcome == "unknown_status" else "in_progress"
            return web.json_response(self._task_object(task, word, task.progress(now)))
        if task._terminal_at is None:
            task._terminal_at = now
            if task.scenario.poll_based:
                self._task_ended(task)
        task.terminal_seen_at = task.terminal_seen_at or now
        return web.json_response(self._final_object(task))

    async def _output(self, request: web.Request) -> web.StreamResponse:
        task = self.tasks.get(request.match_info["task_id"])
        if task is None:
            return web.Response(status=404, text="Not Found")
        task.output_requests += 1
        sc = task.scenario
        if sc.output_status != 200:
            return web.Response(status=sc.output_status, text="output unavailable")
        data = sc.output_bytes if sc.output_bytes is not None else await asyncio.to_thread(default_mp4)
        return web.Response(body=data, content_type="video/mp4")

    # ----- task objects ------------------------------------------------------------------------------

    def _task_object(self, task: FakeTask, status: str, progress: int) -> dict[str, object]:
        return {
            "id": task.id,
            "object": "generation.task",
            "model": task.model,
            "status": status,
            "progress": progress,
            "created_at": int(task.submitted_at),
        }

    def _final_object(self, task: FakeTask) -> dict[str, object]:
        if task.failed:
            return {**self._task_object(task, "failed", 0), "error": self._error_object(task)}
        done = int(task.completed_at or time.time())
        return {
            **self._task_object(task, "completed", 100),
            "completed_at": done,
            "expires_at": done + 86_400,
            "result": {"type": "video", "data": [{"url": self.output_url(task.id), "format": "mp4"}]},
        }

    def _error_object(self, task: FakeTask) -> dict[str, str]:
        message = POLICY_MESSAGE if task.scenario.outcome == "policy" else FAILED_MESSAGE
        return {"code": "generation_failed", "message": message}

    # ----- webhooks ----------------------------------------------------------------------------------

    def _task_ended(self, task: FakeTask) -> None:
        url = task.callback_url
        if url is None or self.webhook_secret is None:
            return
        job = asyncio.get_running_loop().create_task(self._deliver(task, url))
        self._background.add(job)
        job.add_done_callback(self._background.discard)

    def _event(self, task: FakeTask, event_id: str) -> dict[str, object]:
        done = int(task.completed_at or time.time())
        data: dict[str, object] = {
            "task_id": task.id,
            "task_type": "video",
            "model": task.model,
            "status": "FAILURE" if task.failed else "SUCCESS",
            "progress": "100%",
            "result": None if task.failed else {"type": "video", "data": [{"url": self.output_url(task.id)}]},
            "error": self._error_object(task) if task.failed else None,
            "submitted_at": int(task.submitted_at),
            "finished_at": done,
        }
        kind = "generation.failed" if task.failed else "generation.completed"
        return {"id": event_id, "type": kind, "api_version": "v1", "created_at": int(time.time()), "data": data}

    async def _deliver(
        self,
        task: FakeTask,
        url: str,
        *,
        stale: bool = False,
        bad_signature: bool = False,
        event_id: str | None = None,
    ) -> SentWebhook:
        assert self.webhook_secret is not None and self._session is not None
        event_id = event_id or f"evt_{uuid.uuid4().hex[:20]}"
        body = json.dumps(self._event(task, event_id)).encode()
        timestamp = str(int(time.time()) - (STALE_BY if stale else 0))
        secret = self.webhook_secret + ("-wrong" if bad_signature else "")
        signatures = [f"v1={sign(secret, event_id, timestamp, body)}"]
        if self.previous_webhook_secret:
            signatures.append(f"v1={sign(self.previous_webhook_secret, event_id, timestamp, body)}")
        headers = {
            "User-Agent": "ToAPIs-Webhook/1.0",
            "Content-Type": "application/json",
            "X-ToAPIs-Webhook-Id": event_id,
            "X-ToAPIs-Webhook-Timestamp": timestamp,
            "X-ToAPIs-Webhook-Signature": ",".join(signatures),
        }
        status: int | None = None
        error = ""
        try:
            async with self._session.post(url, data=body, headers=headers, allow_redirects=False) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = type(exc).__name__
        sent = SentWebhook(task.id, url, event_id, headers, body, status, error)
        async with self._webhook_arrived:
            self.webhooks.append(sent)
            self._webhook_arrived.notify_all()
        return sent

    # ----- request validation (§4) ------------------------------------------------------

    def validate_body(self, body: dict[str, Any]) -> str | None:
        """The 400 message for a generation body ToAPIs would refuse, or None when it is acceptable."""
        model = body.get("model")
        if model not in RESOLUTIONS:
            return f"unsupported model: {model}"
        images = body.get("image_urls")
        if images is not None and (problem := self._check_image_urls(images)):
            return problem
        i2v = images is not None
        if model == MODEL_23_FAST and not i2v:
            return "image_urls is required for MiniMax-Hailuo-2.3-Fast"
        prompt = body.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            return "prompt must be a string"
        if not (isinstance(prompt, str) and prompt.strip()) and (not i2v or model != MODEL_02):
            return "prompt is required"
        if isinstance(prompt, str) and len(prompt) > MAX_PROMPT:
            return f"prompt must be at most {MAX_PROMPT} characters"
        duration = body.get("duration", 6)
        if isinstance(duration, bool) or duration not in (6, 10):
            return "duration must be 6 or 10"
        resolution = body.get("resolution", "768P")
        if resolution not in RESOLUTIONS[model] or (resolution == "512P" and not i2v):
            return f"resolution {resolution} is not supported for {model}"
        if resolution == "1080P" and duration != 6:
            return "1080P supports 6-second videos only"
        metadata = body.get("metadata", {})
        if not isinstance(metadata, dict):
            return "metadata must be an object"
        return self._check_metadata(metadata, model, resolution, i2v)

    def _check_image_urls(self, images: object) -> str | None:
        if not isinstance(images, list) or len(images) != 1 or not isinstance(images[0], str):
            return "image_urls must be an array with one image URL"
        return self._check_public_url(images[0], "image_urls")

    def _check_metadata(self, metadata: dict[str, Any], model: str, resolution: str, i2v: bool) -> str | None:
        for flag in ("prompt_optimizer", "fast_pretreatment", "aigc_watermark"):
            if flag in metadata and not isinstance(metadata[flag], bool):
                return f"metadata.{flag} must be a boolean"
        callback = metadata.get("callback_url")
        if callback is not None and not (isinstance(callback, str) and callback.startswith(("http://", "https://"))):
            return "metadata.callback_url must be a URL"
        last = metadata.get("last_frame_image")
        if last is None:
            return None
        if model != MODEL_02:
            return "metadata.last_frame_image is only supported by MiniMax-Hailuo-02"
        if not i2v:
            return "metadata.last_frame_image needs a first frame in image_urls"
        if resolution == "512P":
            return "first-last-frame generation does not support 512P"
        if not isinstance(last, str):
            return "metadata.last_frame_image must be a URL"
        return self._check_public_url(last, "metadata.last_frame_image")

    def _check_public_url(self, url: str, name: str) -> str | None:
        if url.startswith("data:") or ";base64," in url:
            return f"{name}: base64 images are not supported, upload the image first"
        if not url.startswith(("http://", "https://")):
            return f"{name} must be a public image URL"
        prefix = f"{self.base_url}/uploads/"
        if not url.startswith(prefix):
            return None  # someone else's host: not fetched here
        image = self._images.get(url.removeprefix(prefix))
        if image is None:
            return f"{name}: image could not be downloaded"
        return _image_problem(image[0], name)


async def _file_part(request: web.Request) -> tuple[str | None, str | None, bytes] | None:
    """(filename, declared content type, bytes) of the multipart field `file`, read up to just over the cap."""
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, aiohttp.BodyPartReader) or part.name != "file":
            continue
        data = bytearray()
        while chunk := await part.read_chunk(64 * 1024):
            data.extend(chunk)
            if len(data) > MAX_UPLOAD_BYTES:
                break
        return part.filename, part.headers.get("Content-Type"), bytes(data)
    return None


def _sniff(data: bytes) -> tuple[str, str] | None:
    for magic, mime, extension in _MAGIC:
        if data.startswith(magic):
            return mime, extension
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", "webp"
    return None


def _image_problem(data: bytes, name: str) -> str | None:
    """The model's image rules (§4): JPG/PNG/WebP, under 20 MB, short side > 300 px, aspect 2:5–5:2."""
    from PIL import Image, UnidentifiedImageError

    if len(data) >= MAX_IMAGE_BYTES:
        return f"{name}: image must be under 20MB"
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, (width, height) = img.format, img.size
    except (UnidentifiedImageError, OSError):
        return f"{name}: image could not be decoded"
    if fmt not in ("JPEG", "PNG", "WEBP"):
        return f"{name}: format must be JPG, JPEG, PNG or WebP"
    if min(width, height) <= 300:
        return f"{name}: image short side must be greater than 300px"
    if not 2 / 5 <= width / height <= 5 / 2:
        return f"{name}: aspect ratio must be between 2:5 and 5:2"
    return None
