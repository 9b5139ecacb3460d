"""Shared HTTP plumbing for provider clients: client construction, error mapping, safe downloads.

Policy: a paid POST is never retried blindly, so nothing here retries a request that creates something.
Polls are single requests scheduled by the job runner; only downloads (`providers.kit.download`), plain
GETs, retry on their own (connection errors, 429 and 5xx) with capped, jittered backoff.
"""

from __future__ import annotations

import functools
import math
import re
import ssl
import time
from collections.abc import Iterable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime

import httpx

from core.provider import ProviderError
from core.redaction import redact_secrets
from core.tasks import FailureKind
from providers.kit.transport import AiohttpTransport

DEFAULT_TIMEOUT = 30.0
# A provider that does not accept a connection within this is down; no need to wait a full read timeout.
CONNECT_TIMEOUT_CAP = 10.0
USER_AGENT = "hailuo-bot/0.1"
MESSAGE_LIMIT = 100

# Words providers use for an exhausted account. "insufficient" alone is not enough: "insufficient image
# resolution" is a bad request, not a billing problem.
BALANCE_RE = re.compile(
    r"balance|credit|insufficient\s+(funds|quota|account)|top[\s-]?up|payment required|arrears", re.IGNORECASE
)
# Words providers use when a prompt, image or output trips the content filter. "content" alone is too
# broad ("content-type"), so it only counts next to a filter word.
MODERATION_RE = re.compile(
    r"sensitive|nsfw|moderat|polic(y|ies)|inappropriate|safety|"
    r"content[\s_-]*(filter|check|violat|review|risk|safety|block)|"
    r"(prohibited|unsafe|explicit|illegal|blocked|harmful)\s+content",
    re.IGNORECASE,
)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\s]+")
_CREDENTIAL_RE = re.compile(r"\b(bearer|key|token|api[_-]?key)([\s:=]+)[A-Za-z0-9._~+/=-]{6,}", re.IGNORECASE)
_REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-trace-id", "trace-id", "x-amzn-requestid")


# ----- clients ---------------------------------------------------------------------------------------


def _timeout(seconds: float) -> httpx.Timeout:
    return httpx.Timeout(seconds, connect=min(seconds, CONNECT_TIMEOUT_CAP))


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verified TLS context for every client: building one loads the CA bundle (~40 ms each)."""
    return httpx.create_ssl_context()


def build_client(
    base_url: str,
    api_key: str | None,
    *,
    auth_scheme: str = "Bearer",
    timeout: float = DEFAULT_TIMEOUT,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The one API client of a provider. Redirects are not followed: an API that redirects is misconfigured,
    and following one would be the only way our key could travel to another host."""
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"{auth_scheme} {api_key}"
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        headers=headers,
        timeout=_timeout(timeout),
        transport=transport or AiohttpTransport(verify=_tls_context()),
        follow_redirects=False,
    )


