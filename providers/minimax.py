"""MiniMax official v1 video API client for Hailuo 2.3, 2.3-Fast and 02.

The wire facts are in docs/providers/minimax.md; the § numbers below are its sections.

MiniMax answers business errors with HTTP 200 and a `base_resp.status_code` other than 0, so every answer
is read for that envelope first. One POST creates a (billed) task and is never retried: when its outcome is
unknown the error says so with `maybe_created=True`. `poll` is one query GET, plus one `files/retrieve` GET
once the task succeeded; the returned download URL lives about an hour, so the job runner fetches it at once
with a separate client that carries no credentials. The legacy `GroupId` parameter is never sent.

Callbacks (`callback_url`, §12) are *not signed* by MiniMax: `verify_webhook` can only check their shape.
The bot's receiver protects the callback URL with a secret path token; a forged callback can at worst make
the bot poll early, because a callback is only a hint and the poll is the truth.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from pydantic import Field

from core.provider import Capabilities, ProviderError, WebhookRejected, WebhookSignal
from core.spec import DURATIONS_BY_RESOLUTION, MODEL_HAILUO_02, MODEL_HAILUO_23, GenerationSpec, ImageInput
from core.tasks import FailureKind, TaskStatus
from providers.kit.base import HttpProvider
from providers.kit.entry import PaidSection, ProviderEntry, Wiring
from providers.kit.http import BALANCE_RE, MODERATION_RE, body_message, parse_retry_after, request_id, sanitize
from providers.kit.images import data_url
from providers.kit.json_limits import JsonTooComplex, loads

DEFAULT_BASE_URL = "https://api.minimax.io"
SUBMIT_PATH = "/v1/video_generation"
QUERY_PATH = "/v1/query/video_generation"
RETRIEVE_PATH = "/v1/files/retrieve"

# (our model, our variant) → MiniMax's model name. The fast tiers are a cheaper, image-only model.
MODEL_NAMES: dict[tuple[str, str], str] = {
    **{(MODEL_HAILUO_23, v): "MiniMax-Hailuo-2.3" for v in ("t2v-standard", "t2v-pro", "i2v-standard", "i2v-pro")},
    **{(MODEL_HAILUO_23, v): "MiniMax-Hailuo-2.3-Fast" for v in ("i2v-fast", "i2v-fast-pro")},
    **{(MODEL_HAILUO_02, v): "MiniMax-Hailuo-02" for v in ("t2v-standard", "t2v-pro", "i2v-standard", "i2v-pro")},
}
# First-and-last-frame (FL2V) exists only on Hailuo 02 at 768P/1080P (§5).
END_FRAME_MODEL_NAMES = frozenset({"MiniMax-Hailuo-02"})
END_FRAME_RESOLUTIONS = frozenset({"768P", "1080P"})
MAX_PROMPT_CHARS = 2000
ACCEPTED_IMAGE_MIMES = frozenset({"image/jpeg", "image/png", "image/webp"})  # §4: JPG/JPEG/PNG/WebP

# base_resp.status_code → failure class (§9).
OK = 0
CODE_KINDS: dict[int, FailureKind] = {
    **dict.fromkeys((1002, 1039, 1041, 2045), FailureKind.RATE_LIMITED),
    **dict.fromkeys((1004, 2049), FailureKind.AUTH),
    **dict.fromkeys((1008, 1028, 1030, 2056), FailureKind.BALANCE),
    **dict.fromkeys((1026, 1027), FailureKind.MODERATION),
    **dict.fromkeys((2013, 1042), FailureKind.BAD_REQUEST),
    **dict.fromkeys((1000, 1001, 1013, 1024, 1033), FailureKind.UNAVAILABLE),
}
INPUT_SENSITIVE, OUTPUT_SENSITIVE = 1026, 1027

QUEUED_WORDS = frozenset({"preparing", "queueing", "queuing", "queued"})
RUNNING_WORDS = frozenset({"processing"})
SUCCESS_WORDS = frozenset({"success"})
# The docs say `Fail`, the official CLI checks `Failed`, callbacks say `failed` (§7, §12): all terminal.
FAILED_WORDS = frozenset({"fail", "failed"})
MAX_CHALLENGE_CHARS = 1024


class MiniMaxSection(PaidSection):
    base_url: str = Field(DEFAULT_BASE_URL, pattern="^https?://")


class MiniMaxProvider(HttpProvider):
    """The `WebhookProvider` for MiniMax's own v1 video API."""

    name = "minimax"
    default_base_url = DEFAULT_BASE_URL
    capabilities = Capabilities(
        offers=frozenset(MODEL_NAMES),
        end_frame_models=frozenset({MODEL_HAILUO_02}),
        can_cancel=False,
        # MiniMax signs nothing: a callback is told apart from a forgery by the secret token in its URL.
        verifies_callbacks=True,
        free=False,
    )

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        webhook_url: str | None = None,
    ) -> None:
        super().__init__(api_key, base_url, timeout=timeout, transport=transport)
        self._webhook_url = webhook_url

    # ----- submit ------------------------------------------------------------------------------------

    async def submit(self, spec: GenerationSpec) -> str:
        body = request_body(spec)
        if self._webhook_url:
            body["callback_url"] = self._webhook_url
        # httpx's json= sets `Content-Type: application/json`, which MiniMax requires on create.
        response = await self._create("POST", SUBMIT_PATH, json=body)
        payload = self._created_object(response)
        # The server answered with a refusal: nothing was created, whatever the class.
        self._raise_for_base_resp(response, payload)
        task_id = _id_string(payload.get("task_id"))
        if task_id is None:
            raise self._no_task_id(response)
        return task_id

    # ----- poll --------------------------------------------------------------------------------------

    async def poll(self, task_id: str) -> TaskStatus:
        if not task_id:
            raise ProviderError(FailureKind.BAD_REQUEST, "empty task id")
        response, payload = await self._get(QUERY_PATH, {"task_id": task_id})
        retry_after = parse_retry_after(response.headers)
        code = base_resp_code(payload)
        if code in (INPUT_SENSITIVE, OUTPUT_SENSITIVE):
            return _moderated(code, sanitize(payload.get("status"), limit=40, secrets=self._secrets))
        self._raise_for_base_resp(response, payload, polling=True)
        status = parse_query(payload, retry_after=retry_after, secrets=self._secrets)
        if status.state != "succeeded":
            return status
        raw = status.raw_status
        file_id = _id_string(payload.get("file_id"))
        if file_id is None:
            detail = "success without a file id"
            return TaskStatus("failed", failure=FailureKind.OUTPUT_INVALID, failure_detail=detail, raw_status=raw)
        return await self._retrieve(file_id, raw)

    async def _retrieve(self, file_id: str, raw: str) -> TaskStatus:
        """The download URL of a finished task (valid about an hour: docs/providers/minimax.md)."""
        response, payload = await self._get(RETRIEVE_PATH, {"file_id": file_id})
        code = base_resp_code(payload)
        if code in (INPUT_SENSITIVE, OUTPUT_SENSITIVE):
            return _moderated(code, raw)
        self._raise_for_base_resp(response, payload, polling=True)
        file = payload.get("file")
        url = file.get("download_url") if isinstance(file, dict) else None
        if not isinstance(url, str) or not url.strip():
            return TaskStatus(
                "failed",
                failure=FailureKind.OUTPUT_INVALID,
                failure_detail="file without a download url",
                raw_status=raw,
            )
        return TaskStatus("succeeded", output_url=url.strip(), raw_status=raw)

    async def _get(self, path: str, params: Mapping[str, str]) -> tuple[httpx.Response, dict[str, object]]:
        """One GET that must answer a JSON object; every transport or shape problem is transient."""
        response = await self._request("GET", path, params=params)
        return response, self._object(response)

    def _raise_for_base_resp(
        self, response: httpx.Response, payload: Mapping[str, object], *, polling: bool = False
    ) -> None:
        """Raise for a `base_resp.status_code` other than 0 (absent counts as 0: the data decides)."""
        code = base_resp_code(payload)
        if code is None or code == OK:
            return
        message = body_message(payload, secrets=self._secrets)
        kind = CODE_KINDS.get(code)
        if kind is None:
            # Undocumented code. While polling, the task may well be fine: keep polling until the deadline.
            kind = FailureKind.UNAVAILABLE if polling else _kind_for_message(message)
        detail = f"base_resp {code}: {message}" if message else f"base_resp {code}"
        raise ProviderError(
            kind,
            detail,
            status=response.status_code,
            request_id=request_id(response.headers),
            retry_after=parse_retry_after(response.headers),
        )

    # ----- callbacks ---------------------------------------------------------------------------------

    async def prepare_webhooks(self) -> None:
        """Nothing to fetch: MiniMax signs nothing, so there is no secret to learn."""

    def verify_webhook(self, headers: Mapping[str, str], body: bytes, now: float) -> WebhookSignal:
        """Read one MiniMax callback. MiniMax documents NO signature, so this checks shape only.

        - The verification POST `{"challenge": "..."}` → `WebhookSignal(None, reply={"challenge": same})`,
          which the receiver must send back within 3 s.
        - A status update (the Query shape, lowercase `processing|success|failed`) → the task to poll now,
          with `event_id = "<task_id>:<status>"` so repeated deliveries can be ignored.

        Authenticity is the receiver's job (a secret token in the callback URL path). Nothing in the body is
        trusted beyond "poll this task now". Raises WebhookRejected for malformed bodies.
        """
        try:
            payload = loads(body)  # structure checked first: a deep body is refused, never a RecursionError
        except JsonTooComplex:
            raise WebhookRejected("callback body too complex") from None
        except ValueError:  # JSONDecodeError and UnicodeDecodeError
            raise WebhookRejected("callback body is not JSON") from None
        if not isinstance(payload, dict):
            raise WebhookRejected("callback body is not a JSON object")
        if "challenge" in payload:
            challenge = payload["challenge"]
            if not isinstance(challenge, str) or not challenge or len(challenge) > MAX_CHALLENGE_CHARS:
                raise WebhookRejected("malformed challenge")
            return WebhookSignal(task_id=None, reply={"challenge": challenge})
        task_id = _id_string(payload.get("task_id"))
        status = payload.get("status")
        if task_id is None or len(task_id) > 128:
            raise WebhookRejected("callback without a task id")
        if not isinstance(status, str) or not status.strip() or len(status) > 40:
            raise WebhookRejected("callback without a status")
        return WebhookSignal(task_id=task_id, event_id=f"{task_id}:{status.strip().lower()}")


