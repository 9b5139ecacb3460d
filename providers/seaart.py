"""SeaArt "SeaCloud" queue API client for MiniMax Hailuo 2.3.

The wire facts are in docs/providers/seaart.md; the § numbers below are its sections.

One POST to `/v1/queue/{endpoint}` creates a (billed) task and is never retried: when its outcome is
unknown the error says so with `maybe_created=True`. Every later call (status, response, cancel) needs the
endpoint as well as SeaArt's `request_id`, so the task id we hand out is `"{endpoint}:{request_id}"`.

`poll` reads `/status`; only once it says `COMPLETED` without an error does it fetch `/response` for the
output URL (a 202 there means the result is not stored yet: still running). SeaArt rejects webhooks, so
nothing here ever sends one. Camera directives go out in the Chinese forms SeaArt documents.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import quote

import httpx
from pydantic import Field

from core.camera import normalise_prompt
from core.errors import UserError
from core.provider import Capabilities, ProviderError, offers
from core.spec import MODEL_HAILUO_23, GenerationSpec, ImageInput
from core.tasks import FailureKind, TaskStatus
from providers.kit.base import HttpProvider
from providers.kit.entry import PaidSection, ProviderEntry, Wiring
from providers.kit.http import (
    MODERATION_RE,
    error_from_response,
    json_or_none,
    parse_retry_after,
    sanitize,
    transport_error,
    unreadable_success,
)
from providers.kit.images import data_url

DEFAULT_BASE_URL = "https://cloud.seaart.ai/model"
T2V_ENDPOINT = "minimax_hailuo_23_t2v"
I2V_ENDPOINT = "minimax_hailuo_23_i2v"
FAST_I2V_ENDPOINT = "minimax_hailuo_23_fast_i2v"
ENDPOINTS = frozenset({T2V_ENDPOINT, I2V_ENDPOINT, FAST_I2V_ENDPOINT})
# Our variant name → (SeaArt endpoint, resolution). Hailuo 02 on SeaArt is UNCONFIRMED, so not offered.
ROUTES: dict[str, tuple[str, str]] = {
    "t2v-standard": (T2V_ENDPOINT, "768P"),
    "t2v-pro": (T2V_ENDPOINT, "1080P"),
    "i2v-standard": (I2V_ENDPOINT, "768P"),
    "i2v-pro": (I2V_ENDPOINT, "1080P"),
    "i2v-fast": (FAST_I2V_ENDPOINT, "768P"),
    "i2v-fast-pro": (FAST_I2V_ENDPOINT, "1080P"),
}
# 10 s clips exist only at 768P (§3).
DURATIONS_BY_RESOLUTION: dict[str, tuple[int, ...]] = {"768P": (6, 10), "1080P": (6,)}
TASK_ID_SEPARATOR = ":"

# `error_type` of a COMPLETED task (§5). Unknown types fall back on the error text.
FAILURE_BY_ERROR_TYPE: dict[str, FailureKind] = {
    "CONTENT_BLOCKED": FailureKind.MODERATION,
    "INFERENCE_FAILURE": FailureKind.GENERATION_FAILED,
    "INFERENCE_TIMEOUT": FailureKind.GENERATION_FAILED,
    "INTERNAL_SERVER_ERROR": FailureKind.GENERATION_FAILED,
    "REQUEST_INVALID": FailureKind.BAD_REQUEST,
}
CANCELLED_ERROR_TYPES = frozenset({"CANCELED", "CANCELLED"})
# Gateway `error.code` values and `detail` texts whose meaning the HTTP status may not carry (their HTTP
# codes are UNCONFIRMED, §8).
KIND_BY_ERROR_CODE: dict[str, FailureKind] = {
    "UNAUTHORIZED": FailureKind.AUTH,
    "RATE_LIMIT_EXCEEDED": FailureKind.RATE_LIMITED,
}
KIND_BY_DETAIL_PREFIX: dict[str, FailureKind] = {
    "model not allowed": FailureKind.AUTH,
    "app not found": FailureKind.BAD_REQUEST,
    "webhook not supported": FailureKind.BAD_REQUEST,
}
ALREADY_COMPLETED = "ALREADY_COMPLETED"


class SeaArtSection(PaidSection):
    base_url: str = Field(DEFAULT_BASE_URL, pattern="^https?://")


class SeaArtProvider(HttpProvider):
    """The `Provider` for SeaArt's SeaCloud queue API. SeaArt refuses callbacks, so it is only polled."""

    name = "seaart"
    default_base_url = DEFAULT_BASE_URL
    capabilities = Capabilities(offers=offers(MODEL_HAILUO_23, ROUTES), can_cancel=True, free=False)

    # ----- submit ------------------------------------------------------------------------------------

    async def submit(self, spec: GenerationSpec) -> str:
        endpoint = endpoint_for(spec)
        response = await self._create("POST", f"/v1/queue/{endpoint}", json=request_body(spec))
        payload = json_or_none(response)
        rid = payload.get("request_id") if isinstance(payload, dict) else None
        if not isinstance(rid, str) or not rid.strip():
            raise unreadable_success(response, "submit response without a request id")
        return join_task_id(endpoint, rid)

    # ----- poll --------------------------------------------------------------------------------------

    async def poll(self, task_id: str) -> TaskStatus:
        base = _task_path(task_id)
        response = await self._request("GET", f"{base}/status", not_found="unknown task")
        retry_after = parse_retry_after(response.headers)
        status = parse_status(self._object(response), retry_after=retry_after, secrets=self._secrets)
        if status is not None:
            return status
        # COMPLETED without an error: the output URL lives on /response.
        result = await self._request("GET", f"{base}/response", not_found="unknown task")
        if result.status_code == 202:  # stored result not ready yet (docs/providers/seaart.md)
            return TaskStatus("running", retry_after=retry_after, raw_status="COMPLETED")
        return parse_result(self._object(result), secrets=self._secrets)

    # ----- cancel ------------------------------------------------------------------------------------

    async def cancel(self, task_id: str) -> bool:
        """Ask SeaArt to cancel. True means SeaArt accepted the request (202 `CANCELLATION_REQUESTED`), not
        that the task is cancelled: its final status (COMPLETED with `CANCELED`, or a normal COMPLETED if it
        finished first) still decides, so keep polling. False when it had already finished or is unknown."""
        base = _task_path(task_id)
        try:
            response = await self._api.put(f"{base}/cancel")
        except httpx.HTTPError as exc:
            raise transport_error(exc) from exc
        if response.is_success:
            return True
        if response.status_code == 404:
            return False
        if response.status_code == 400 and any(ALREADY_COMPLETED in word for word in _words(json_or_none(response))):
            return False
        raise self._error(response, creating=False)

    # ----- errors ------------------------------------------------------------------------------------

    def _error(self, response: httpx.Response, *, creating: bool) -> ProviderError:
        """Map an error answer; SeaArt's `error.code` and `detail` refine what the HTTP status says."""
        payload = json_or_none(response)
        message = self._message(response)
        code = _error_code(payload, self._secrets)
        shown = f"{code}: {message}" if code and message else code or message
        error = error_from_response(response, message=shown, creating=creating)
        kind = _refined_kind(code, message)
        if kind is None or kind is error.kind or response.status_code >= 500:
            return _with_body_request_id(error, payload, self._secrets)
        return _with_body_request_id(
            ProviderError(
                kind,
                error.detail,
                status=error.status,
                request_id=error.request_id,
                retry_after=error.retry_after,
                maybe_created=error.maybe_created,
            ),
            payload,
            self._secrets,
        )


