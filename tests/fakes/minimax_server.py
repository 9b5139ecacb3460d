"""A local stand-in for MiniMax's official v1 video API on a real socket, scriptable per task.

The wire facts are in docs/providers/minimax.md; the § numbers below are its sections.

Wire behaviour follows the reference: business errors as HTTP 200 + `base_resp.status_code` (1004 without a
key, 2049 for a wrong one, 2013 for invalid parameters), `POST /v1/video_generation` with the documented
model / resolution / duration matrix (1080P makes 6 s only; Hailuo-2.3-Fast needs `first_frame_image`; a
last frame only on MiniMax-Hailuo-02 at 768P/1080P), `GET /v1/query/video_generation?task_id=` with
`Preparing|Queueing|Processing|Success|Fail`, `GET /v1/files/retrieve?file_id=` answering `file.download_url`,
and output files under `/outputs/{id}.mp4` (no auth, like a CDN).

Callbacks: a task submitted with `callback_url` gets the documented flow when `send_callbacks` is on: first a
`{"challenge": ...}` POST whose answer must echo it within 3 s, then one POST per status change with the Query
shape and lowercase `processing|success|failed`. Everything sent and every answer is kept in `callbacks`.
Signing and retries are undocumented (§12): the fake signs nothing, sends each update once, and sends no
updates when the challenge was not echoed.

Headers: every answer of the `/v1` API (errors, scripted failures and unknown `/v1` paths included) carries a
`Trace-Id` (32 hex digits, new per answer; the official client logs it); JSON answers are
`application/json`. The output files (a CDN in the real service) carry none.

Rate limit: video generation is limited to `rpm` create requests per rolling minute on the fake's `clock`
(`time.time` unless given); paid accounts get 20 (the default, `FREE_RPM` = 5 for free ones, None = no
limit). Over it a create answers HTTP 200 with `base_resp` 1002 `rate limit` and creates nothing; refused
creates do not count, every other authenticated create does (refused parameters included). Queries and
file retrieval are not limited. Scripted failures answer before the limit and are not counted.

Tests script the next task with `next_scenario(...)` and inject failures with `fail_next_submit`,
`fail_next_submit_http`, `fail_next_polls`, `fail_next_polls_http`, `fail_next_retrieves`,
`malformed_next_polls`, `drop_next_submit_after_create` and `slow_next_submit`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import itertools
import json
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from aiohttp import web

from tests.fakes.local_server import DROPPED, Handler, LocalServer
from tests.fakes.rate_limits import Clock, SlidingWindow
from tests.fakes.wavespeed_server import default_mp4

Outcome = Literal[
    "completed", "failed", "failed_legacy_word", "sensitive_input", "sensitive_output", "never", "unknown_status"
]

T2V_MODELS = ("MiniMax-Hailuo-2.3", "MiniMax-Hailuo-02")
I2V_MODELS = ("MiniMax-Hailuo-2.3", "MiniMax-Hailuo-2.3-Fast", "MiniMax-Hailuo-02")
FL2V_MODELS = ("MiniMax-Hailuo-02",)
# (model, mode) → resolutions it makes (§5); the first is the default.
RESOLUTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("MiniMax-Hailuo-2.3", "t2v"): ("768P", "1080P"),
    ("MiniMax-Hailuo-2.3", "i2v"): ("768P", "1080P"),
    ("MiniMax-Hailuo-2.3-Fast", "i2v"): ("768P", "1080P"),
    ("MiniMax-Hailuo-02", "t2v"): ("768P", "1080P"),
    ("MiniMax-Hailuo-02", "i2v"): ("768P", "512P", "1080P"),
    ("MiniMax-Hailuo-02", "fl2v"): ("768P", "1080P"),
}
DURATIONS: dict[str, tuple[int, ...]] = {"512P": (6, 10), "768P": (6, 10), "1080P": (6,)}
FRAME_SIZES = {"512P": (910, 512), "768P": (1366, 768), "1080P": (1920, 1080)}
IMAGE_MIMES = ("image/jpeg", "image/jpg", "image/png", "image/webp")
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_PROMPT_CHARS = 2000
UNKNOWN_STATUS_WORD = "Rendering"
QUEUE_SHARE = 0.25  # time-based tasks are queued for the first quarter of their duration
PREPARING_SHARE = 0.1  # ... and `Preparing` for the first tenth
CHALLENGE_TIMEOUT = 3.0  # §12: the challenge must be echoed within 3 s
CALLBACK_TICK = 0.02

OK = (0, "success")
RATE_LIMITED = 1002
INVALID_PARAMS = 2013
PAID_RPM = 20  # video generation requests per minute, paid accounts
FREE_RPM = 5


@dataclass
class Scenario:
    """How one task behaves. Poll-based when `queued_polls` or `processing_polls` is set, else time-based.

    `unknown_status` reports an unknown status word where `Processing` would be, then completes.
    `file_id_type="int"` makes the Query answer carry `file_id` as a number (the docs disagree on its type).
    """

    duration_s: float | None = None  # None → the fake's default duration
    queued_polls: int | None = None
    processing_polls: int | None = None
    outcome: Outcome = "completed"
    file_id_type: Literal["str", "int"] = "str"
    output_bytes: bytes | None = None  # None → a small valid mp4
    output_status: int = 200

    @property
    def poll_based(self) -> bool:
        return self.queued_polls is not None or self.processing_polls is not None


@dataclass
class FakeTask:
    id: str
    file_id: int
    body: dict[str, object]
    mode: str  # t2v | i2v | fl2v
    scenario: Scenario
    duration_s: float
    submitted_at: float  # time.time()
    polls: int = 0  # polls answered with the task's status (injected failures not counted)
    terminal_seen_at: float | None = None  # first time a poll answered with a terminal status
    retrieves: int = 0
    output_requests: int = 0
    challenge_ok: bool | None = None  # None: no callback flow (yet)
    _terminal_at: float | None = field(default=None, repr=False)

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
    def resolution(self) -> str:
        value = self.body.get("resolution")
        return value if isinstance(value, str) else RESOLUTIONS[(str(self.body["model"]), self.mode)][0]

    def phase(self, now: float) -> Literal["preparing", "queueing", "processing", "terminal"]:
        sc = self.scenario
        if sc.poll_based:
            queued, processing = sc.queued_polls or 0, sc.processing_polls or 0
            if self.polls <= queued:
                return "preparing" if self.polls <= 1 else "queueing"
            phase: Literal["processing", "terminal"] = "processing" if self.polls <= queued + processing else "terminal"
        else:
            elapsed = now - self.submitted_at
            if elapsed < self.duration_s * PREPARING_SHARE:
                return "preparing"
            if elapsed < self.duration_s * QUEUE_SHARE:
                return "queueing"
            phase = "processing" if elapsed < self.duration_s else "terminal"
        return "processing" if sc.outcome == "never" else phase

    def status_word(self, now: float) -> str:
        """The Query API's word (capitalised)."""
        phase = self.phase(now)
        if phase == "preparing":
            return "Preparing"
        if phase == "queueing":
            return "Queueing"
        if phase == "processing":
            return UNKNOWN_STATUS_WORD if self.scenario.outcome == "unknown_status" else "Processing"
        return {"completed": "Success", "unknown_status": "Success", "failed_legacy_word": "Failed"}.get(
            self.scenario.outcome, "Fail"
        )

    def base_resp(self, now: float) -> tuple[int, str]:
        if self.phase(now) != "terminal":
            return OK
        return {
            "sensitive_input": (1026, "input new_sensitive"),
            "sensitive_output": (1027, "output new_sensitive"),
        }.get(self.scenario.outcome, OK)

    def query_body(self, now: float, *, callback: bool = False) -> dict[str, object]:
        """The Query answer; `callback=True` gives the callback variant (lowercase `processing|success|failed`)."""
        word = self.status_word(now)
        if callback:
            word = {"Success": "success", "Fail": "failed", "Failed": "failed"}.get(word, "processing")
        code, message = self.base_resp(now)
        body: dict[str, object] = {"task_id": self.id, "status": word}
        if word in ("Success", "success"):
            body["file_id"] = self.file_id if self.scenario.file_id_type == "int" else str(self.file_id)
            body["video_width"], body["video_height"] = FRAME_SIZES[self.resolution]
        body["base_resp"] = {"status_code": code, "status_msg": message}
        return body


