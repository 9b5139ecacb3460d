"""How a job ends — settled (delivered) or refunded (failed, cancelled) — and what its card says then.

Every ending is one `JobStore.finish`: the status and the ledger outcome in one transaction, at most
once per job (a second ending changes nothing). Each state change is one log line with the job id.
"""

from __future__ import annotations

import logging
from typing import Unpack

from core.jobs import JobChanges, JobRecord, JobStatus
from core.store import JobStore
from core.tasks import FailureKind
from core.text import N_, Text, tr
from services.run import JobRun

# One log for a job's whole life, whichever module the step lives in.
log = logging.getLogger("services.jobs")

# Why a refunded job ended, on its card (the server's language). The card's text is made again from the
# stored `error_kind` whenever it is shown (after a restart too), so it is always a translatable Text.
SAFE_MESSAGES: dict[FailureKind, str] = {
    FailureKind.AUTH: N_("The video service rejected the bot's credentials. An admin needs to check the API key."),
    FailureKind.BALANCE: N_("The video service account is out of credit. An admin needs to top it up."),
    FailureKind.RATE_LIMITED: N_("The video service is busy right now. Please try again in a minute."),
    FailureKind.UNAVAILABLE: N_("The video service is unavailable right now. Please try again later."),
    FailureKind.BAD_REQUEST: N_("The video service refused these settings. Try different options."),
    FailureKind.MODERATION: N_(
        "The video service's content filter blocked this request. Try a different prompt or image."
    ),
    FailureKind.GENERATION_FAILED: N_("The video service could not generate this clip. Please try again."),
    FailureKind.TIMEOUT: N_("The video took too long to generate and was abandoned."),
    FailureKind.OUTPUT_INVALID: N_("The finished video could not be retrieved."),
    FailureKind.UNDELIVERABLE: N_(
        "The video was made but could not be posted here (it may be too large for this server, even re-encoded)."
    ),
    FailureKind.INTERNAL: N_("Something went wrong on our side."),
}
CANCELLED = N_("Cancelled. You were not charged.")
NOT_CHARGED = N_("{reason} You were not charged.")


def ending_message(status: JobStatus | str, error_kind: str | None) -> Text:
    """What a refunded job's card says: why it ended, and that nothing was charged."""
    if status == JobStatus.CANCELLED:
        return tr(CANCELLED)
    try:
        kind = FailureKind(error_kind or "")
    except ValueError:
        kind = FailureKind.INTERNAL
    return tr(NOT_CHARGED, reason=tr(SAFE_MESSAGES[kind]))


async def record_status(
    store: JobStore, run: JobRun, status: JobStatus, detail: str = "", **changes: Unpack[JobChanges]
) -> bool:
    """Persist a state change with its history row, and log it (one line per change, with the job id). False
    when the job had ended already (elsewhere: a Cancel while it waited for a worker)."""
    if not await store.set_status(run.job.id, status, detail, **changes):
        log.warning("job %d: ended already; not moved to %s", run.job.id, status.value)
        return False
    log.info("job %d: %s%s (%s)", run.job.id, status.value, f" {detail}" if detail else "", run.job.provider)
    return True


async def fail(store: JobStore, run: JobRun, kind: FailureKind, detail: str) -> None:
    """Refund the job and show why it ended."""
    run.ending = True
    if await refund(store, run.job, JobStatus.FAILED, kind, detail):
        message = ending_message(JobStatus.FAILED, kind.value)
        await run.updater.update(run.card.with_stage("failed", message=message))


async def end_cancelled(store: JobStore, run: JobRun, detail: str) -> None:
    run.ending = True
    if await refund(store, run.job, JobStatus.CANCELLED, None, detail):
        message = ending_message(JobStatus.CANCELLED, None)
        await run.updater.update(run.card.with_stage("cancelled", message=message))


async def refund(store: JobStore, job: JobRecord, status: JobStatus, kind: FailureKind | None, detail: str) -> bool:
    """End the job with a refund of its whole reservation. False when it had already ended."""
    label = kind.value if kind else status.value
    ended = await store.finish(
        job.id,
        status,
        "refund",
        f"{label}: {detail}"[:500],
        error_kind=kind.value if kind else None,
        error_detail=detail[:500],
    )
    if ended:
        log.info("job %d: %s (%s), refunded", job.id, status.value, label)
    return ended


async def settle(store: JobStore, job: JobRecord, delivered_as: str, detail: str = "") -> None:
    """End the job delivered: charge its price (the rest of the reservation is released). Its card went
    out with the clip, so it is marked shown in the same transaction."""
    await store.finish(job.id, JobStatus.DELIVERED, "settle", detail or delivered_as, delivered_as=delivered_as)
    log.info("job %d: delivered (%s), settled %d micros", job.id, delivered_as, job.cost_micros)