# ----- task ids ----------------------------------------------------------------------------------------


def join_task_id(endpoint: str, rid: str) -> str:
    return f"{endpoint}{TASK_ID_SEPARATOR}{rid}"


def split_task_id(task_id: str) -> tuple[str, str]:
    """`(endpoint, request_id)` from our task id, or BAD_REQUEST (never transient) when it is not one."""
    endpoint, sep, rid = task_id.partition(TASK_ID_SEPARATOR)
    if not sep or endpoint not in ENDPOINTS or not rid:
        raise ProviderError(FailureKind.BAD_REQUEST, "not a seaart task id")
    return endpoint, rid


def _task_path(task_id: str) -> str:
    endpoint, rid = split_task_id(task_id)
    return f"/v1/queue/{endpoint}/requests/{quote(rid, safe='')}"


# ----- request building (pure) -------------------------------------------------------------------------


def endpoint_for(spec: GenerationSpec) -> str:
    """The SeaArt endpoint for a spec, or BAD_REQUEST before anything is sent (and billed)."""
    route = ROUTES.get(spec.variant) if spec.model == MODEL_HAILUO_23 else None
    if route is None:
        raise ProviderError(FailureKind.BAD_REQUEST, f"{spec.model} {spec.variant} is not offered by seaart")
    endpoint, resolution = route
    if spec.duration not in DURATIONS_BY_RESOLUTION[resolution]:
        raise ProviderError(FailureKind.BAD_REQUEST, f"{spec.duration}s is not offered at {resolution}")
    if spec.end_image is not None:
        raise ProviderError(FailureKind.BAD_REQUEST, "seaart's Hailuo 2.3 takes no last frame")
    return endpoint


def request_body(spec: GenerationSpec) -> dict[str, object]:
    _, resolution = ROUTES[spec.variant]
    body: dict[str, object] = {}
    if spec.prompt:
        try:
            body["prompt"] = normalise_prompt(spec.prompt, chinese=True)
        except UserError as exc:  # the spec should already be normalised; never send what SeaArt would misread
            raise ProviderError(FailureKind.BAD_REQUEST, "prompt has invalid camera directives") from exc
    elif spec.mode == "t2v":
        raise ProviderError(FailureKind.BAD_REQUEST, "text-to-video needs a prompt")
    body["duration"] = spec.duration
    body["resolution"] = resolution
    body["prompt_optimizer"] = spec.optimize_prompt
    if spec.mode == "i2v":
        if spec.image is None:
            raise ProviderError(FailureKind.BAD_REQUEST, "image-to-video needs an image")
        body["first_frame_image"] = imagedata_url(spec.image)
    return body


