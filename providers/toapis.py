"""ToAPIs client for MiniMax Hailuo 2.3, 2.3-Fast and 02.

The wire facts are in docs/providers/toapis.md; the § numbers below are its sections.

ToAPIs takes input images as public URLs only, so each image is first uploaded to `/v1/uploads/images`
(free: a failure there creates nothing) and its URL goes into the one paid POST, `/v1/videos/generations`,
which is never retried; when its outcome is unknown the error says so with `maybe_created=True`. `poll` is
one GET; the job runner decides when to poll again. Output URLs are fetched without credentials.

Task webhooks (§8) are configured on the API token (URL and signing secret) in the ToAPIs console;
ToAPIs then sends one signed final event per task, to `metadata.callback_url` when we pass one. A verified
event only tells the runner which task to poll now.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

import httpx
from pydantic import Field

from core.provider import Capabilities, ProviderError, WebhookSignal
from core.spec import DURATIONS_BY_RESOLUTION, MODEL_HAILUO_02, MODEL_HAILUO_23, GenerationSpec, ImageInput
from core.tasks import FailureKind, TaskStatus
from providers.kit.base import HttpProvider
from providers.kit.entry import PaidSection, PollRate, ProviderEntry, Wiring
from providers.kit.http import MODERATION_RE, json_or_none, kind_for_status, parse_retry_after, request_id, sanitize
from providers.kit.images import shrink_to_jpeg
from providers.toapis_callbacks import verify_delivery

DEFAULT_BASE_URL = "https://toapis.com"
WIRE_23 = "MiniMax-Hailuo-2.3"
WIRE_23_FAST = "MiniMax-Hailuo-2.3-Fast"  # image to video only
WIRE_02 = "MiniMax-Hailuo-02"
WIRE_MODELS: dict[tuple[str, str], str] = {
    **{(MODEL_HAILUO_23, v): WIRE_23 for v in ("t2v-standard", "t2v-pro", "i2v-standard", "i2v-pro")},
    (MODEL_HAILUO_23, "i2v-fast"): WIRE_23_FAST,
    (MODEL_HAILUO_23, "i2v-fast-pro"): WIRE_23_FAST,
    **{(MODEL_HAILUO_02, v): WIRE_02 for v in ("t2v-standard", "t2v-pro", "i2v-standard", "i2v-pro")},
}
END_FRAME_WIRE_MODELS = frozenset({WIRE_02})  # `metadata.last_frame_image` (§4)
# The upload cap is "10MB" (§3); 10 million bytes is under it whichever megabyte ToAPIs means.
MAX_UPLOAD_BYTES = 10_000_000
MIN_SHORT_SIDE = 301  # the model wants the short side > 300 px; never shrink below that

QUEUED_WORDS = frozenset({"queued", "submitted", "pending"})
RUNNING_WORDS = frozenset({"in_progress", "processing", "running"})
CANCELLED_WORDS = frozenset({"cancelled", "canceled"})

# `error.code` is an int (401, 402, 404) or a string; `error.type` names the class too (§7). A string
# code not listed here (e.g. `invalid_request`) falls back to the HTTP status, refined by the message.
KIND_BY_CODE: dict[str, FailureKind] = {
    "unauthorized": FailureKind.AUTH,
    "authentication_error": FailureKind.AUTH,
    "insufficient_quota": FailureKind.BALANCE,
    "payment_required": FailureKind.BALANCE,
    "content_policy_violation": FailureKind.MODERATION,
    "webhook_not_configured": FailureKind.BAD_REQUEST,
    "task_not_found": FailureKind.BAD_REQUEST,
    "not_found_error": FailureKind.BAD_REQUEST,
    "rate_limit_exceeded": FailureKind.RATE_LIMITED,
    "rate_limit_unavailable": FailureKind.RATE_LIMITED,  # the submit limiter is down: nothing was created
    "internal_error": FailureKind.UNAVAILABLE,
}
# ToAPIs signs callbacks with a secret set on the API token in its console.
WEBHOOK_SECRET_VARIABLE = "TOAPIS_WEBHOOK_SECRET"
WEBHOOK_NOT_CONFIGURED = "the ToAPIs API token has no task webhook configured (set its URL and secret in the console)"


class ToApisSection(PaidSection):
    base_url: str = Field(DEFAULT_BASE_URL, pattern="^https?://")
    max_polls_per_second: PollRate = 40  # its default tier allows 50 queries a second


class ToApisProvider(HttpProvider):
    """The `WebhookProvider` for ToAPIs' OpenAI-style async video API."""

    name = "toapis"
    default_base_url = DEFAULT_BASE_URL
    capabilities: Capabilities

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        previous_webhook_secret: str | None = None,
    ) -> None:
        super().__init__(api_key, base_url, timeout=timeout, transport=transport)
        self._signing_secrets = tuple(s for s in (webhook_secret, previous_webhook_secret) if s)
        self._secrets = (api_key, *self._signing_secrets)
        # ToAPIs refuses a callback_url unless the token has a signing secret, and without one a
        # callback could not be told from a forgery: no secret, no callbacks.
        self._webhook_url = (webhook_url or None) if self._signing_secrets else None
        self.capabilities = Capabilities(
            offers=frozenset(WIRE_MODELS),
            end_frame_models=frozenset({MODEL_HAILUO_02}),
            can_cancel=False,
            verifies_callbacks=bool(self._signing_secrets),
        )

    # ----- submit ------------------------------------------------------------------------------------

    async def submit(self, spec: GenerationSpec) -> str:
        model = wire_model_for(spec)  # refuses impossible specs before anything is uploaded or billed
        first = await self._upload(spec.image, "first-frame") if spec.mode == "i2v" else None
        last = await self._upload(spec.end_image, "last-frame") if spec.end_image else None
        body = request_body(spec, model, first_frame_url=first, last_frame_url=last, callback_url=self._webhook_url)
        response = await self._create("POST", "/v1/videos/generations", json=body)
        payload = json_or_none(response)
        task_id = payload.get("id") if isinstance(payload, dict) else None
        if not isinstance(task_id, str) or not task_id.strip():
            raise self._no_task_id(response)
        return task_id

    async def _upload(self, image: ImageInput | None, label: str) -> str:
        """Upload one image and return its public URL. Nothing is billed, so every failure is safe."""
        if image is None:
            raise ProviderError(FailureKind.BAD_REQUEST, "image-to-video needs an image")
        data, mime, extension = image.data, image.mime, image.extension
        if len(data) > MAX_UPLOAD_BYTES:
            data = await asyncio.to_thread(shrink_to_jpeg, data, MAX_UPLOAD_BYTES, min_short_side=MIN_SHORT_SIDE)
            mime, extension = "image/jpeg", "jpg"
        try:
            response = await self._request(
                "POST", "/v1/uploads/images", files={"file": (f"{label}.{extension}", data, mime)}
            )
        except ProviderError as error:
            raise ProviderError(
                error.kind,
                f"image upload: {error.detail}",
                status=error.status,
                request_id=error.request_id,
                retry_after=error.retry_after,
            ) from error
        payload = json_or_none(response)
        if isinstance(payload, dict) and payload.get("success") is False:
            message = sanitize(payload.get("message"), secrets=self._secrets)
            kind = kind_for_status(400, message)
            raise ProviderError(kind, f"image upload refused: {message}", status=response.status_code)
        uploaded = payload.get("data") if isinstance(payload, dict) else None
        url = uploaded.get("url") if isinstance(uploaded, dict) else None
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise ProviderError(
                FailureKind.UNAVAILABLE, "image upload: malformed response", status=response.status_code
            )
        return url

    # ----- poll --------------------------------------------------------------------------------------

    async def poll(self, task_id: str) -> TaskStatus:
        if not task_id:
            raise ProviderError(FailureKind.BAD_REQUEST, "empty task id")
        path = f"/v1/videos/generations/{quote(task_id, safe='')}"
        response = await self._request("GET", path, not_found="unknown task")
        payload = self._object(response)
        if not isinstance(payload.get("status"), str):
            raise self._malformed(response)
        return parse_task(payload, retry_after=retry_after_from(response), secrets=self._secrets)

    # ----- errors ------------------------------------------------------------------------------------

    def _error(self, response: httpx.Response, *, creating: bool) -> ProviderError:
        status = response.status_code
        code, kind_word, message = _error_fields(json_or_none(response), secrets=self._secrets)
        kind = classify_error(status, code, kind_word, message)
        label = f"HTTP {status}" + (f" {code}" if isinstance(code, str) else "")
        if code == "webhook_not_configured":
            message = WEBHOOK_NOT_CONFIGURED
        return ProviderError(
            kind,
            f"{label}: {message}" if message else label,
            status=status,
            request_id=request_id(response.headers),
            retry_after=retry_after_from(response),
            # A gateway timeout may hide a backend that created the task; any other answer means it did not.
            maybe_created=creating and status == 504,
        )

    # ----- webhooks ----------------------------------------------------------------------------------

    async def prepare_webhooks(self) -> None:
        return None  # the signing secret comes from the console, through the environment

    def verify_webhook(self, headers: Mapping[str, str], body: bytes, now: float) -> WebhookSignal:
        """Check one delivery. Duplicates (same event id) verify alike; the receiver dedupes."""
        return verify_delivery(self._signing_secrets, headers, body, now)


