"""Watching a submitted task until it ends: polls on the schedule `services.polling` computes, within
the provider's poll budget, until the job's deadline; a callback or a cancel wakes it early.

Transient poll errors back off (honouring the provider's hint) and keep going; anything else ends the
job. The card follows what the provider reports (queue position, progress) or, failing that, an
estimate from how long jobs of the same kind usually take.
"""

from __future__ import annotations

import time

from core.jobs import JobRecord, JobStatus
from core.provider import ProviderError
from core.tasks import FailureKind, TaskStatus
from services.endings import end_cancelled, fail, log, record_status
from services.progress import JobCard, estimate
from services.run import Crew, JobRun

# The status a task's state is stored as while it runs.
RUNNING_STATUS = {"queued": JobStatus.QUEUED, "running": JobStatus.RUNNING}


async def watch(crew: Crew, run: JobRun, submitted: float) -> TaskStatus | None:
    """Poll until the task succeeds (returns its status) or the job ends here (returns None)."""
    job, task_id = run.job, run.task_id
    assert task_id is not None
    provider = crew.router.providers[job.provider]
    typical, low, high = await history(crew, job)
    callbacks = crew.callbacks_live(job.provider)
    schedule = crew.settings.poll_policy.schedule(typical, low, high, webhooks=callbacks)
    deadline = submitted + crew.settings.deadline_seconds
    previous: tuple[str, int | None, float | None] | None = None
    unfinished_at: float | None = None  # when the last poll that saw the task unfinished was sent
    errors = 0
    while True:
        if callbacks and not asked_to_look(run, unfinished_at) and budget_booked(crew, job.provider, deadline):
            # A safety-net poll stays out of a booked budget, so the poll a callback (or a cancel) asks for
            # never queues behind thousands of them (bench.workers: 10,000 jobs in one worker).
            await run.sleep(min(schedule.next_delay(time.time() - submitted), max(deadline - time.time(), 0.05)))
            continue
        await crew.wait_for_poll_budget(job.provider, until=deadline)
        last_look = time.time() >= deadline  # one more poll past the deadline before giving up
        sent = time.monotonic()
        try:
            status = await provider.poll(task_id)
        except ProviderError as exc:
            if not exc.transient or last_look:
                await fail(crew.store, run, exc.kind if not exc.transient else FailureKind.TIMEOUT, str(exc))
                return None
            errors += 1
            delay = crew.settings.poll_policy.error_delay(errors, exc.retry_after)
            log.debug("job %d: poll error %s, next in %.1fs", job.id, exc, delay)
            await run.sleep(min(delay, max(deadline - time.time(), 0)))
            continue
        errors = 0
        if status.terminal:
            report_notice(crew, run, unfinished_at)
        if status.state == "succeeded":
            return status
        if status.state == "cancelled":
            await end_cancelled(crew.store, run, status.raw_status or "cancelled by the provider")
            return None
        if status.state == "failed":
            await fail(crew.store, run, status.failure or FailureKind.GENERATION_FAILED, status.failure_detail)
            return None
        if last_look:
            await fail(crew.store, run, FailureKind.TIMEOUT, "deadline passed")
            return None
        changed = (status.state, status.queue_position, status.progress) != previous
        if previous is None or status.state != previous[0]:
            await record_status(crew.store, run, RUNNING_STATUS[status.state], status.raw_status)
        previous = (status.state, status.queue_position, status.progress)
        unfinished_at = sent
        await run.updater.update(progress_card(run.card, status, submitted, typical))
        delay = schedule.next_delay(time.time() - submitted, changed, status.retry_after)
        await run.sleep(min(delay, max(deadline - time.time(), 0.05)))


# How far ahead a provider's poll budget may be booked before safety-net polls (callbacks on, none
# arrived) stop joining the queue: what a poll a callback asked for may have to wait.
SAFETY_NET_BACKLOG_S = 0.25


def woken_since(run: JobRun, last_poll: float | None) -> bool:
    """Whether a callback woke the job after its last poll was sent (time.monotonic())."""
    woken = run.woken_by_callback_at
    return woken is not None and (last_poll is None or woken >= last_poll)


def asked_to_look(run: JobRun, last_poll: float | None) -> bool:
    """A callback woke the job since its last poll, or the provider accepted a cancel: poll it now."""
    return run.cancel_requested or woken_since(run, last_poll)


def budget_booked(crew: Crew, provider: str, deadline: float) -> bool:
    """The provider's poll budget is booked beyond SAFETY_NET_BACKLOG_S (and the job's deadline is still
    ahead: the last look before giving up is always taken)."""
    pacer = crew.pacers.get(provider)
    return pacer is not None and pacer.backlog(time.monotonic()) > SAFETY_NET_BACKLOG_S and time.time() < deadline


def report_notice(crew: Crew, run: JobRun, unfinished_at: float | None) -> None:
    """Tell the metrics how late the end of the task was noticed. The task ended after the last poll that
    saw it unfinished, so the time since that poll was sent bounds the delay from above; a callback that
    woke the job since then was sent when the task ended, so the delay is counted from its arrival. A task
    seen ended at its first poll here (a resumed job, a very short task) has no such bound: not reported."""
    now, woken = time.monotonic(), run.woken_by_callback_at
    if woken is not None and woken_since(run, unfinished_at):
        crew.metrics.notice_delay(run.job.provider, "callback", now - woken)
    elif unfinished_at is not None:
        crew.metrics.notice_delay(run.job.provider, "poll", now - unfinished_at)


def progress_card(card: JobCard, status: TaskStatus, submitted: float, typical: float) -> JobCard:
    if status.state == "queued":
        return card.with_stage("queued", queue_position=status.queue_position)
    percent, left = estimate(time.time() - submitted, typical)
    if status.progress is not None:
        percent = int(min(status.progress, 0.99) * 10) * 10
    return card.with_stage("generating", started_at=int(submitted), percent=percent, eta_seconds=left)


async def history(crew: Crew, job: JobRecord) -> tuple[float, float | None, float | None]:
    """(typical, low, high) generation seconds of past jobs of this provider/model/quality/duration:
    the median and about the 5th and 95th percentiles; the configured typical before any history."""
    quantiles = await crew.store.generation_quantiles(job.provider, job.model, job.quality, job.duration)
    if quantiles is None:
        return crew.settings.typical_seconds.get(job.provider, 60.0), None, None
    return quantiles
