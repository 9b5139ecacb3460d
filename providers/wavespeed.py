"""WaveSpeedAI v3 client for MiniMax Hailuo 2.3 and Hailuo 02.

The wire facts are in docs/providers/wavespeed.md; the § numbers below are its sections.

One POST creates a (billed) task and is never retried: when its outcome is unknown the error says so
with `maybe_created=True`. `poll` is one GET; the job runner decides when to poll again. Output URLs
live on WaveSpeed's CDN and are fetched with a separate client that carries no credentials.

With a `webhook_url`, every submit asks WaveSpeed to POST one signed callback when the task ends
(§7). `verify_webhook` checks that callback; it is only a hint to poll now, never trusted for the
outcome or the output.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

import httpx
from pydantic import Field

from core.provider import Capabilities, ProviderError, WebhookRejected, WebhookSignal
from core.spec import MODEL_HAILUO_02, MODEL_HAILUO_23, GenerationSpec, ImageInput
from core.tasks import FailureKind, TaskStatus
from providers.kit.base import HttpProvider
from providers.kit.entry import PaidSection, ProviderEntry, Wiring
from providers.kit.http import MODERATION_RE, body_message, error_from_response, parse_retry_after, sanitize
from providers.kit.images import data_url, reencode_png

DEFAULT_BASE_URL = "https://api.wavespeed.ai"


@dataclass(frozen=True)
class Endpoint:
    """One WaveSpeed model endpoint and the request rules its page documents (§3)."""

    model_id: str  # the path after /api/v3/
    # Durations the endpoint takes as `duration`. Empty: it takes none and always makes a 6 s clip.
    durations: tuple[int, ...] = ()
    end_image: bool = False  # documents `end_image`, the clip's last frame


# (our model, our variant) → endpoint. The fast tiers are image-only and named without "i2v".
# Only the 768P endpoints take `duration`; 1080P clips are always 6 s (§3).
ROUTES: dict[tuple[str, str], Endpoint] = {
    (MODEL_HAILUO_23, "t2v-standard"): Endpoint("minimax/hailuo-2.3/t2v-standard", (6, 10)),
    (MODEL_HAILUO_23, "t2v-pro"): Endpoint("minimax/hailuo-2.3/t2v-pro"),
    (MODEL_HAILUO_23, "i2v-standard"): Endpoint("minimax/hailuo-2.3/i2v-standard", (6, 10)),
    (MODEL_HAILUO_23, "i2v-pro"): Endpoint("minimax/hailuo-2.3/i2v-pro"),
    (MODEL_HAILUO_23, "i2v-fast"): Endpoint("minimax/hailuo-2.3/fast", (6, 10)),
    (MODEL_HAILUO_23, "i2v-fast-pro"): Endpoint("minimax/hailuo-2.3/fast-pro"),
    (MODEL_HAILUO_02, "t2v-standard"): Endpoint("minimax/hailuo-02/t2v-standard", (6, 10)),
    (MODEL_HAILUO_02, "t2v-pro"): Endpoint("minimax/hailuo-02/t2v-pro"),
    (MODEL_HAILUO_02, "i2v-standard"): Endpoint("minimax/hailuo-02/i2v-standard", (6, 10)),
    # §3: the only WaveSpeed page that documents `end_image`.
    (MODEL_HAILUO_02, "i2v-pro"): Endpoint("minimax/hailuo-02/i2v-pro", end_image=True),
}
FIXED_DURATION = 6
# WaveSpeed documents JPG/PNG input only; anything else is re-encoded as PNG before sending.
ACCEPTED_IMAGE_MIMES = frozenset({"image/jpeg", "image/png"})

QUEUED_WORDS = frozenset({"created", "queued", "pending"})
RUNNING_WORDS = frozenset({"processing", "running", "starting"})
FAILED_WORDS = frozenset({"failed", "timeout"})
CANCELLED_WORDS = frozenset({"cancelled", "canceled", "deleted"})

# Webhook signatures (§7, WaveSpeed "Verifying Webhooks").
WEBHOOK_SECRET_PATH = "/api/v3/webhook/secret"
SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v3"
WEBHOOK_TOLERANCE_S = 300
MAX_EVENT_ID_LENGTH = 128  # ids go into logs and the receiver's duplicate cache
MAX_SIGNATURES = 8  # a header may list several (key rotation); more is not a real sender


class WaveSpeedSection(PaidSection):
    base_url: str = Field(DEFAULT_BASE_URL, pattern="^https?://")


class WaveSpeedProvider(HttpProvider):
    """The `WebhookProvider` for WaveSpeedAI's v3 REST API (callbacks only with a `webhook_url`)."""

    name = "wavespeed"
    default_base_url = DEFAULT_BASE_URL
    capabilities = Capabilities(
        offers=frozenset(ROUTES),
        end_frame_models=frozenset({MODEL_HAILUO_02}),
        end_frame_variants=frozenset(variant for (_, variant), route in ROUTES.items() if route.end_image),
        can_cancel=False,
        verifies_callbacks=True,  # signed with the account's secret, fetched by prepare_webhooks
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
        self._webhook_key: bytes | None = None  # HMAC key, set by prepare_webhooks()

    # ----- submit ------------------------------------------------------------------------------------

    async def submit(self, spec: GenerationSpec) -> str:
        endpoint = endpoint_for(spec)
        body = await request_body(spec, endpoint)
        params = {"webhook": self._webhook_url} if self._webhook_url else None
        response = await self._create("POST", f"/api/v3/{endpoint.model_id}", json=body, params=params)
        payload = self._created_object(response)
        self._raise_for_envelope(response, payload, creating=True)
        data = payload.get("data")
        task_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(task_id, str) or not task_id.strip():
            raise self._no_task_id(response)
        return task_id

    # ----- poll --------------------------------------------------------------------------------------

    async def poll(self, task_id: str) -> TaskStatus:
        if not task_id:
            raise ProviderError(FailureKind.BAD_REQUEST, "empty task id")
        path = f"/api/v3/predictions/{quote(task_id, safe='')}/result"
        data, response = await self._get_data(path, not_found="unknown task")
        return parse_prediction(data, retry_after=parse_retry_after(response.headers), secrets=self._secrets)

    async def _get_data(self, path: str, *, not_found: str) -> tuple[dict[str, object], httpx.Response]:
        """One GET of an enveloped resource; its `data` object, or a ProviderError."""
        response = await self._request("GET", path, not_found=not_found)
        payload = self._object(response)
        self._raise_for_envelope(response, payload, creating=False, not_found=not_found)
        data = payload.get("data")
        if not isinstance(data, dict):
            raise self._malformed(response)
        return data, response

    # ----- webhooks ----------------------------------------------------------------------------------

    async def prepare_webhooks(self) -> None:
        """Fetch and cache the account's signing secret. Raises ProviderError when it cannot be read."""
        if self._webhook_key is not None:
            return
        data, response = await self._get_data(WEBHOOK_SECRET_PATH, not_found="webhook secret not found")
        secret = data.get("secret")
        if not isinstance(secret, str) or not secret.removeprefix(SECRET_PREFIX).strip():
            raise self._malformed(response)
        # The docs say: drop `whsec_` and use the rest as the key as it is (do NOT base64-decode it,
        # unlike the Standard Webhooks scheme these headers otherwise look like).
        key = secret.removeprefix(SECRET_PREFIX)
        self._secrets = (*self._secrets, secret, key)  # kept out of any error text
        self._webhook_key = key.encode()

    def verify_webhook(self, headers: Mapping[str, str], body: bytes, now: float) -> WebhookSignal:
        if self._webhook_key is None:
            # Fail closed: without the secret nothing can be told apart from a forgery.
            raise WebhookRejected("signing secret not loaded")
        return verify_callback(self._webhook_key, headers, body, now)

    # ----- errors ------------------------------------------------------------------------------------

    def _raise_for_envelope(
        self,
        response: httpx.Response,
        payload: Mapping[str, object],
        *,
        creating: bool,
        not_found: str = "unknown task",
    ) -> None:
        """A 2xx whose envelope `code` is not 200 is an error that uses HTTP numbers (docs/providers/wavespeed.md)."""
        code = _envelope_code(payload.get("code"))
        if code is None or code == 200:
            return
        if code == 404 and not creating:
            raise ProviderError(FailureKind.BAD_REQUEST, not_found, status=404)
        message = body_message(payload, secrets=self._secrets)
        raise error_from_response(response, message=message, creating=creating, code=code)


# ----- request building (pure, no I/O except the rare image re-encode) ---------------------------------


def endpoint_for(spec: GenerationSpec) -> Endpoint:
    """The endpoint that makes `spec`, or BAD_REQUEST before anything is sent (and billed)."""
    endpoint = ROUTES.get((spec.model, spec.variant))
    if endpoint is None:
        raise ProviderError(FailureKind.BAD_REQUEST, f"{spec.model} {spec.variant} is not offered by wavespeed")
    allowed = endpoint.durations or (FIXED_DURATION,)
    if spec.duration not in allowed:
        # Pro endpoints take no duration; sending the job anyway would bill a 6 s clip for a 10 s price.
        raise ProviderError(FailureKind.BAD_REQUEST, f"{spec.duration}s is not offered on {endpoint.model_id}")
    if spec.end_image is not None and not endpoint.end_image:
        # Capabilities can only say "Hailuo 02 takes a last frame", but of its endpoints only i2v-pro
        # documents `end_image`. Elsewhere it would at best be dropped silently: a paid clip that ignores
        # the frame the user chose. So refuse before the POST (the job is refunded, nothing is billed).
        raise ProviderError(FailureKind.BAD_REQUEST, f"an end frame is not offered on {endpoint.model_id}")
    return endpoint


async def request_body(spec: GenerationSpec, endpoint: Endpoint | None = None) -> dict[str, object]:
    endpoint = endpoint or endpoint_for(spec)
    body: dict[str, object] = {}
    if spec.prompt:
        body["prompt"] = spec.prompt
    elif spec.mode == "t2v":
        raise ProviderError(FailureKind.BAD_REQUEST, "text-to-video needs a prompt")
    body["enable_prompt_expansion"] = spec.optimize_prompt
    if endpoint.durations:
        body["duration"] = spec.duration
    if spec.mode == "i2v":
        if spec.image is None:
            raise ProviderError(FailureKind.BAD_REQUEST, "image-to-video needs an image")
        body["image"] = await imagedata_url(spec.image)
    if spec.end_image is not None:  # endpoint_for has checked that this endpoint takes it
        body["end_image"] = await imagedata_url(spec.end_image)
    return body


async def imagedata_url(image: ImageInput) -> str:
    if image.mime in ACCEPTED_IMAGE_MIMES:
        return data_url(image.mime, image.data)
    png = await asyncio.to_thread(reencode_png, image.data)
    return data_url("image/png", png)


# ----- status mapping (pure) --------------------------------------------------------------------------


def parse_prediction(
    data: Mapping[str, object], *, retry_after: float | None = None, secrets: Iterable[str] = ()
) -> TaskStatus:
    """Map a prediction object (`data` of the envelope) onto a TaskStatus. Unknown words keep polling.

    Every provider string is sanitised with our `secrets`: the error text is stored with the job, and a
    task's error may quote our request back (its key included, in any case or cut short)."""
    raw = sanitize(data.get("status"), limit=40, secrets=secrets)
    word = raw.lower()
    if word in QUEUED_WORDS:
        return TaskStatus("queued", retry_after=retry_after, raw_status=raw)
    if word == "completed":
        return _completed(data, raw)
    if word in FAILED_WORDS:
        error = sanitize(data.get("error"), secrets=secrets)
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


# ----- webhook verification (pure) ---------------------------------------------------------------------


def verify_callback(
    key: bytes, headers: Mapping[str, str], body: bytes, now: float, *, tolerance: float = WEBHOOK_TOLERANCE_S
) -> WebhookSignal:
    """Check one WaveSpeed callback: `webhook-signature: v3,<hex>` = HMAC-SHA256(key, "{id}.{ts}.{body}").

    The signature is checked before the body is parsed, so nothing unauthenticated is ever decoded.
    Raises WebhookRejected with a short, body-free reason.
    """
    found = {name.lower(): value for name, value in headers.items()}
    event_id = found.get("webhook-id", "").strip()
    stamp = found.get("webhook-timestamp", "").strip()
    signatures = found.get("webhook-signature", "").strip()
    if not (event_id and stamp and signatures):
        raise WebhookRejected("missing signature headers")
    if not _printable_ascii(event_id) or len(event_id) > MAX_EVENT_ID_LENGTH:
        raise WebhookRejected("malformed webhook-id")
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        raise WebhookRejected("malformed webhook-timestamp")
    if abs(now - int(stamp)) > tolerance:
        # Replays of a captured callback stop working after five minutes; the receiver dedupes within.
        raise WebhookRejected("webhook-timestamp outside the allowed window")
    signed = f"{event_id}.{stamp}.".encode() + body  # the header text as sent, not a re-formatted int
    expected = hmac.new(key, signed, hashlib.sha256).hexdigest().encode()
    if not _signature_matches(expected, signatures):
        raise WebhookRejected("signature mismatch")
    return WebhookSignal(task_id=_callback_task_id(body), event_id=event_id)


def _signature_matches(expected: bytes, header: str) -> bool:
    """Any `v3,<hex>` entry of a space-separated list matches, compared in constant time."""
    matched = False
    for entry in header.split()[:MAX_SIGNATURES]:
        version, _, candidate = entry.partition(",")
        if version == SIGNATURE_VERSION:
            # No early exit: the time taken does not depend on which entry (if any) matched.
            matched |= hmac.compare_digest(expected, candidate.lower().encode("utf-8", "replace"))
    return matched


def _callback_task_id(body: bytes) -> str:
    """The task id of a signed callback body (§7: the prediction object, without an envelope)."""
    try:
        payload = json.loads(body)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        raise WebhookRejected("body is not JSON") from None
    task_id = payload.get("id") if isinstance(payload, dict) else None
    if not isinstance(task_id, str) or not task_id.strip():
        raise WebhookRejected("body has no task id")
    return task_id


def _printable_ascii(text: str) -> bool:
    return text.isascii() and text.isprintable()


def _build(section: WaveSpeedSection, wiring: Wiring) -> WaveSpeedProvider:
    assert wiring.api_key is not None
    return WaveSpeedProvider(wiring.api_key, section.base_url, timeout=section.timeout, webhook_url=wiring.callback_url)


ENTRY = ProviderEntry(name="wavespeed", section=WaveSpeedSection, key_variable="WAVESPEED_API_KEY", factory=_build)
