"""WaveSpeedAI v3 client for MiniMax Hailuo 2.3 (providers.md §2).

One POST creates a (billed) task and is never retried: when its outcome is unknown the error says so
with `maybe_created=True`. `poll` is one GET; the job runner decides when to poll again. Output URLs
live on WaveSpeed's CDN and are fetched with a separate client that carries no credentials.
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

import httpx

from providers.base import Capabilities, FailureKind, ProviderError, TaskStatus, offers
from providers.http import (
    MODERATION_RE,
    body_message,
    build_client,
    build_download_client,
    error_from_response,
    json_or_none,
    parse_retry_after,
    request_id,
    response_message,
    sanitize,
    stream_download,
    transport_error,
)
from services.spec import MODEL_HAILUO_23, GenerationSpec, ImageInput

DEFAULT_BASE_URL = "https://api.wavespeed.ai"
MODEL_PATHS = {MODEL_HAILUO_23: "minimax/hailuo-2.3"}
# Our variant name → WaveSpeed's endpoint name (the fast tiers are image-only and named without "i2v").
ENDPOINT_BY_VARIANT = {
    "t2v-standard": "t2v-standard",
    "t2v-pro": "t2v-pro",
    "i2v-standard": "i2v-standard",
    "i2v-pro": "i2v-pro",
    "i2v-fast": "fast",
    "i2v-fast-pro": "fast-pro",
}
# Only the 768P endpoints take `duration` (6 or 10); the 1080P ones always make 6 s clips.
DURATIONS_BY_ENDPOINT: dict[str, tuple[int, ...]] = {"t2v-standard": (6, 10), "i2v-standard": (6, 10), "fast": (6, 10)}
FIXED_DURATION = 6
# WaveSpeed documents JPG/PNG input only; anything else is re-encoded as PNG before sending.
ACCEPTED_IMAGE_MIMES = frozenset({"image/jpeg", "image/png"})

QUEUED_WORDS = frozenset({"created", "queued", "pending"})
RUNNING_WORDS = frozenset({"processing", "running", "starting"})
FAILED_WORDS = frozenset({"failed", "timeout"})
CANCELLED_WORDS = frozenset({"cancelled", "canceled", "deleted"})


class WaveSpeedProvider:
    """The `Provider` for WaveSpeedAI's v3 REST API."""

    name = "wavespeed"
    capabilities = Capabilities(offers=offers(MODEL_HAILUO_23, ENDPOINT_BY_VARIANT), can_cancel=False, free=False)

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        webhook_url: str | None = None,
    ) -> None:
        self._secrets = (api_key,)
        self._webhook_url = webhook_url
        self._api = build_client(base_url, api_key, timeout=timeout, transport=transport)
        self._downloads = build_download_client(timeout=timeout, transport=transport)

    # ----- submit ------------------------------------------------------------------------------------

    async def submit(self, spec: GenerationSpec) -> str:
        model_id = model_id_for(spec)
        body = await request_body(spec)
        params = {"webhook": self._webhook_url} if self._webhook_url else None
        try:
            response = await self._api.post(f"/api/v3/{model_id}", json=body, params=params)
        except httpx.HTTPError as exc:
            raise transport_error(exc, creating=True) from exc
        if response.is_error:
            raise error_from_response(response, message=self._message(response), creating=True)
        payload = json_or_none(response)
        if not isinstance(payload, dict):
            raise self._ambiguous(response, "malformed submit response")
        self._raise_for_envelope(response, payload, creating=True)
        data = payload.get("data")
        task_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(task_id, str) or not task_id.strip():
            raise self._ambiguous(response, "submit response without a task id")
        return task_id

    def _ambiguous(self, response: httpx.Response, detail: str) -> ProviderError:
        # A 2xx we cannot read: the server accepted something, so a task may exist and be billed.
        return ProviderError(
            FailureKind.INTERNAL,
            detail,
            status=response.status_code,
            request_id=request_id(response.headers),
            maybe_created=True,
        )

    # ----- poll --------------------------------------------------------------------------------------

    async def poll(self, task_id: str) -> TaskStatus:
        if not task_id:
            raise ProviderError(FailureKind.BAD_REQUEST, "empty task id")
        try:
            response = await self._api.get(f"/api/v3/predictions/{quote(task_id, safe='')}/result")
        except httpx.HTTPError as exc:
            raise transport_error(exc) from exc
        if response.status_code == 404:
            raise ProviderError(FailureKind.BAD_REQUEST, "unknown task", status=404)
        if response.is_error:
            raise error_from_response(response, message=self._message(response))
        payload = json_or_none(response)
        if not isinstance(payload, dict):
            raise self._malformed(response)
        self._raise_for_envelope(response, payload, creating=False)
        data = payload.get("data")
        if not isinstance(data, dict):
            raise self._malformed(response)
        return parse_prediction(data, retry_after=parse_retry_after(response.headers))

    def _malformed(self, response: httpx.Response) -> ProviderError:
        # Usually a proxy or a half-deployed backend; the next poll will likely read fine.
        return ProviderError(
            FailureKind.UNAVAILABLE,
            "malformed response",
            status=response.status_code,
            request_id=request_id(response.headers),
        )

    # ----- shared ------------------------------------------------------------------------------------

    def _message(self, response: httpx.Response) -> str:
        return response_message(response, secrets=self._secrets)

    def _raise_for_envelope(self, response: httpx.Response, payload: Mapping[str, object], *, creating: bool) -> None:
        """A 2xx whose envelope `code` is not 200 is an error that uses HTTP numbers (providers.md §2.7)."""
        code = _envelope_code(payload.get("code"))
        if code is None or code == 200:
            return
        if code == 404 and not creating:
            raise ProviderError(FailureKind.BAD_REQUEST, "unknown task", status=404)
        message = body_message(payload, secrets=self._secrets)
        raise error_from_response(response, message=message, creating=creating, code=code)

    async def download(self, url: str, dest: Path, max_bytes: int) -> int:
        return await stream_download(self._downloads, url, dest, max_bytes)

    async def cancel(self, task_id: str) -> bool:
        return False  # WaveSpeed documents no cancel endpoint (providers.md §0)

    async def aclose(self) -> None:
        await self._api.aclose()
        await self._downloads.aclose()


