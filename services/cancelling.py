"""Cancel: what pressing it does at each stage of a job, and what the member is told.

Before the provider is called the job simply stops and is refunded. At a provider that can cancel, the
bot asks, and the money follows what the provider finally reports (cancelled: refunded; finished
first: delivered). Where the provider cannot cancel, the job is already paid for and is delivered.
"""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum

from core.provider import ProviderError
from core.text import N_, Text, tr
from services.endings import log
from services.run import Crew, JobRun


class CancelOutcome(StrEnum):
    STOPPED = "stopped"  # before the provider was called: refunded
    IN_FLIGHT = "in_flight"  # the submit is on its way to a provider that can cancel: asked once it answers
    REQUESTED = "requested"  # the provider accepted a cancel; refunded when it confirms
    NOT_POSSIBLE = "not_possible"  # the provider cannot cancel a started task: it will be delivered
    TOO_LATE = "too_late"  # already finished (or finishing)
    UNKNOWN = "unknown"  # not a running job of this process
    NO_ANSWER = "no_answer"  # handed to a worker that did not answer (stopping, or lost and soon replaced)

    @property
    def message(self) -> Text:
        """What the member who pressed Cancel is told (privately, in their language)."""
        return tr(MESSAGES[self])


# Each says what will actually happen, including the outcome the member may not hope for.
MESSAGES = {
    CancelOutcome.STOPPED: N_("Cancelled before it started. You were not charged."),
    CancelOutcome.IN_FLIGHT: N_(
        "Your request is reaching the video service right now. I will ask it to stop as soon as it answers: "
        "if it stops, you are refunded; if the video is already made, it is posted here and charged. "
        "The card will say which."
    ),
    CancelOutcome.REQUESTED: N_(
        "Cancel requested. If the video service confirms it stopped, you are refunded; if the video finishes "
        "first, it is posted here and charged. The card will say which."
    ),
    CancelOutcome.NOT_POSSIBLE: N_(
        "This video service cannot stop a video once it has started, and it is already paid for, so it will "
        "still be posted here."
    ),
    CancelOutcome.TOO_LATE: N_("Too late to cancel: this video has already finished."),
    CancelOutcome.UNKNOWN: N_("That job is not running any more."),
    CancelOutcome.NO_ANSWER: N_(
        "The process running this job did not answer. Nothing changed: try Cancel again in a minute."
    ),
}
# On the card (the server's language) when a Cancel pressed during the submit could not stop the task
# once it existed.
CANCEL_FAILED_NOTICE = N_(
    "Cancel was not possible: the video service had already taken the request. It will be posted here."
)


async def cancel_running(crew: Crew, run: JobRun) -> CancelOutcome:
    """The member pressed Cancel on a job this process is running."""
    if run.card.stage in ("downloading", "posting", "done"):
        return CancelOutcome.TOO_LATE
    if run.task_id is not None:
        return await cancel_at_provider(crew, run)
    if not run.submitting:
        # Not at a provider yet: the submit checks this flag right before the paid call.
        run.cancel_requested = True
        run.wakeup.set()
        return CancelOutcome.STOPPED
    # The paid request is in flight: its answer decides. Where the provider cannot cancel, say so now.
    if not crew.router.providers[run.job.provider].capabilities.can_cancel:
        log.info(
            "job %d: cancel during submit on %s, which cannot cancel; keeping the job", run.job.id, run.job.provider
        )
        return CancelOutcome.NOT_POSSIBLE
    run.cancel_requested = True
    return CancelOutcome.IN_FLIGHT


async def cancel_after_submit(crew: Crew, run: JobRun) -> None:
    """A Cancel came while the submit was in flight: ask the provider now that the task exists, and if
    it cannot stop it, say so on the card (the member was told this could happen)."""
    outcome = await cancel_at_provider(crew, run)
    if outcome is not CancelOutcome.REQUESTED:
        run.card = replace(run.card, notice=tr(CANCEL_FAILED_NOTICE))
        await run.updater.update(run.card)


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
        run.cancel_requested = False
        log.warning("job %d: cancel failed on %s: %s", run.job.id, run.job.provider, exc)
        return CancelOutcome.NOT_POSSIBLE
    if not accepted:
        run.cancel_requested = False
        return CancelOutcome.TOO_LATE
    # Money follows what the provider finally reports: cancelled → refund; completed → delivered.
    run.cancel_requested = True
    run.wakeup.set()
    log.info("job %d: cancel accepted by %s", run.job.id, run.job.provider)
    return CancelOutcome.REQUESTED
