"""A job as services see it: its status, the record a store keeps, and the money figures."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, TypedDict

from core.admin import PoolDraw


class JobStatus(StrEnum):
    """Where a job is. Stored as these words; the resume table in the README is keyed by them."""

    RESERVED = "reserved"  # money reserved, never sent to a provider
    SUBMITTING = "submitting"  # the paid submit is in flight: its outcome is unknown until it returns
    SUBMITTED = "submitted"
    QUEUED = "queued"
    RUNNING = "running"
    DOWNLOADING = "downloading"
    POSTING = "posting"
    DELIVERED = "delivered"  # settled
    FAILED = "failed"  # refunded
    CANCELLED = "cancelled"  # refunded

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def refunded(self) -> bool:
        return self in REFUNDED_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.DELIVERED, JobStatus.FAILED, JobStatus.CANCELLED})
REFUNDED_STATUSES = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})
Outcome = Literal["settle", "refund"]
# How a job came from its parent (`parent_job_id`): the card says "Re-roll of #N", "Remix of #N", …
ParentKind = Literal["reroll", "remix", "continue", "retry"]


@dataclass(frozen=True)
class NewJob:
    user_id: int
    guild_id: int | None
    channel_id: int | None
    interaction_id: int | None
    command: str
    mode: str
    quality: str
    duration: int
    optimize_prompt: bool
    model: str
    prompt: str
    input_image: str | None
    provider: str
    cost_micros: int
    parent_job_id: int | None = None
    end_image: str | None = None
    upload_limit: int | None = None
    parent_kind: ParentKind | None = None
    # The pool that may pay for it (its channel's or one of the member's roles'); the reservation check
    # decides whether it does (core.store.ReservationCheck).
    pool: PoolDraw | None = None


@dataclass(frozen=True)
class JobRecord:
    id: int
    created_at: str
    updated_at: str
    user_id: int
    guild_id: int | None
    channel_id: int | None
    message_id: int | None
    interaction_id: int | None
    command: str
    mode: str
    quality: str
    duration: int
    optimize_prompt: bool
    model: str
    prompt: str
    input_image: str | None
    provider: str
    provider_task_id: str | None
    status: JobStatus
    cost_micros: int
    output_url: str | None
    output_bytes: int | None
    delivered_as: str | None
    error_kind: str | None
    error_detail: str | None
    submitted_at: str | None
    provider_done_at: str | None
    finished_at: str | None
    generation_seconds: float | None
    parent_job_id: int | None
    end_image: str | None
    upload_limit: int | None
    parent_kind: ParentKind | None = None
    set_card_id: int | None = None  # the card listing the variants this job is one of (None: made alone)

    @property
    def terminal(self) -> bool:
        return self.status.terminal


class JobChanges(TypedDict, total=False):
    """Columns a service may change on a job, besides its status."""

    message_id: int
    set_card_id: int
    provider: str
    cost_micros: int
    provider_task_id: str
    submitted_at: str
    provider_done_at: str
    generation_seconds: float
    output_url: str
    output_bytes: int
    delivered_as: str
    error_kind: str | None
    error_detail: str


@dataclass(frozen=True)
class Usage:
    """What counts against limits, read inside the reservation transaction. Amounts in micros."""

    user_in_flight: int
    user_day_videos: int
    user_day_micros: int
    user_month_micros: int
    guild_month_micros: int
    global_month_micros: int
    user_month_grants: int = 0  # credits an admin granted this month, on top of user_monthly_usd
    pool_micros: int = 0  # spent from the job's candidate pool in its current period


@dataclass(frozen=True)
class LedgerTotals:
    reserved: int
    settled: int
    refunded: int
    released: int = 0

    @property
    def outstanding(self) -> int:
        """Reserved money that is neither settled, refunded nor released yet."""
        return self.reserved - self.settled - self.refunded - self.released