def imagedata_url(image: ImageInput) -> str:
    """SeaArt takes JPG, PNG and WebP as base64 data URLs, so no re-encoding is needed."""
    return data_url(image.mime, image.data)


# ----- status mapping (pure) ---------------------------------------------------------------------------


def parse_status(
    payload: Mapping[str, object], *, retry_after: float | None = None, secrets: Iterable[str] = ()
) -> TaskStatus | None:
    """Map a `/status` body onto a TaskStatus; None means COMPLETED without an error (fetch `/response`).

    Unknown status words keep polling until the job's deadline. Every provider string is sanitised with
    our `secrets`: the error text is stored with the job, and it may quote our key (in any case, cut short)."""
    raw = sanitize(payload.get("status"), limit=40, secrets=secrets)
    word = raw.upper()
    if word == "IN_QUEUE":
        position = _position(payload.get("queue_position"))
        return TaskStatus("queued", queue_position=position, retry_after=retry_after, raw_status=raw)
    if word == "COMPLETED":
        return completed_failure(payload, raw, secrets=secrets)
    # IN_PROGRESS and anything new.
    return TaskStatus("running", retry_after=retry_after, raw_status=raw)


def completed_failure(
    payload: Mapping[str, object], raw: str = "COMPLETED", *, secrets: Iterable[str] = ()
) -> TaskStatus | None:
    """The terminal status of a COMPLETED body that carries `error`/`error_type`; None when it has neither."""
    error_type = sanitize(payload.get("error_type"), limit=40, secrets=secrets).upper()
    error = sanitize(payload.get("error"), secrets=secrets)
    if not error_type and not error:
        return None
    detail = f"{error_type}: {error}" if error_type and error else error_type or error
    if error_type in CANCELLED_ERROR_TYPES:
        return TaskStatus("cancelled", failure_detail=detail, raw_status=raw)
    kind = FAILURE_BY_ERROR_TYPE.get(error_type)
    if kind is None:
        kind = FailureKind.MODERATION if MODERATION_RE.search(error) else FailureKind.GENERATION_FAILED
    return TaskStatus("failed", failure=kind, failure_detail=detail, raw_status=raw)


def parse_result(payload: Mapping[str, object], *, secrets: Iterable[str] = ()) -> TaskStatus:
    """Map a `/response` body (HTTP 200) onto a terminal TaskStatus."""
    failure = completed_failure(payload, secrets=secrets)
    if failure is not None:
        return failure
    outputs = payload.get("outputs")
    for output in outputs if isinstance(outputs, list) else []:
        url = output.get("url") if isinstance(output, dict) else output
        if isinstance(url, str) and url:
            return TaskStatus("succeeded", output_url=url, raw_status="COMPLETED")
    return TaskStatus(
        "failed", failure=FailureKind.OUTPUT_INVALID, failure_detail="completed without outputs", raw_status="COMPLETED"
    )


def _position(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


# ----- error bodies (pure) -----------------------------------------------------------------------------


def _error_code(payload: object, secrets: Iterable[str]) -> str:
    error = payload.get("error") if isinstance(payload, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return sanitize(code, limit=40, secrets=secrets).upper() if isinstance(code, str) else ""


def _refined_kind(code: str, message: str) -> FailureKind | None:
    if code in KIND_BY_ERROR_CODE:
        return KIND_BY_ERROR_CODE[code]
    lowered = message.lower()
    for prefix, kind in KIND_BY_DETAIL_PREFIX.items():
        if lowered.startswith(prefix):
            return kind
    return None


def _words(payload: object) -> set[str]:
    """Upper-cased status words anywhere SeaArt may put them (cancel body keys are UNCONFIRMED)."""
    if not isinstance(payload, dict):
        return set()
    error = payload.get("error")
    values = [payload.get("status"), payload.get("detail"), payload.get("code")]
    if isinstance(error, dict):
        values += [error.get("code"), error.get("message")]
    else:
        values.append(error)
    return {value.strip().upper() for value in values if isinstance(value, str)}


def _with_body_request_id(error: ProviderError, payload: object, secrets: Iterable[str]) -> ProviderError:
    """SeaArt puts `request_id` in error bodies; keep it when no header carried one."""
    if error.request_id is None and isinstance(payload, dict):
        error.request_id = sanitize(payload.get("request_id"), limit=64, secrets=secrets) or None
    return error


def _build(section: SeaArtSection, wiring: Wiring) -> SeaArtProvider:
    assert wiring.api_key is not None
    return SeaArtProvider(wiring.api_key, section.base_url, timeout=section.timeout)  # SeaArt has no callbacks


ENTRY = ProviderEntry(name="seaart", section=SeaArtSection, key_variable="SEAART_API_KEY", factory=_build)
