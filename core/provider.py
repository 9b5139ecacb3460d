"""The provider interface: submit, poll, download (and cancel, and callbacks, where supported).

Providers never import discord. Each maps its own wire statuses and errors onto `TaskStatus` and
`ProviderError`, so the job lifecycle and the user see the same outcomes whichever provider served.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from core.spec import GenerationSpec
from core.tasks import FailureKind, TaskStatus


class ProviderError(Exception):
    """A provider call failed. `str()` never contains a provider's raw body or a secret.

    `maybe_created` is True when a submit may have created a (billable) task even though we got no
    task id back (for example a read timeout after the request was sent): such a submit must never be
    retried blindly.
    """

    def __init__(
        self,
        kind: FailureKind,
        detail: str = "",
        *,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        maybe_created: bool = False,
    ) -> None:
        super().__init__(f"{kind.value}: {detail}" if detail else kind.value)
        self.kind = kind
        self.detail = detail  # short, log-safe description (no raw body, no secret)
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after
        self.maybe_created = maybe_created

    @property
    def transient(self) -> bool:
        """Worth polling again (never a reason to re-submit)."""
        return self.kind in (FailureKind.RATE_LIMITED, FailureKind.UNAVAILABLE)


@dataclass(frozen=True)
class Capabilities:
    """What a provider can make and do. Commands offer, and jobs are routed by, exactly this."""

    offers: frozenset[tuple[str, str]]  # (model, variant), e.g. ("hailuo-2.3", "i2v-fast")
    end_frame_models: frozenset[str] = frozenset()  # models that accept a last frame
    # Where only some variants of those models take a last frame (WaveSpeed: i2v-pro); None = all.
    end_frame_variants: frozenset[str] | None = None
    can_cancel: bool = False
    # It can tell a genuine callback from a forgery (a signature, or a secret in the URL). Whether
    # callbacks actually arrive also needs the bot to have a public URL: the composition root decides.
    verifies_callbacks: bool = False
    free: bool = False
    # False for a provider whose tasks live in this process (the local preview renderer): after a
    # restart its tasks are gone, and a free one is simply started again.
    tasks_survive_restart: bool = True

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(sorted({model for model, _ in self.offers}))

    def serves(self, spec: GenerationSpec) -> bool:
        if (spec.model, spec.variant) not in self.offers:
            return False
        if spec.end_image is None:
            return True
        variants = self.end_frame_variants
        return spec.model in self.end_frame_models and (variants is None or spec.variant in variants)


def offers(model: str, variants: Iterable[str]) -> frozenset[tuple[str, str]]:
    return frozenset((model, variant) for variant in variants)


@dataclass(frozen=True)
class WebhookSignal:
    """What a verified callback tells us: which task to poll now. Never trusted for money or output."""

    task_id: str | None  # None: nothing to do (a test event, a challenge)
    reply: dict[str, object] | None = None  # JSON body to answer with (MiniMax's challenge echo)
    event_id: str | None = None  # the provider's delivery id, for ignoring duplicates


class WebhookRejected(Exception):
    """A callback failed verification (bad or missing signature, stale timestamp, malformed)."""


class Provider(Protocol):
    name: str
    capabilities: Capabilities

    async def submit(self, spec: GenerationSpec) -> str:
        """Start a task and return the provider's task id. Never retried blindly by callers.

        Raises ProviderError (with `maybe_created` set when the outcome is unknown)."""
        ...

    async def poll(self, task_id: str) -> TaskStatus:
        """One status check. Raises ProviderError for transport/HTTP problems (check `.transient`)."""
        ...

    async def download(self, url: str, dest: Path, max_bytes: int) -> int:
        """Stream the output at `url` into `dest` (never whole in memory); return the size in bytes.

        Raises ProviderError(OUTPUT_INVALID) when it is missing, too large, or cannot be fetched, and
        OSError when the local disk cannot take it (full, read-only): that is not the output's fault."""
        ...

    async def cancel(self, task_id: str) -> bool:
        """Ask the provider to cancel; False when the provider cannot cancel."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class WebhookProvider(Provider, Protocol):
    """A provider whose `capabilities.verifies_callbacks` is True."""

    async def prepare_webhooks(self) -> None:
        """Fetch whatever verification needs (e.g. a signing secret) before callbacks can arrive.

        Raises ProviderError when the provider cannot be reached; the receiver retries later."""
        ...

    def verify_webhook(self, headers: Mapping[str, str], body: bytes, now: float) -> WebhookSignal:
        """Check signature and timestamp of one callback; raise WebhookRejected if it fails."""
        ...
