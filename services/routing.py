"""Which provider serves a job: configured order, capabilities, per-server pins, and cool-downs.

A provider that fails repeatedly (connection errors, 5xx, auth or balance errors on submit) is taken
out of rotation for a while, and an admin-facing WARNING says so. The router's view is this process's; a
`CooldownListener` (services.cooldowns) shares what it decides with the deployment's other processes and
brings theirs in (`hold_out`, `bring_back`). The free preview provider stands in
only when no paid provider is configured (or a server pins it): a paid job must never silently turn
into a preview because the paid services are down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from core.errors import UserError
from core.provider import Provider
from core.spec import END_FRAME_MODELS, GenerationSpec
from core.tasks import FailureKind
from core.text import Text, tr

log = logging.getLogger(__name__)

# Failures that say "this provider cannot take work right now", as opposed to "this request is bad".
OUTAGE_KINDS = frozenset({FailureKind.UNAVAILABLE, FailureKind.RATE_LIMITED, FailureKind.AUTH, FailureKind.BALANCE})
# These will not fix themselves: one is enough to take the provider out.
ADMIN_KINDS = frozenset({FailureKind.AUTH, FailureKind.BALANCE})


@dataclass
class _Health:
    failures: int = 0
    out_until: float = 0.0


class CooldownListener(Protocol):
    """Told what this process decides about a provider, synchronously (`until` on the router's clock)."""

    def taken_out(self, name: str, until: float, reason: str) -> None: ...

    def brought_back(self, name: str) -> None:
        """A provider that was out answered well before its cool-down ended."""
        ...


@dataclass
class ProviderRouter:
    providers: Mapping[str, Provider]  # enabled providers, in order of preference
    pins: Mapping[int, list[str]] = field(default_factory=dict)  # guild id -> providers it may use
    failure_threshold: int = 3
    cooldown_seconds: float = 300.0
    clock: Callable[[], float] = time.monotonic
    listener: CooldownListener | None = None
    _health: dict[str, _Health] = field(default_factory=dict)

    def candidates(self, spec: GenerationSpec, guild_id: int | None) -> list[str]:
        """Providers that may serve this job, best first. Raises UserError when there are none."""
        allowed = self._allowed(guild_id)
        serving = [name for name in allowed if self.providers[name].capabilities.serves(spec)]
        if not serving:
            raise UserError(self._nothing_serves(spec))
        healthy = [name for name in serving if self.available(name)]
        # When every candidate is cooling down, try them anyway rather than refuse outright:
        # the cool-down is a preference, and the submit will tell.
        return healthy or serving

    def _allowed(self, guild_id: int | None) -> list[str]:
        pinned = self.pins.get(guild_id) if guild_id is not None else None
        if pinned:
            return [name for name in pinned if name in self.providers]
        paid = [name for name in self.providers if not self.is_free(name)]
        return paid or [name for name in self.providers if self.is_free(name)]

    def is_free(self, name: str) -> bool:
        provider = self.providers.get(name)
        return provider is not None and provider.capabilities.free

    def _nothing_serves(self, spec: GenerationSpec) -> Text:
        if spec.end_image is not None:
            if spec.model not in END_FRAME_MODELS:
                return tr(
                    "An end frame needs the Hailuo 02 model. Choose `model: Hailuo 02` or leave out the end image."
                )
            return tr(
                "No configured video service takes an end frame at quality `{quality}`. "
                "Try `quality: pro`, or leave out the end image.",
                quality=spec.quality,
            )
        if spec.mode == "t2v":
            return tr(
                "No configured video service can make {model} `{quality}` text-to-video clips. "
                "Try another model or quality.",
                model=spec.model,
                quality=spec.quality,
            )
        return tr(
            "No configured video service can make {model} `{quality}` image-to-video clips. "
            "Try another model or quality.",
            model=spec.model,
            quality=spec.quality,
        )

    def available(self, name: str) -> bool:
        return self.clock() >= self._health.get(name, _Health()).out_until

    def out_until(self, name: str) -> float | None:
        """When the provider's cool-down ends (on `clock`), or None when it is in rotation."""
        until = self._health.get(name, _Health()).out_until
        return until if until > self.clock() else None

    def record_success(self, name: str) -> None:
        was_out = self.out_until(name) is not None
        self._health.pop(name, None)
        if was_out and self.listener is not None:
            self.listener.brought_back(name)

    def record_failure(self, name: str, kind: FailureKind) -> None:
        if kind not in OUTAGE_KINDS:
            return
        health = self._health.setdefault(name, _Health())
        health.failures += 1
        if kind in ADMIN_KINDS or health.failures >= self.failure_threshold:
            health.out_until = self.clock() + self.cooldown_seconds
            log.warning(
                "provider %s taken out of rotation for %d s after %d failure(s) (last: %s)%s",
                name,
                self.cooldown_seconds,
                health.failures,
                kind.value,
                "; check its API key and balance" if kind in ADMIN_KINDS else "",
            )
            reason = f"{health.failures} failure(s), last: {kind.value}"
            health.failures = 0
            if self.listener is not None and health.out_until > self.clock():
                self.listener.taken_out(name, health.out_until, reason)

    def hold_out(self, name: str, until: float) -> None:
        """Keep the provider out of rotation until `until` (on `clock`): another process took it out."""
        self._health.setdefault(name, _Health()).out_until = until

    def bring_back(self, name: str) -> None:
        """End the provider's cool-down now: another process saw it answer well. Failures counted here stay."""
        health = self._health.get(name)
        if health is not None:
            health.out_until = 0.0

    def _reachable(self) -> list[Provider]:
        names = set(self._allowed(None)) | {name for pinned in self.pins.values() for name in pinned}
        return [provider for name, provider in self.providers.items() if name in names]

    def offered_models(self) -> list[str]:
        """Models some usable provider can make (what the commands' `model` option offers)."""
        return sorted({model for p in self._reachable() for model in p.capabilities.models})

    def models_for(self, guild_id: int | None) -> list[str]:
        """Models the providers this server may use can make (its pin, or the default providers)."""
        return sorted({model for name in self._allowed(guild_id) for model in self.providers[name].capabilities.models})

    def end_frames_possible(self) -> bool:
        return any(p.capabilities.end_frame_models for p in self._reachable())
