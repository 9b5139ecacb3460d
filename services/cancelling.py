"""Cancel: what pressing it does at each stage of a job, and what the member is told.

Before the provider is called the job simply stops and is refunded. At a provider that can cancel, the
bot asks, and the money follows what the provider finally reports (cancelled: refunded; finished
first: delivered). Where the provider cannot cancel, the job is already paid for and is delivered.
"""

from __future__ import annotations

from enum import StrEnum

from core.provider import ProviderError
from services.endings import log
from services.run import Crew, JobRun


class CancelOutcome(StrEnum):
    STOPPED = "stopped"  # before the provider was called: refunded
    REQUESTED = "requested"  # the provider accepted a cancel; refunded when it confirms
    NOT_POSSIBLE = "not_possible"  # the provider cannot cancel a started task: it will be delivered
    TOO_LATE = "too_late"  # already finished (or finishing)
    UNKNOWN = "unknown"  # not a running job of this process

    @property
    def message(self) -> str:
        return MESSAGES[self]


MESSAGES = {
    CancelOutcome.STOPPED: "Cancelled before it started. You were not charged.",
    CancelOutcome.REQUESTED: "Cancel requested. You will be refunded as soon as the video service confirms it stopped.",
    CancelOutcome.NOT_POSSIBLE: "This video service cannot stop a video once it has started, and it is "
    "already paid for, so it will still be posted here.",
    CancelOutcome.TOO_LATE: "Too late to cancel: this video has already finished.",
    CancelOutcome.UNKNOWN: "That job is not running any more.",
}


async def cancel_running(crew: Crew, run: JobRun) -> CancelOutcome:
    """The member pressed Cancel on a job this process is running."""
    if run.card.stage in ("downloading", "posting", "done"):
        return CancelOutcome.TOO_LATE
    if run.task_id is None:
        # Not at the provider yet (or the submit is in flight: then it is cancelled there once it returns).
        run.cancel_requested = True
        run.wakeup.set()
        return CancelOutcome.REQUESTED if run.submitting else CancelOutcome.STOPPED
    return await cancel_at_provider(crew, run)


async def cancel_at_provider(crew: Crew, run: JobRun) -> CancelOutcome:
    provider = crew.router.providers[run.job.provider]
    if not provider.capabilities.can_cancel:
        run.cancel_requested = False  # it will be delivered: the money is spent
        log.info("job %d: cancel not possible on %s; keeping the job", run.job.id, run.job.provider)
        return CancelOutcome.NOT_POSSIBLE
    assert run.task_id is not None
    try:
        accepted = await provider.cancel(run.task_id)
    except ProviderError as exc:
        log.warning("job %d: cancel failed on %s: %s", run.job.id, run.job.provider, exc)
        return CancelOutcome.NOT_POSSIBLE
    if not accepted:
        return CancelOutcome.TOO_LATE
    # Money follows what the provider finally reports: cancelled → refund; completed → delivered.
    run.cancel_requested = True
    run.wakeup.set()
    log.info("job %d: cancel accepted by %s", run.job.id, run.job.provider)
    return CancelOutcome.REQUESTED