NEUTRAL_I2V_PROMPT = "Bring this image to life with natural, subtle motion."


# ----- request building (pure) ------------------------------------------------------------------------


def wire_model_for(spec: GenerationSpec) -> str:
    """ToAPIs' model name for a spec, or BAD_REQUEST before anything is uploaded or sent (and billed)."""
    model = WIRE_MODELS.get((spec.model, spec.variant))
    if model is None:
        raise ProviderError(FailureKind.BAD_REQUEST, f"{spec.model} {spec.variant} is not offered by toapis")
    if spec.duration not in DURATIONS_BY_RESOLUTION.get(spec.resolution, ()):
        raise ProviderError(FailureKind.BAD_REQUEST, f"{spec.duration}s is not offered at {spec.resolution}")
    if spec.mode == "t2v" and not spec.prompt:
        raise ProviderError(FailureKind.BAD_REQUEST, "text-to-video needs a prompt")
    if spec.mode == "i2v" and spec.image is None:
        raise ProviderError(FailureKind.BAD_REQUEST, "image-to-video needs an image")
    if spec.end_image is not None and (spec.mode != "i2v" or model not in END_FRAME_WIRE_MODELS):
        raise ProviderError(FailureKind.BAD_REQUEST, f"a last frame is not offered for {spec.model} {spec.variant}")
    return model