# ----- request building (pure, no I/O except the rare image re-encode) ---------------------------------


def model_id_for(spec: GenerationSpec) -> str:
    """`minimax/hailuo-2.3/<endpoint>` for a spec, or BAD_REQUEST before anything is sent (and billed)."""
    prefix = MODEL_PATHS.get(spec.model)
    endpoint = ENDPOINT_BY_VARIANT.get(spec.variant)
    if prefix is None or endpoint is None:
        raise ProviderError(FailureKind.BAD_REQUEST, f"{spec.model} {spec.variant} is not offered by wavespeed")
    allowed = DURATIONS_BY_ENDPOINT.get(endpoint, (FIXED_DURATION,))
    if spec.duration not in allowed:
        # Pro endpoints take no duration; sending the job anyway would bill a 6 s clip for a 10 s price.
        raise ProviderError(FailureKind.BAD_REQUEST, f"{spec.duration}s is not offered on {endpoint}")
    return f"{prefix}/{endpoint}"


async def request_body(spec: GenerationSpec) -> dict[str, object]:
    endpoint = ENDPOINT_BY_VARIANT[spec.variant]
    body: dict[str, object] = {}
    if spec.prompt:
        body["prompt"] = spec.prompt
    elif spec.mode == "t2v":
        raise ProviderError(FailureKind.BAD_REQUEST, "text-to-video needs a prompt")
    body["enable_prompt_expansion"] = spec.optimize_prompt
    if endpoint in DURATIONS_BY_ENDPOINT:
        body["duration"] = spec.duration
    if spec.mode == "i2v":
        if spec.image is None:
            raise ProviderError(FailureKind.BAD_REQUEST, "image-to-video needs an image")
        body["image"] = await image_data_url(spec.image)
    return body


async def image_data_url(image: ImageInput) -> str:
    if image.mime in ACCEPTED_IMAGE_MIMES:
        return _data_url(image.mime, image.data)
    png = await asyncio.to_thread(_reencode_png, image.data)
    return _data_url("image/png", png)


def _data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _reencode_png(data: bytes) -> bytes:
    from PIL import Image  # imported lazily: only WebP inputs need it

    try:
        with Image.open(io.BytesIO(data)) as img:
            out = io.BytesIO()
            img.save(out, format="PNG")
    except (OSError, ValueError) as exc:
        raise ProviderError(FailureKind.BAD_REQUEST, "input image could not be converted") from exc
    return out.getvalue()


# ----- status mapping (pure) --------------------------------------------------------------------------


def parse_prediction(data: Mapping[str, object], *, retry_after: float | None = None) -> TaskStatus:
    """Map a prediction object (`data` of the envelope) onto a TaskStatus. Unknown words keep polling."""
    raw = sanitize(data.get("status"), limit=40)
    word = raw.lower()
    if word in QUEUED_WORDS:
        return TaskStatus("queued", retry_after=retry_after, raw_status=raw)
    if word == "completed":
        return _completed(data, raw)
    if word in FAILED_WORDS:
        error = sanitize(data.get("error"))
        kind = FailureKind.MODERATION if MODERATION_RE.search(error) else FailureKind.GENERATION_FAILED
        return TaskStatus("failed", failure=kind, failure_detail=error or f"task {word}", raw_status=raw)
    if word in CANCELLED_WORDS:
        return TaskStatus("cancelled", failure_detail=f"task {word} at the provider", raw_status=raw)
    # RUNNING_WORDS and anything new: keep polling until the job's deadline.
    return TaskStatus("running", retry_after=retry_after, raw_status=raw)


def _completed(data: Mapping[str, object], raw: str) -> TaskStatus:
    outputs = [url for url in _list(data.get("outputs")) if isinstance(url, str) and url]
    nsfw = tuple(bool(flag) for flag in _list(data.get("has_nsfw_contents")))
    if any(nsfw):
        # The clip exists but was flagged: never deliver it.
        return TaskStatus(
            "failed", nsfw=nsfw, failure=FailureKind.MODERATION, failure_detail="output flagged as NSFW", raw_status=raw
        )
    if not outputs:
        return TaskStatus(
            "failed", failure=FailureKind.OUTPUT_INVALID, failure_detail="completed without outputs", raw_status=raw
        )
    return TaskStatus("succeeded", output_url=outputs[0], nsfw=nsfw, raw_status=raw)


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _envelope_code(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None
