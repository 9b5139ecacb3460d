"""One base for the HTTP providers: clients, requests with their errors mapped, download and close.

A provider module then holds only what is particular to it: its endpoints, how it builds a request
body, and how it reads its answers and error bodies. The rules every paid client must keep live here:

- `_create` sends the one request that creates a (billed) task, exactly once. A transport error after
  the request may have left says so (`maybe_created`), and nothing here ever sends it again.
- `_request` is for everything that creates nothing (polls, uploads, cancels); it is not retried
  either: the job runner decides when to poll again.
- A 2xx answer that cannot be read is "malformed" (poll: transient) or, for a create, "unreadable
  success" (a task may exist and be billed: never failed over, never retried).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import httpx

from core.provider import Capabilities, ProviderError
from core.tasks import FailureKind
from providers.kit.download import stream_download
from providers.kit.http import (
    build_client,
    build_download_client,
    error_from_response,
    json_or_none,
    request_id,
    response_message,
    transport_error,
    unreadable_success,
)


class HttpProvider:
    """The shared half of a `Provider` that speaks HTTP. Subclasses set `name` and `capabilities`,
    implement `submit` and `poll`, and override `_error` when their error bodies need more reading."""

    name: str  # set by each subclass
    capabilities: Capabilities
    default_base_url: ClassVar[str]
    auth_scheme: ClassVar[str] = "Bearer"

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._secrets: tuple[str, ...] = (api_key,)  # kept out of every error text
        url = base_url or self.default_base_url
        self._api = build_client(url, api_key, auth_scheme=self.auth_scheme, timeout=timeout, transport=transport)
        self._downloads = build_download_client(timeout=timeout, transport=transport)

    # ----- requests ----------------------------------------------------------------------------------

    async def _create(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send the request that creates a task, once. Raises ProviderError for transport failures and
        error answers, with `maybe_created` where the task may exist all the same."""
        try:
            response = await self._api.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise transport_error(exc, creating=True) from exc
        if response.is_error:
            raise self._error(response, creating=True)
        return response

    async def _request(self, method: str, path: str, *, not_found: str | None = None, **kwargs: Any) -> httpx.Response:
        """A request that creates nothing. With `not_found`, a 404 means the task is unknown there:
        BAD_REQUEST (never transient), so a poll for it ends the job instead of polling until its deadline."""
        try:
            response = await self._api.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise transport_error(exc) from exc
        if not_found is not None and response.status_code == 404:
            raise ProviderError(FailureKind.BAD_REQUEST, not_found, status=404, request_id=request_id(response.headers))
        if response.is_error:
            raise self._error(response, creating=False)
        return response

    # ----- reading answers ---------------------------------------------------------------------------

    def _error(self, response: httpx.Response, *, creating: bool) -> ProviderError:
        """The ProviderError for an error answer; the default reads the common body shapes."""
        return error_from_response(response, message=self._message(response), creating=creating)

    def _message(self, response: httpx.Response) -> str:
        return response_message(response, secrets=self._secrets)

    def _object(self, response: httpx.Response) -> dict[str, Any]:
        """The JSON object of a 2xx that creates nothing, or a transient "malformed response" (usually a
        proxy or a half-deployed backend: the next poll will likely read fine)."""
        payload = json_or_none(response)
        if not isinstance(payload, dict):
            raise self._malformed(response)
        return payload

    def _created_object(self, response: httpx.Response) -> dict[str, Any]:
        """The JSON object of a create's 2xx answer; anything else means a task may exist unseen."""
        payload = json_or_none(response)
        if not isinstance(payload, dict):
            raise unreadable_success(response, "malformed submit response")
        return payload

    @staticmethod
    def _malformed(response: httpx.Response) -> ProviderError:
        return ProviderError(
            FailureKind.UNAVAILABLE,
            "malformed response",
            status=response.status_code,
            request_id=request_id(response.headers),
        )

    @staticmethod
    def _no_task_id(response: httpx.Response) -> ProviderError:
        return unreadable_success(response, "submit response without a task id")

    # ----- the rest of the Provider protocol ---------------------------------------------------------

    async def download(self, url: str, dest: Path, max_bytes: int) -> int:
        """Output URLs live on CDNs: fetched with a client that carries no credentials."""
        return await stream_download(self._downloads, url, dest, max_bytes)

    async def cancel(self, task_id: str) -> bool:
        return False  # most providers document no cancel; those that do override this

    async def aclose(self) -> None:
        await self._api.aclose()
        await self._downloads.aclose()