def request_body(
    spec: GenerationSpec,
    model: str,
    *,
    first_frame_url: str | None = None,
    last_frame_url: str | None = None,
    callback_url: str | None = None,
) -> dict[str, object]:
    body: dict[str, object] = {"model": model}
    if spec.prompt:
        body["prompt"] = spec.prompt
    elif spec.model != MODEL_HAILUO_02:
        # ToAPIs documents the prompt as required for Hailuo 2.3 even from an image, where MiniMax
        # makes it optional: a neutral one keeps a prompt-less /animate working rather than refused.
        body["prompt"] = NEUTRAL_I2V_PROMPT
    body["duration"] = spec.duration
    body["resolution"] = spec.resolution
    if first_frame_url is not None:
        body["image_urls"] = [first_frame_url]
    metadata: dict[str, object] = {"prompt_optimizer": spec.optimize_prompt}
    if last_frame_url is not None:
        metadata["last_frame_image"] = last_frame_url
    if callback_url:
        metadata["callback_url"] = callback_url
    body["metadata"] = metadata
    return body


# ----- response reading (pure) ------------------------------------------------------------------------


def retry_after_from(response: httpx.Response, *, now: float | None = None) -> float | None:
    """How long ToAPIs asks us to wait before the next request, or None.

    ToAPIs sends `X-RateLimit-Limit/-Remaining/-Reset` on every answer, so the reset is honoured only
    when the allowance is spent (`X-RateLimit-Remaining: 0`) or the answer is a 429: an ordinary 200 with
    allowance left says nothing about when to poll next. `Retry-After` wins whenever it is sent. The
    reset is read as Unix seconds when it looks like a date, else as a delta (which one ToAPIs sends is
    unconfirmed: docs/providers/toapis.md)."""
    headers = response.headers
    seconds = parse_retry_after(headers, now=now)
    if seconds is not None:
        return seconds
    remaining = headers.get("x-ratelimit-remaining", "").strip()
    if response.status_code != 429 and remaining != "0":
        return None
    raw = headers.get("x-ratelimit-reset", "").strip()
    try:
        reset = float(raw)
    except ValueError:
        return None
    if not math.isfinite(reset) or reset < 0:
        return None
    if reset > 1_000_000_000:  # an epoch timestamp, not a delta
        return max(0.0, reset - (time.time() if now is None else now))
    return reset


