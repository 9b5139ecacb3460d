"""Checking a ToAPIs task webhook: `X-ToAPIs-Webhook-Signature: v1=<hex>[,v1=<previous hex>]`, an
HMAC-SHA256 over `event_id.timestamp.raw_body` with the token's signing secret (and, for a day after a
rotation, the previous one), refused outside ±300 s (docs/providers/toapis.md). A verified event only
names the task to poll now: money and output always come from the API."""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Mapping

from core.provider import WebhookRejected, WebhookSignal
from providers.kit.json_limits import JsonTooComplex, loads

WEBHOOK_TOLERANCE = 300.0  # seconds of clock skew accepted on a delivery
MAX_EVENT_ID = 128
_HEADER_ID = "x-toapis-webhook-id"
_HEADER_TIMESTAMP = "x-toapis-webhook-timestamp"
_HEADER_SIGNATURE = "x-toapis-webhook-signature"
_TASK_EVENTS = frozenset({"generation.completed", "generation.failed"})


def verify_delivery(secrets: tuple[str, ...], headers: Mapping[str, str], body: bytes, now: float) -> WebhookSignal:
    """Check one delivery; raise WebhookRejected with a short, body-free reason when it fails."""
    if not secrets:
        raise WebhookRejected("no webhook secret configured")
    lowered = {key.lower(): value for key, value in headers.items()}
    event_id = lowered.get(_HEADER_ID, "").strip()
    timestamp = lowered.get(_HEADER_TIMESTAMP, "").strip()
    signature = lowered.get(_HEADER_SIGNATURE, "")
    if not event_id or not timestamp or not signature:
        raise WebhookRejected("missing webhook headers")
    if len(event_id) > MAX_EVENT_ID or not event_id.isascii() or not event_id.isprintable():
        raise WebhookRejected("malformed event id")
    if not timestamp.isascii() or not timestamp.isdigit():
        raise WebhookRejected("malformed timestamp")
    if not math.isfinite(now) or abs(now - int(timestamp)) > WEBHOOK_TOLERANCE:
        raise WebhookRejected("stale or future timestamp")
    candidates = _signature_candidates(signature)
    if not candidates:
        raise WebhookRejected("malformed signature header")
    signed = f"{event_id}.{timestamp}.".encode() + body
    expected = [hmac.new(secret.encode(), signed, hashlib.sha256).digest() for secret in secrets]
    # Every pair is compared (constant time each), so timing does not tell which secret matched.
    matches = [hmac.compare_digest(mine, theirs) for mine in expected for theirs in candidates]
    if not any(matches):
        raise WebhookRejected("bad signature")
    return _signal(event_id, body)


def _signature_candidates(header: str) -> list[bytes]:
    """The digests of every well-formed `v1=<64 hex>` entry; other versions are ignored."""
    digests: list[bytes] = []
    for part in header.split(","):
        version, sep, value = part.strip().partition("=")
        if not sep or version != "v1":
            continue
        value = value.strip()
        if len(value) != 64:
            continue
        try:
            digests.append(bytes.fromhex(value))
        except ValueError:
            continue
    return digests


def _signal(event_id: str, body: bytes) -> WebhookSignal:
    try:
        event = loads(body)  # structure checked first: a deep body is refused, never a RecursionError
    except JsonTooComplex:
        raise WebhookRejected("JSON body too complex") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise WebhookRejected("malformed JSON body") from exc
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise WebhookRejected("malformed event")
    if event.get("id") not in (None, event_id):
        raise WebhookRejected("event id does not match its header")
    if event["type"] not in _TASK_EVENTS:  # endpoint.test and anything new: nothing to poll
        return WebhookSignal(task_id=None, event_id=event_id)
    data = event.get("data")
    task_id = data.get("task_id") if isinstance(data, dict) else None
    if not isinstance(task_id, str) or not task_id.strip():
        raise WebhookRejected("task event without a task id")
    return WebhookSignal(task_id=task_id, event_id=event_id)