@dataclass(frozen=True)
class CallbackRecord:
    """One callback POST the fake made, and what the receiver answered."""

    task_id: str
    kind: Literal["challenge", "update"]
    body: dict[str, object]
    status: int | None  # None: no HTTP answer (connection error or timeout)
    reply: object | None  # the answer's JSON, or its text when it is not JSON
    at: float
    error: str = ""


@dataclass(frozen=True)
class _Failure:
    code: int  # base_resp.status_code, or the HTTP status when `http` is set
    message: str
    http: bool = False
    retry_after: float | None = None


def base_resp(code: int, message: str, **extra: object) -> web.Response:
    """MiniMax's error style: HTTP 200 with the error in `base_resp` (§9)."""
    return web.json_response({**extra, "base_resp": {"status_code": code, "status_msg": message}})


def _answer_failure(failure: _Failure) -> web.Response:
    headers = {"Retry-After": f"{failure.retry_after:g}"} if failure.retry_after is not None else None
    if not failure.http:
        response = base_resp(failure.code, failure.message)
        response.headers.update(headers or {})
        return response
    # Real HTTP errors on v1 are undocumented (§9); a gateway-style text body is the least we can assume.
    return web.Response(status=failure.code, text=failure.message, headers=headers)


class FakeMiniMax(LocalServer):
    client_max_size = 64 * 1024 * 1024  # room for two 20 MB images as base64 in data URLs

    def __init__(
        self,
        api_key: str = "mm-test-key",
        *,
        duration_s: float = 0.5,
        send_callbacks: bool = True,
        rpm: int | None = PAID_RPM,
        clock: Clock = time.time,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.clock = clock
        self.rate_limited: list[float] = []  # clock time of every create refused with 1002 by the limit
        self._creates = SlidingWindow(rpm, 60.0) if rpm is not None else None
        self.default_duration_s = duration_s
        self.send_callbacks = send_callbacks
        self.submits: list[dict[str, object]] = []  # every POST received: json body, query
        self.tasks: dict[str, FakeTask] = {}
        self.callbacks: list[CallbackRecord] = []
        self._ids = itertools.count(secrets.randbelow(10**14) + 10**14)
        self._scenarios: deque[Scenario] = deque()
        self._submit_failures: deque[_Failure] = deque()
        self._poll_failures: deque[_Failure | None] = deque()  # None = malformed body
        self._retrieve_failures: deque[_Failure] = deque()
        self._drop_next_submit = False
        self._slow_next_submit = 0.0

    # ----- lifecycle (LocalServer) -------------------------------------------------------------------

    async def answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        api = request.path.startswith("/v1/")
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # unknown paths and methods
            if api:
                exc.headers["Trace-Id"] = secrets.token_hex(16)
            raise
        if api:
            response.headers["Trace-Id"] = secrets.token_hex(16)
        return response

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/video_generation", self._submit)
        router.add_get("/v1/query/video_generation", self._query)
        router.add_get("/v1/files/retrieve", self._retrieve)
        router.add_get("/outputs/{task_id}.mp4", self._output)

    # ----- scripting ---------------------------------------------------------------------------------

    def next_scenario(self, **kw: Any) -> Scenario:
        """Queue a Scenario (see its fields) for the next task created; later calls queue behind it."""
        scenario = Scenario(**kw)
        self._scenarios.append(scenario)
        return scenario

    def fail_next_submit(self, base_status_code: int, msg: str = "error", retry_after: float | None = None) -> None:
        """The next submit answers HTTP 200 with this `base_resp` error (and no task id)."""
        self._submit_failures.append(_Failure(base_status_code, msg, retry_after=retry_after))

    def fail_next_submit_http(self, status: int, msg: str = "", retry_after: float | None = None) -> None:
        """The next submit answers this HTTP status with a plain-text body (undocumented on v1)."""
        self._submit_failures.append(_Failure(status, msg or f"HTTP {status}", http=True, retry_after=retry_after))

    def fail_next_polls(
        self, n: int, base_status_code: int, msg: str = "error", retry_after: float | None = None
    ) -> None:
        """The next `n` queries answer HTTP 200 with this `base_resp` error; the task does not advance."""
        self._poll_failures.extend(_Failure(base_status_code, msg, retry_after=retry_after) for _ in range(n))

    def fail_next_polls_http(self, n: int, status: int, retry_after: float | None = None) -> None:
        self._poll_failures.extend(
            _Failure(status, f"HTTP {status}", http=True, retry_after=retry_after) for _ in range(n)
        )

    def malformed_next_polls(self, n: int) -> None:
        self._poll_failures.extend(None for _ in range(n))

    def fail_next_retrieves(self, n: int, base_status_code: int, msg: str = "error") -> None:
        """The next `n` files/retrieve calls answer HTTP 200 with this `base_resp` error."""
        self._retrieve_failures.extend(_Failure(base_status_code, msg) for _ in range(n))

    def drop_next_submit_after_create(self) -> None:
        """The next submit creates its task, then closes the connection without answering."""
        self._drop_next_submit = True

    def slow_next_submit(self, seconds: float) -> None:
        """The next submit creates its task, then waits `seconds` before answering (client read timeouts)."""
        self._slow_next_submit = seconds

    def poll_count(self, task_id: str) -> int:
        task = self.tasks.get(task_id)
        return task.polls if task else 0

    def output_url(self, task_id: str) -> str:
        return f"{self.base_url}/outputs/{task_id}.mp4"

    def callbacks_for(self, task_id: str) -> list[CallbackRecord]:
        return [record for record in self.callbacks if record.task_id == task_id]

    async def callbacks_done(self, timeout: float = 5.0) -> None:
        """Wait until every callback flow has finished (tasks that never end are not waited for)."""
        async with asyncio.timeout(timeout):
            while self._background:
                await asyncio.wait(set(self._background))

    # ----- handlers ----------------------------------------------------------------------------------

    def _auth_problem(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization")
        if header is None:
            return base_resp(1004, "not authorized")
        if header != f"Bearer {self.api_key}":
            return base_resp(2049, "invalid api key")
        if "GroupId" in request.query:  # legacy clients; our key belongs to no group it names
            return base_resp(1004, "token not match group")
        return None

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        try:
            body: object = await request.json()
        except ValueError:
            body = None
        self.submits.append({"json": body, "query": dict(request.query)})
        if problem := self._auth_problem(request):
            return problem
        if self._submit_failures:
            return _answer_failure(self._submit_failures.popleft())
        if self._creates is not None:
            now = self.clock()
            if self._creates.wait(now) > 0:
                self.rate_limited.append(now)
                return base_resp(RATE_LIMITED, "rate limit")
            self._creates.add(now)
        if request.content_type != "application/json" or not isinstance(body, dict):
            return base_resp(INVALID_PARAMS, "invalid params, request body must be JSON")
        if problem_text := validate_body(body):
            return base_resp(INVALID_PARAMS, f"invalid params, {problem_text}")
        task = self._create(body)
        return await self._answer_submit(request, task)

    def _create(self, body: dict[str, object]) -> FakeTask:
        scenario = self._scenarios.popleft() if self._scenarios else Scenario()
        duration = scenario.duration_s if scenario.duration_s is not None else self.default_duration_s
        task_id, file_id = str(next(self._ids)), next(self._ids)
        task = FakeTask(task_id, file_id, body, mode_of(body), scenario, duration, time.time())
        self.tasks[task.id] = task
        callback_url = body.get("callback_url")
        if self.send_callbacks and isinstance(callback_url, str) and callback_url:
            flow = asyncio.create_task(self._callback_flow(task, callback_url))
            self._background.add(flow)
            flow.add_done_callback(self._background.discard)
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
        return base_resp(*OK, task_id=task.id)

    async def _query(self, request: web.Request) -> web.StreamResponse:
        if problem := self._auth_problem(request):
            return problem
        if self._poll_failures:
            failure = self._poll_failures.popleft()
            if failure is None:
                return web.Response(text='{"task_id":"1","status":', content_type="application/json")
            return _answer_failure(failure)
        task = self.tasks.get(request.query.get("task_id", ""))
        if task is None:
            return base_resp(INVALID_PARAMS, "invalid params, task not found")
        task.polls += 1
        now = time.time()
        if task.phase(now) == "terminal":
            task._terminal_at = task._terminal_at or now
            task.terminal_seen_at = task.terminal_seen_at or now
        return web.json_response(task.query_body(now))

    async def _retrieve(self, request: web.Request) -> web.StreamResponse:
        if problem := self._auth_problem(request):
            return problem
        if self._retrieve_failures:
            return _answer_failure(self._retrieve_failures.popleft())
        file_id = request.query.get("file_id", "")
        task = next((t for t in self.tasks.values() if str(t.file_id) == file_id), None)
        if task is None or task.status_word(time.time()) != "Success":
            return base_resp(INVALID_PARAMS, "invalid params, file not found")
        task.retrieves += 1
        data = await self._output_bytes(task)
        file = {
            "file_id": task.file_id,
            "bytes": len(data),
            "created_at": int(task.completed_at or time.time()),
            "filename": "output_aigc.mp4",
            "purpose": "video_generation",
            "download_url": self.output_url(task.id),
        }
        return base_resp(*OK, file=file)

    async def _output(self, request: web.Request) -> web.StreamResponse:
        task = self.tasks.get(request.match_info["task_id"])
        if task is None:
            return web.Response(status=404, text="Not Found")
        task.output_requests += 1
        if task.scenario.output_status != 200:
            return web.Response(status=task.scenario.output_status, text="output unavailable")
        return web.Response(body=await self._output_bytes(task), content_type="video/mp4")

    async def _output_bytes(self, task: FakeTask) -> bytes:
        data = task.scenario.output_bytes
        return data if data is not None else await asyncio.to_thread(default_mp4)

    # ----- callbacks (§12) ------------------------------------------------------------------

    async def _callback_flow(self, task: FakeTask, url: str) -> None:
        challenge = secrets.token_urlsafe(16)
        record = await self._post_callback(task, url, "challenge", {"challenge": challenge}, CHALLENGE_TIMEOUT)
        task.challenge_ok = record.status == 200 and record.reply == {"challenge": challenge}
        if not task.challenge_ok:
            return
        sent: str | None = None
        while True:
            now = time.time()
            body = task.query_body(now, callback=True)
            word = str(body["status"])
            # Only status changes are posted; the queued phases have no callback word.
            if task.phase(now) not in ("preparing", "queueing") and word != sent:
                await self._post_callback(task, url, "update", body, 10.0)
                sent = word
                if word != "processing":
                    return
            await asyncio.sleep(CALLBACK_TICK)

    async def _post_callback(
        self, task: FakeTask, url: str, kind: Literal["challenge", "update"], body: dict[str, object], timeout: float
    ) -> CallbackRecord:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        status: int | None = None
        reply: object | None = None
        error = ""
        try:
            async with self._session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                status = response.status
                text = await response.text()
            try:
                reply = json.loads(text)
            except ValueError:
                reply = text
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = type(exc).__name__
        record = CallbackRecord(task.id, kind, body, status, reply, time.time(), error)
        self.callbacks.append(record)
        return record


# ----- request validation (§3–§5) -------------------------------------------------------


def mode_of(body: dict[str, object]) -> str:
    if "last_frame_image" in body:
        return "fl2v"
    return "i2v" if "first_frame_image" in body else "t2v"


def validate_body(body: dict[str, object]) -> str | None:
    """Why MiniMax would answer 2013 to this create body, or None when it is acceptable."""
    model = body.get("model")
    mode = mode_of(body)
    if "subject_reference" in body:
        return "subject_reference is only for S2V-01"
    if model == "MiniMax-Hailuo-2.3-Fast" and "first_frame_image" not in body:
        return "first_frame_image is required for MiniMax-Hailuo-2.3-Fast"
    allowed = {"t2v": T2V_MODELS, "i2v": I2V_MODELS, "fl2v": FL2V_MODELS}[mode]
    if model not in allowed:
        return f"model {model} does not support {'first-last-frame' if mode == 'fl2v' else mode}"
    prompt = body.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        return "prompt must be a string"
    if mode == "t2v" and not (isinstance(prompt, str) and prompt.strip()):
        return "prompt is required"
    if isinstance(prompt, str) and len(prompt) > MAX_PROMPT_CHARS:
        return f"prompt exceeds {MAX_PROMPT_CHARS} characters"
    for flag in ("prompt_optimizer", "fast_pretreatment"):
        if flag in body and not isinstance(body[flag], bool):
            return f"{flag} must be a boolean"
    if "callback_url" in body and not isinstance(body["callback_url"], str):
        return "callback_url must be a string"
    resolutions = RESOLUTIONS[(str(model), mode)]
    resolution = body.get("resolution", resolutions[0])
    if resolution not in resolutions:
        return f"resolution {resolution} is not supported by {model} ({mode})"
    duration = body.get("duration", 6)
    if isinstance(duration, bool) or duration not in DURATIONS[str(resolution)]:
        return f"duration {duration} is not supported at {resolution}"
    for name in ("first_frame_image", "last_frame_image"):
        if name in body and (problem := validate_image(body[name])):
            return f"{name}: {problem}"
    return None


def validate_image(image: object) -> str | None:
    if not isinstance(image, str) or not image:
        return "image is required"
    if image.startswith(("http://", "https://")):
        return None
    header, sep, payload = image.partition(",")
    if not sep or not header.startswith("data:") or not header.endswith(";base64"):
        return "image must be a URL or a base64 data URL"
    mime = header.removeprefix("data:").removesuffix(";base64").strip().lower()
    if mime not in IMAGE_MIMES:
        return "image format must be JPG, JPEG, PNG or WebP"
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return "image is not valid base64"
    if len(data) >= MAX_IMAGE_BYTES:
        return "image must be smaller than 20MB"
    return _image_geometry_problem(data)


def _image_geometry_problem(data: bytes) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, (width, height) = img.format, img.size
    except (UnidentifiedImageError, OSError):
        return "image could not be decoded"
    if fmt not in ("JPEG", "PNG", "WEBP"):
        return "image format must be JPG, JPEG, PNG or WebP"
    if min(width, height) <= 300:
        return "image short side must be greater than 300px"
    if not 2 / 5 <= width / height <= 5 / 2:
        return "image aspect ratio must be between 2:5 and 5:2"
    return None
