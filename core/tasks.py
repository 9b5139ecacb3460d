"""A provider task as the rest of the bot sees it: a normalised state, and why it failed."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

TaskState = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class FailureKind(StrEnum):
    """Normalised failure classes; each has one friendly message for the user (services.endings)."""

    AUTH = "auth"  # our key is wrong or revoked (admin problem)
    BALANCE = "balance"  # the provider account is out of credit (admin problem)
    RATE_LIMITED = "rate_limited"  # try again shortly
    UNAVAILABLE = "unavailable"  # connection errors, 5xx, timeouts
    BAD_REQUEST = "bad_request"  # the provider refused our parameters
    MODERATION = "moderation"  # the prompt or the output was blocked (incl. NSFW-flagged output)
    GENERATION_FAILED = "generation_failed"  # the task ran and failed
    TIMEOUT = "timeout"  # the job passed its deadline
    OUTPUT_INVALID = "output_invalid"  # the output could not be downloaded or is not a usable video
    UNDELIVERABLE = "undeliverable"  # the clip exists but could not be posted where it was asked for
    INTERNAL = "internal"


@dataclass(frozen=True)
class TaskStatus:
    """A normalised snapshot of a provider task."""

    state: TaskState
    queue_position: int | None = None
    progress: float | None = None  # 0..1 when the provider reports it
    output_url: str | None = None
    nsfw: tuple[bool, ...] = ()
    failure: FailureKind | None = None
    failure_detail: str = ""  # log-safe
    retry_after: float | None = None  # provider's hint for the next poll, seconds
    raw_status: str = ""  # the provider's own status word, for logs

    @property
    def terminal(self) -> bool:
        return self.state in ("succeeded", "failed", "cancelled")