def _error_fields(payload: object, *, secrets: tuple[str, ...]) -> tuple[int | str | None, str, str]:
    """(`error.code` as int or lower-case word, `error.type`, sanitised message) of an error body."""
    if not isinstance(payload, dict):
        return None, "", ""
    error = payload.get("error")
    if not isinstance(error, dict):  # the upload endpoint answers `{"success": false, "message": ...}`
        return None, "", sanitize(payload.get("message"), secrets=secrets)
    raw_code = error.get("code")
    code: int | str | None = None
    if isinstance(raw_code, int) and not isinstance(raw_code, bool):
        code = raw_code
    elif isinstance(raw_code, str) and raw_code.strip():
        word = raw_code.strip()
        code = int(word) if word.isascii() and word.isdigit() else sanitize(word.lower(), limit=40)
    kind_word = sanitize(error.get("type"), limit=40).lower()
    return code, kind_word, sanitize(error.get("message"), secrets=secrets)


def classify_error(status: int, code: int | str | None, kind_word: str, message: str) -> FailureKind:
    """The failure class of an error answer: a known code word wins, then the type, then the number."""
    for word in (code, kind_word):
        if isinstance(word, str) and word in KIND_BY_CODE:
            return KIND_BY_CODE[word]
    number = status if status >= 400 or not isinstance(code, int) else code
    if number == 422:  # ToAPIs' content_policy_violation (§7)
        return FailureKind.MODERATION
    return kind_for_status(number, message)


def parse_task(
    payload: Mapping[str, object], *, retry_after: float | None = None, secrets: tuple[str, ...] = ()
) -> TaskStatus:
    """Map a `generation.task` object onto a TaskStatus. Unknown words keep polling."""
    raw = sanitize(payload.get("status"), limit=40, secrets=secrets)
    word = raw.lower()
    progress = _progress(payload.get("progress"))
    if word in QUEUED_WORDS:
        return TaskStatus("queued", progress=progress, retry_after=retry_after, raw_status=raw)
    if word == "completed":
        url = _output_url(payload.get("result"))
        if url is None:
            return TaskStatus(
                "failed", failure=FailureKind.OUTPUT_INVALID, failure_detail="completed without a video", raw_status=raw
            )
        return TaskStatus("succeeded", progress=1.0, output_url=url, raw_status=raw)
    if word == "failed":
        return _failed(payload.get("error"), raw, secrets)
    if word in CANCELLED_WORDS:
        return TaskStatus("cancelled", failure_detail=f"task {word} at the provider", raw_status=raw)
    # RUNNING_WORDS and anything new: keep polling until the job's deadline.
    return TaskStatus("running", progress=progress, retry_after=retry_after, raw_status=raw)


def _failed(error: object, raw: str, secrets: tuple[str, ...]) -> TaskStatus:
    code = message = ""
    if isinstance(error, dict):
        code = sanitize(error.get("code") if isinstance(error.get("code"), str) else "", limit=40)
        message = sanitize(error.get("message"), secrets=secrets)
    elif isinstance(error, str):
        message = sanitize(error, secrets=secrets)
    policy = code.lower() == "content_policy_violation" or bool(MODERATION_RE.search(f"{code} {message}"))
    kind = FailureKind.MODERATION if policy else FailureKind.GENERATION_FAILED
    detail = ": ".join(part for part in (code, message) if part) or "task failed"
    return TaskStatus("failed", failure=kind, failure_detail=detail, raw_status=raw)


def _progress(value: object) -> float | None:
    """`progress` as 0..1 from 0–100 (an int here, `"100%"` in webhook bodies)."""
    if isinstance(value, str):
        value = value.strip().removesuffix("%")
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return min(1.0, max(0.0, value / 100))


def _output_url(result: object) -> str | None:
    data = result.get("data") if isinstance(result, dict) else None
    first = data[0] if isinstance(data, list) and data else None
    url = first.get("url") if isinstance(first, dict) else None
    return url if isinstance(url, str) and urlsplit(url).scheme in ("http", "https") else None


def _build(section: ToApisSection, wiring: Wiring) -> ToApisProvider:
    assert wiring.api_key is not None
    return ToApisProvider(
        wiring.api_key,
        section.base_url,
        timeout=section.timeout,
        webhook_url=wiring.callback_url,
        webhook_secret=wiring.secrets.get(WEBHOOK_SECRET_VARIABLE),
    )


ENTRY = ProviderEntry(
    name="toapis",
    section=ToApisSection,
    key_variable="TOAPIS_API_KEY",
    factory=_build,
    extra_secrets=(WEBHOOK_SECRET_VARIABLE,),
)