# ----- request building (pure) --------------------------------------------------------------------------


def model_name_for(spec: GenerationSpec) -> str:
    """MiniMax's model name for a spec, or BAD_REQUEST before anything is sent (and billed)."""
    name = MODEL_NAMES.get((spec.model, spec.variant))
    if name is None:
        raise ProviderError(FailureKind.BAD_REQUEST, f"{spec.model} {spec.variant} is not offered by minimax")
    if spec.duration not in DURATIONS_BY_RESOLUTION.get(spec.resolution, ()):
        # MiniMax would refuse with 2013; 1080P makes 6 s clips only (§5).
        raise ProviderError(FailureKind.BAD_REQUEST, f"{spec.duration}s is not offered at {spec.resolution}")
    if spec.end_image is not None and (
        name not in END_FRAME_MODEL_NAMES or spec.resolution not in END_FRAME_RESOLUTIONS
    ):
        raise ProviderError(FailureKind.BAD_REQUEST, f"a last frame is not offered on {spec.model}")
    return name


def request_body(spec: GenerationSpec) -> dict[str, object]:
    """The exact JSON of `POST /v1/video_generation` (without `callback_url`)."""
    model = model_name_for(spec)
    body: dict[str, object] = {"model": model}
    if len(spec.prompt) > MAX_PROMPT_CHARS:
        raise ProviderError(FailureKind.BAD_REQUEST, f"prompt longer than {MAX_PROMPT_CHARS} characters")
    if spec.prompt:
        body["prompt"] = spec.prompt
    elif spec.mode == "t2v":
        raise ProviderError(FailureKind.BAD_REQUEST, "text-to-video needs a prompt")
    body["duration"] = spec.duration
    body["resolution"] = spec.resolution
    body["prompt_optimizer"] = spec.optimize_prompt
    if spec.mode == "i2v":
        if spec.image is None:
            raise ProviderError(FailureKind.BAD_REQUEST, "image-to-video needs an image")
        body["first_frame_image"] = imagedata_url(spec.image)
    if spec.end_image is not None:
        if spec.mode != "i2v":
            raise ProviderError(FailureKind.BAD_REQUEST, "a last frame needs a first frame")
        body["last_frame_image"] = imagedata_url(spec.end_image)
    return body


