"""A local stand-in for SeaArt's SeaCloud queue API on a real socket, scriptable per task.

The wire facts are in docs/providers/seaart.md; the § numbers below are its sections.

Wire behaviour follows the reference: everything under `{base_url}` = `http://127.0.0.1:<port>/model`;
`POST /v1/queue/{endpoint}` answers `request_id`, `response_url`, `status_url`, `cancel_url` and
`queue_position: 0`; `GET .../requests/{id}/status` says `IN_QUEUE` | `IN_PROGRESS` | `COMPLETED` (a failure
is `COMPLETED` plus `error` and `error_type`); `GET .../response` answers 202 with the status body until the
task is done; `PUT .../cancel` answers 202 `CANCELLATION_REQUESTED`, 400 `ALREADY_COMPLETED` or 404
`NOT_FOUND`. Errors are `{"error":{"code","message"},"request_id"}` from the gateway or `{"detail": ...}`.
Any webhook field (body, query or header) is refused with `{"detail":"webhook not supported"}`. Both
`Authorization: Bearer <key>` and `Key <key>` are accepted. Output files are served without auth (like a
CDN) under `/outputs/{id}.mp4`.

Assumptions where the reference says UNCONFIRMED: a create answers HTTP 200; validation errors are HTTP
400 `{"detail": ...}`; gateway auth errors are 401 and rate limits 429; "Model not allowed" is 403 and
"App not found" 404; cancel bodies are `{"status": "<word>"}`; `/response` of a failed task answers 200
with the failed status body. Unknown body fields are refused, so a misspelt parameter cannot pass silently.

Rate limit: SeaArt publishes no numbers, so it is off unless `rate_limit=Window(requests, seconds)` is given:
then every authenticated queue API request (create, status, response, cancel; the key's own, in a rolling
window on the fake's `clock`, `time.time` unless given) counts, and one over it answers the gateway's 429
`{"error":{"code":"RATE_LIMIT_EXCEEDED","message":"Rate limit exceeded, please try again later"},
"request_id":"..."}` without counting (no `Retry-After`: none is documented). Every gateway error carries a
`request_id`; the app's `{"detail": ...}` errors do not. JSON answers are `application/json`; no request-id
header is sent (none is documented).

Tests script the next task with `next_scenario(...)` and inject failures with `fail_next_submit`,
`fail_next_polls` (on `/status`), `fail_next_results` (on `/response`), `malformed_next_polls`,
`drop_next_submit_after_create` and `slow_next_submit`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from tests.fakes.local_server import DROPPED, Handler, LocalServer
from tests.fakes.rate_limits import Clock, Window
from tests.fakes.wavespeed_server import default_mp4

Outcome = Literal["completed", "failed", "blocked", "never", "cancelled", "unknown_status"]
Phase = Literal["queued", "processing", "terminal"]

BASE_PATH = "/model"
# endpoint → whether it needs `first_frame_image` (§3).
ENDPOINTS: dict[str, bool] = {
    "minimax_hailuo_23_t2v": False,
    "minimax_hailuo_23_i2v": True,
    "minimax_hailuo_23_fast_i2v": True,
}
COMMON_FIELDS = frozenset(
    {"prompt", "duration", "resolution", "prompt_optimizer", "fast_pretreatment", "aigc_watermark"}
)
BOOL_FIELDS = ("prompt_optimizer", "fast_pretreatment", "aigc_watermark")
DURATIONS_BY_RESOLUTION: dict[str, tuple[int, ...]] = {"768P": (6, 10), "1080P": (6,)}
# The 15 camera instructions SeaArt documents (§3); English brackets are not among them.
CHINESE_DIRECTIVES = frozenset({
    "左移", "右移", "左摇", "右摇", "推进", "拉远", "上升", "下降",
    "上摇", "下摇", "变焦推近", "变焦拉远", "晃动", "跟随", "固定",
})  # fmt: skip
MAX_PER_GROUP = 3
DIRECTIVE_SEPARATORS = ",，、"
MAX_PROMPT_CHARS = 2000
IMAGE_MIMES = ("image/jpeg", "image/jpg", "image/png", "image/webp")
MAX_IMAGE_BYTES = 20 * 1024 * 1024
WEBHOOK_WORDS = ("webhook", "callback")
UNKNOWN_STATUS_WORD = "IN_RECOVERY"
QUEUE_SHARE = 0.25  # time-based tasks report IN_QUEUE for the first quarter of their duration
FAILURE_TEXT = {
    "failed": "Task execution failed",
    "blocked": "Content blocked by the safety filter",
    "cancelled": "Task canceled",
}


@dataclass
class Scenario:
    """How one task behaves. Poll-based when `queued_polls` or `processing_polls` is set, else time-based.

    `failed` ends COMPLETED with `error_type` (default INFERENCE_FAILURE); `blocked` with CONTENT_BLOCKED;
    `cancelled` with CANCELED (as if cancelled elsewhere); `unknown_status` reports an unknown status word
    where IN_PROGRESS would be, then completes. `response_pending` makes that many `/response` requests
    after completion still answer 202 (the result not stored yet).
    """

    duration_s: float | None = None  # None → the fake's default duration
    queued_polls: int | None = None
    processing_polls: int | None = None
    outcome: Outcome = "completed"
    error_type: str = ""
    error_text: str = ""  # the `error` of a failed task ("" → SeaArt's usual text)
    queue_position: int = 0
    response_pending: int = 0
    output_bytes: bytes | None = None  # None → a small valid mp4
    output_status: int = 200

    @property
    def poll_based(self) -> bool:
        return self.queued_polls is not None or self.processing_polls is not None


@dataclass
class FakeTask:
    id: str
    endpoint: str
    body: dict[str, object]
    scenario: Scenario
    duration_s: float
    submitted_at: float  # time.time()
    polls: int = 0  # /status answers with the task's status (injected failures not counted)
    result_requests: int = 0
    output_requests: int = 0
    cancelled_at: float | None = None  # when a cancel was accepted
    terminal_seen_at: float | None = None  # first time /status answered COMPLETED
    _terminal_at: float | None = field(default=None, repr=False)

    @property
    def completed_at(self) -> float | None:
        """When the task became terminal (time-based: the scheduled moment, polled or not)."""
        if self.cancelled_at is not None:
            return self.cancelled_at
        if self.scenario.outcome == "never":
            return None
        if self.scenario.poll_based:
            return self._terminal_at
        end = self.submitted_at + self.duration_s
        return end if time.time() >= end else None

    def phase(self, now: float) -> Phase:
        if self.cancelled_at is not None:
            return "terminal"
        sc = self.scenario
        if sc.poll_based:
            queued, processing = sc.queued_polls or 0, sc.processing_polls or 0
            if self.polls <= queued:
                return "queued"
            phase: Phase = "processing" if self.polls <= queued + processing else "terminal"
        else:
            elapsed = now - self.submitted_at
            if elapsed < self.duration_s * QUEUE_SHARE:
                return "queued"
            phase = "processing" if elapsed < self.duration_s else "terminal"
        return "processing" if sc.outcome == "never" else phase

    def failure(self) -> tuple[str, str] | None:
        """`(error, error_type)` of a finished task, None when it succeeded."""
        outcome = "cancelled" if self.cancelled_at is not None else self.scenario.outcome
        if outcome == "failed":
            return self.scenario.error_text or FAILURE_TEXT["failed"], self.scenario.error_type or "INFERENCE_FAILURE"
        if outcome == "blocked":
            return FAILURE_TEXT["blocked"], "CONTENT_BLOCKED"
        if outcome == "cancelled":
            return FAILURE_TEXT["cancelled"], "CANCELED"
        return None


@dataclass(frozen=True)
class _Failure:
    status: int
    body: object  # JSON, or None for a truncated (malformed) body
    retry_after: float | None = None


def gateway_error(code: str, message: str) -> dict[str, object]:
    return {"error": {"code": code, "message": message}, "request_id": uuid.uuid4().hex}


def _json(status: int, body: object, retry_after: float | None = None) -> web.Response:
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
    return web.json_response(body, status=status, headers=headers)


def _default_error_body(status: int) -> dict[str, object]:
    if status == 429:
        return gateway_error("RATE_LIMIT_EXCEEDED", "Rate limit exceeded, please try again later")
    if status == 401:
        return gateway_error("UNAUTHORIZED", "Authorization Bearer or Key token is required")
    if status == 404:
        return {"detail": "Request not found"}
    return {"detail": "Runtime execution failed"}


class FakeSeaArt(LocalServer):
    client_max_size = 32 * 1024 * 1024  # room for a 20 MB image as base64 in a data URL

    def __init__(
        self,
        api_key: str = "sa-test-key",
        *,
        duration_s: float = 0.5,
        rate_limit: Window | None = None,
        clock: Clock = time.time,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.clock = clock
        self.rate_limited: list[float] = []  # clock time of every request refused by `rate_limit`
        self._window = rate_limit.sliding() if rate_limit is not None else None
        self.default_duration_s = duration_s
        self.submits: list[tuple[str, object]] = []  # every POST received: (endpoint, json body)
        self.tasks: dict[str, FakeTask] = {}
        self.cancel_requests: list[str] = []  # request ids of every cancel received
        self._scenarios: deque[Scenario] = deque()
        self._submit_failures: deque[_Failure] = deque()
        self._poll_failures: deque[_Failure] = deque()
        self._result_failures: deque[_Failure] = deque()
        self._drop_next_submit = False
        self._slow_next_submit = 0.0

    # ----- lifecycle (LocalServer) -------------------------------------------------------------------

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.origin + BASE_PATH

    async def answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPNotFound:  # unknown routes (`/sync` included) answer like SeaArt's FastAPI
            return web.json_response({"detail": "Not Found"}, status=404)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        queue = f"{BASE_PATH}/v1/queue/{{endpoint}}"
        router.add_post(queue, self._submit)
        router.add_get(queue + "/requests/{rid}/status", self._status)
        router.add_get(queue + "/requests/{rid}/status/stream", self._stream)
        router.add_get(queue + "/requests/{rid}/response", self._response)
        router.add_put(queue + "/requests/{rid}/cancel", self._cancel)
        router.add_get("/outputs/{rid}.mp4", self._output)

    # ----- scripting ---------------------------------------------------------------------------------

    def next_scenario(self, **kw: Any) -> Scenario:
        """Queue a Scenario (see its fields) for the next task created; later calls queue behind it."""
        scenario = Scenario(**kw)
        self._scenarios.append(scenario)
        return scenario

    def fail_next_submit(self, status: int, body_json: object, *, retry_after: float | None = None) -> None:
        """The next submit (after the auth check) answers `body_json` with `status` and creates nothing."""
        self._submit_failures.append(_Failure(status, body_json, retry_after))

    def fail_next_polls(
        self, n: int, status: int, retry_after: float | None = None, body_json: object | None = None
    ) -> None:
        """The next `n` `/status` requests answer an error (a SeaArt-shaped body for `status` by default)."""
        body = body_json if body_json is not None else _default_error_body(status)
        self._poll_failures.extend(_Failure(status, body, retry_after) for _ in range(n))

    def fail_next_results(
        self, n: int, status: int, retry_after: float | None = None, body_json: object | None = None
    ) -> None:
        """Like `fail_next_polls`, for `/response`."""
        body = body_json if body_json is not None else _default_error_body(status)
        self._result_failures.extend(_Failure(status, body, retry_after) for _ in range(n))

    def malformed_next_polls(self, n: int) -> None:
        self._poll_failures.extend(_Failure(200, None) for _ in range(n))

    def drop_next_submit_after_create(self) -> None:
        """The next submit creates its task, then closes the connection without answering."""
        self._drop_next_submit = True

    def slow_next_submit(self, seconds: float) -> None:
        """The next submit creates its task, then waits `seconds` before answering (client read timeouts)."""
        self._slow_next_submit = seconds

    def poll_count(self, rid: str) -> int:
        task = self.tasks.get(rid)
        return task.polls if task else 0

    def output_url(self, rid: str) -> str:
        return f"{self.origin}/outputs/{rid}.mp4"

    def request_url(self, task: FakeTask, action: str) -> str:
        return f"{self.base_url}/v1/queue/{task.endpoint}/requests/{task.id}/{action}"

    # ----- handlers ----------------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") in (f"Bearer {self.api_key}", f"Key {self.api_key}")

    def _refusal(self, request: web.Request, body: object = None) -> web.Response | None:
        """The gateway's answer to a request it refuses before routing: no auth, over the rate limit, or
        webhook info."""
        if not self._authorized(request):
            return _json(401, _default_error_body(401))
        if self._window is not None:
            now = self.clock()
            if self._window.wait(now) > 0:
                self.rate_limited.append(now)
                return _json(429, _default_error_body(429))
            self._window.add(now)
        if webhook_fields(body, request.query.keys(), request.headers.keys()):
            return _json(400, {"detail": "webhook not supported"})
        return None

    def _task(self, request: web.Request) -> FakeTask | None:
        task = self.tasks.get(request.match_info["rid"])
        return task if task is not None and task.endpoint == request.match_info["endpoint"] else None

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        endpoint = request.match_info["endpoint"]
        try:
            body: object = await request.json()
        except ValueError:
            body = None
        self.submits.append((endpoint, body))
        if refusal := self._refusal(request, body):
            return refusal
        if self._submit_failures:
            failure = self._submit_failures.popleft()
            return _json(failure.status, failure.body, failure.retry_after)
        if endpoint not in ENDPOINTS:
            return _json(404, {"detail": f"App not found: {endpoint}"})
        if not isinstance(body, dict):
            return _json(400, {"detail": "request body must be a JSON object"})
        if problem := validate_body(endpoint, body):
            return _json(400, {"detail": problem})
        task = self._create(endpoint, body)
        return await self._answer_submit(request, task)

    def _create(self, endpoint: str, body: dict[str, object]) -> FakeTask:
        scenario = self._scenarios.popleft() if self._scenarios else Scenario()
        duration = scenario.duration_s if scenario.duration_s is not None else self.default_duration_s
        task = FakeTask(f"mmsu_{uuid.uuid4().hex}", endpoint, body, scenario, duration, time.time())
        self.tasks[task.id] = task
        return task

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
        return web.json_response(
            {
                "request_id": task.id,
                "response_url": self.request_url(task, "response"),
                "status_url": self.request_url(task, "status"),
                "cancel_url": self.request_url(task, "cancel"),
                "queue_position": 0,
            }
        )

    async def _status(self, request: web.Request) -> web.StreamResponse:
        if refusal := self._refusal(request):
            return refusal
        if self._poll_failures:
            failure = self._poll_failures.popleft()
            if failure.body is None:
                return web.Response(text='{"status":"IN_PROG', content_type="application/json")
            return _json(failure.status, failure.body, failure.retry_after)
        task = self._task(request)
        if task is None:
            return _json(404, {"detail": "Request not found"})
        task.polls += 1
        now = time.time()
        phase = task.phase(now)
        if phase == "terminal":
            task._terminal_at = task._terminal_at or now
            task.terminal_seen_at = task.terminal_seen_at or now
        return web.json_response(self._status_body(task, phase))

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        return _json(400, {"detail": "SSE streaming not supported"})

    async def _response(self, request: web.Request) -> web.StreamResponse:
        if refusal := self._refusal(request):
            return refusal
        if self._result_failures:
            failure = self._result_failures.popleft()
            return _json(failure.status, failure.body, failure.retry_after)
        task = self._task(request)
        if task is None:
            return _json(404, {"detail": "Request not found"})
        task.result_requests += 1
        phase = task.phase(time.time())
        if phase != "terminal":
            return _json(202, self._status_body(task, phase))
        if task.scenario.response_pending > 0:
            task.scenario.response_pending -= 1
            return _json(202, self._status_body(task, "processing"))
        if task.failure() is not None:
            return web.json_response(self._status_body(task, phase))
        data = task.scenario.output_bytes
        size = len(data) if data is not None else len(await asyncio.to_thread(default_mp4))
        output = {
            "type": "video",
            "url": self.output_url(task.id),
            "content_type": "video/mp4",
            "file_name": "video.mp4",
            "file_size": size,
            "duration": task.body.get("duration", 6),
        }
        return web.json_response(
            {"request_id": task.id, "outputs": [output], "metadata": {"prompt": task.body.get("prompt", "")}}
        )

    async def _cancel(self, request: web.Request) -> web.StreamResponse:
        if refusal := self._refusal(request):
            return refusal
        self.cancel_requests.append(request.match_info["rid"])
        task = self._task(request)
        if task is None:
            return _json(404, {"status": "NOT_FOUND"})
        if task.phase(time.time()) == "terminal":
            return _json(400, {"status": "ALREADY_COMPLETED"})
        task.cancelled_at = time.time()
        return _json(202, {"status": "CANCELLATION_REQUESTED"})

    async def _output(self, request: web.Request) -> web.StreamResponse:
        task = self.tasks.get(request.match_info["rid"])
        if task is None:
            return web.Response(status=404, text="Not Found")
        task.output_requests += 1
        sc = task.scenario
        if sc.output_status != 200:
            return web.Response(status=sc.output_status, text="output unavailable")
        data = sc.output_bytes if sc.output_bytes is not None else await asyncio.to_thread(default_mp4)
        return web.Response(body=data, content_type="video/mp4")

    def _status_body(self, task: FakeTask, phase: Phase) -> dict[str, object]:
        word = {"queued": "IN_QUEUE", "processing": "IN_PROGRESS", "terminal": "COMPLETED"}[phase]
        if phase == "processing" and task.scenario.outcome == "unknown_status":
            word = UNKNOWN_STATUS_WORD
        body: dict[str, object] = {"status": word, "request_id": task.id}
        if phase == "queued":
            body["queue_position"] = task.scenario.queue_position
        body["response_url"] = self.request_url(task, "response")
        if phase == "terminal":
            done = task.completed_at or time.time()
            body["metrics"] = {"inference_time": round(done - task.submitted_at, 2)}
            if failure := task.failure():
                body["error"], body["error_type"] = failure
        return body


# ----- request validation (§3, §8) ----------------------------------------------------------


def webhook_fields(body: object, *names: Iterable[str]) -> list[str]:
    """Names (body keys, query keys, header names) that carry webhook information."""
    keys = list(body) if isinstance(body, Mapping) else []
    for group in names:
        keys.extend(group)
    return [key for key in keys if any(word in key.lower() for word in WEBHOOK_WORDS)]


def validate_body(endpoint: str, body: Mapping[str, object]) -> str | None:
    """The 400 `detail` for a body this endpoint would refuse, or None when it is acceptable."""
    needs_image = ENDPOINTS[endpoint]
    allowed = COMMON_FIELDS | {"first_frame_image"} if needs_image else COMMON_FIELDS
    if unknown := sorted(set(body) - allowed):
        return f"unknown field: {unknown[0]}"
    prompt = body.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        return "prompt must be a string"
    if not needs_image and not (isinstance(prompt, str) and prompt.strip()):
        return "prompt is required"
    if isinstance(prompt, str):
        if len(prompt) > MAX_PROMPT_CHARS:
            return f"prompt must be at most {MAX_PROMPT_CHARS} characters"
        if problem := directive_problem(prompt):
            return problem
    for flag in BOOL_FIELDS:
        if flag in body and not isinstance(body[flag], bool):
            return f"{flag} must be a boolean"
    resolution = body.get("resolution", "768P")
    if resolution not in DURATIONS_BY_RESOLUTION:
        return "resolution must be one of 768P, 1080P"
    duration = body.get("duration", 6)
    if isinstance(duration, bool) or duration not in (6, 10):
        return "duration must be one of 6, 10"
    if duration not in DURATIONS_BY_RESOLUTION[str(resolution)]:
        return f"{resolution} supports a duration of 6 only"
    if needs_image:
        return validate_image(body.get("first_frame_image"))
    return None


def directive_problem(prompt: str) -> str | None:
    """Every `[...]` must hold 1 to 3 of the documented Chinese instructions."""
    start: int | None = None
    for index, char in enumerate(prompt):
        if char == "[":
            if start is not None:
                return "nested camera instruction brackets"
            start = index
        elif char == "]":
            if start is None:
                return "unbalanced camera instruction brackets"
            items = [item.strip() for item in _split(prompt[start + 1 : index])]
            if not items or any(not item for item in items):
                return "empty camera instruction"
            if unknown := [item for item in items if item not in CHINESE_DIRECTIVES]:
                return f"unsupported camera instruction: [{unknown[0]}]"
            if len(items) > MAX_PER_GROUP:
                return f"at most {MAX_PER_GROUP} camera instructions can be combined"
            start = None
    return "unbalanced camera instruction brackets" if start is not None else None


def _split(inner: str) -> list[str]:
    for separator in DIRECTIVE_SEPARATORS[1:]:
        inner = inner.replace(separator, DIRECTIVE_SEPARATORS[0])
    return inner.split(DIRECTIVE_SEPARATORS[0])


def validate_image(image: object) -> str | None:
    if not isinstance(image, str) or not image:
        return "first_frame_image is required"
    if image.startswith(("http://", "https://")):
        return None
    header, sep, payload = image.partition(",")
    if not sep or not header.startswith("data:") or not header.endswith(";base64"):
        return "first_frame_image must be a URL or a base64 data URL"
    mime = header.removeprefix("data:").removesuffix(";base64").strip().lower()
    if mime not in IMAGE_MIMES:
        return "image format must be JPG, JPEG, PNG or WebP"
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return "first_frame_image is not valid base64"
    if len(data) >= MAX_IMAGE_BYTES:
        return "image size must be less than 20MB"
    return _image_geometry_problem(data)


def _image_geometry_problem(data: bytes) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, (width, height) = img.format, img.size
    except (UnidentifiedImageError, OSError):
        return "first_frame_image could not be decoded"
    if fmt not in ("JPEG", "PNG", "WEBP"):
        return "image format must be JPG, JPEG, PNG or WebP"
    if min(width, height) <= 300:
        return "image short side must be greater than 300px"
    if not 2 / 5 <= width / height <= 5 / 2:
        return "image aspect ratio must be between 2:5 and 5:2"
    return None