def build_download_client(
    *, timeout: float = DEFAULT_TIMEOUT, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """A credential-free client for output URLs on CDNs (which do redirect)."""
    return httpx.AsyncClient(
        headers={"User-Agent": USER_AGENT},
        timeout=_timeout(timeout),
        transport=transport or AiohttpTransport(verify=_tls_context()),
        follow_redirects=True,
    )


# ----- reading responses -----------------------------------------------------------------------------


def parse_retry_after(headers: Mapping[str, str] | httpx.Headers | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP date); None when absent or invalid."""
    if not headers:
        return None
    value = httpx.Headers(headers).get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        return _seconds_until(value, time.time() if now is None else now)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _seconds_until(http_date: str, now: float) -> float | None:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" dates come back naive; HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def request_id(headers: httpx.Headers) -> str | None:
    for name in _REQUEST_ID_HEADERS:
        if value := headers.get(name):
            return sanitize(value, limit=64)
    return None


def sanitize(text: object, *, limit: int = MESSAGE_LIMIT, secrets: Iterable[str] = ()) -> str:
    """A provider-supplied string made safe for logs and the database: no secrets, no control characters,
    bounded length. Any run of 8+ characters of a secret is masked in any letter case (core.redaction), so
    a key the provider echoes upper-cased or cut short is caught too."""
    if not isinstance(text, str):
        return ""
    text = redact_secrets(text, secrets)
    text = _CREDENTIAL_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    text = _CONTROL_RE.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def json_or_none(response: httpx.Response) -> object | None:
    try:
        payload: object = response.json()
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both subclass it
        return None
    return payload


def response_message(response: httpx.Response, *, secrets: Iterable[str] = ()) -> str:
    """The human text of an error body in the common shapes (`message`, `error.message`, `detail`, ...),
    sanitised. Never the raw body: it may echo our request."""
    return body_message(json_or_none(response), secrets=secrets)


def body_message(payload: object, *, secrets: Iterable[str] = ()) -> str:
    if not isinstance(payload, dict):
        return ""
    candidates: list[object] = [payload.get("message"), payload.get("msg"), payload.get("detail")]
    error = payload.get("error")
    candidates.append(error.get("message") if isinstance(error, dict) else error)
    base_resp = payload.get("base_resp")  # MiniMax
    if isinstance(base_resp, dict):
        candidates.append(base_resp.get("status_msg"))
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.strip():
            return sanitize(candidate, secrets=secrets)
    return ""


# ----- mapping failures ------------------------------------------------------------------------------


def kind_for_status(status: int, message: str = "") -> FailureKind:
    """The failure class of an HTTP status (or an envelope `code` using HTTP numbers), refined by its text."""
    if status == 401:
        return FailureKind.AUTH
    if status == 402:
        return FailureKind.BALANCE
    if status == 429:
        return FailureKind.RATE_LIMITED
    if status == 408 or 500 <= status <= 599:
        return FailureKind.UNAVAILABLE
    if 400 <= status <= 499:
        if BALANCE_RE.search(message):
            return FailureKind.BALANCE
        if status == 403:
            return FailureKind.AUTH
        if MODERATION_RE.search(message):
            return FailureKind.MODERATION
        return FailureKind.BAD_REQUEST
    return FailureKind.INTERNAL


def error_from_response(
    response: httpx.Response, *, message: str, creating: bool = False, code: int | None = None
) -> ProviderError:
    """A ProviderError for an error answer. `code` overrides the HTTP status (envelope errors in a 2xx).

    The server answered, so a create normally did not happen; the exception is 504, where a gateway gave up
    waiting for a backend that may still have created the task.
    """
    status = code if code is not None else response.status_code
    detail = f"HTTP {status}" if code is None else f"code {status}"
    return ProviderError(
        kind_for_status(status, message),
        f"{detail}: {message}" if message else detail,
        status=status,
        request_id=request_id(response.headers),
        retry_after=parse_retry_after(response.headers),
        maybe_created=creating and status == 504,
    )


def unreadable_success(response: httpx.Response, detail: str) -> ProviderError:
    """A 2xx submit answer we cannot read: the server accepted something, so a task may exist and be
    billed. Never retried, never failed over."""
    return ProviderError(
        FailureKind.INTERNAL,
        detail,
        status=response.status_code,
        request_id=request_id(response.headers),
        maybe_created=True,
    )


def transport_error(exc: httpx.HTTPError, *, creating: bool = False) -> ProviderError:
    """Map an httpx exception. `creating`: the request was a create (a paid POST).

    Before the connection is up nothing was sent, so nothing was created. After that, a read timeout or
    a dropped connection leaves a create's outcome unknown: the server may have made (and billed) a task.
    """
    name = type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return ProviderError(FailureKind.UNAVAILABLE, f"could not connect ({name})")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError | httpx.TooManyRedirects):
        return ProviderError(FailureKind.INTERNAL, f"request not sendable ({name})")
    if isinstance(exc, httpx.TimeoutException):
        return ProviderError(FailureKind.UNAVAILABLE, f"no answer in time ({name})", maybe_created=creating)
    return ProviderError(FailureKind.UNAVAILABLE, f"connection failed mid-request ({name})", maybe_created=creating)