def imagedata_url(image: ImageInput) -> str:
    if image.mime not in ACCEPTED_IMAGE_MIMES:
        raise ProviderError(FailureKind.BAD_REQUEST, f"{image.mime} images are not accepted")
    return data_url(image.mime, image.data)


# ----- response mapping (pure) --------------------------------------------------------------------------


def base_resp_code(payload: Mapping[str, object]) -> int | None:
    base_resp = payload.get("base_resp")
    code = base_resp.get("status_code") if isinstance(base_resp, dict) else None
    if isinstance(code, bool):
        return None
    if isinstance(code, int):
        return code
    if isinstance(code, str) and code.strip().lstrip("-").isdigit():
        return int(code)
    return None


def parse_query(
    payload: Mapping[str, object], *, retry_after: float | None = None, secrets: tuple[str, ...] = ()
) -> TaskStatus:
    """Map a Query answer (base_resp already checked) onto a TaskStatus. Unknown words keep polling.

    `succeeded` here carries no URL yet: the caller still has to retrieve the file."""
    raw = sanitize(payload.get("status"), limit=40, secrets=secrets)  # stored with the job's history
    word = raw.lower()
    if word in QUEUED_WORDS:
        return TaskStatus("queued", retry_after=retry_after, raw_status=raw)
    if word in SUCCESS_WORDS:
        return TaskStatus("succeeded", raw_status=raw)
    if word in FAILED_WORDS:
        return TaskStatus("failed", failure=FailureKind.GENERATION_FAILED, failure_detail=f"task {raw}", raw_status=raw)
    # RUNNING_WORDS and anything new: keep polling until the job's deadline.
    return TaskStatus("running", retry_after=retry_after, raw_status=raw)


def _moderated(code: int, raw: str) -> TaskStatus:
    where = "input" if code == INPUT_SENSITIVE else "output"
    return TaskStatus(
        "failed",
        failure=FailureKind.MODERATION,
        failure_detail=f"base_resp {code}: {where} flagged as sensitive",
        raw_status=raw,
    )


def _kind_for_message(message: str) -> FailureKind:
    if BALANCE_RE.search(message):
        return FailureKind.BALANCE
    if MODERATION_RE.search(message):
        return FailureKind.MODERATION
    return FailureKind.BAD_REQUEST


def _id_string(value: object) -> str | None:
    """MiniMax ids are strings in some answers and integers in others (§7): normalise to a string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if value >= 0 else None
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _build(section: MiniMaxSection, wiring: Wiring) -> MiniMaxProvider:
    assert wiring.api_key is not None
    return MiniMaxProvider(wiring.api_key, section.base_url, timeout=section.timeout, webhook_url=wiring.callback_url)


ENTRY = ProviderEntry(name="minimax", section=MiniMaxSection, key_variable="MINIMAX_API_KEY", factory=_build)
