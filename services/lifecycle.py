"""One job's path — submit → watch → deliver → settle — carried on from whatever state it is in.

A fresh job is `reserved`; after a restart it may be anywhere, and each step is safe to repeat:
nothing is submitted twice, posted twice or charged twice (the resume table in the README).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from core.clock import iso_now, unix
from core.jobs import JobStatus
from core.provider import Provider
from core.tasks import FailureKind
from services.cancelling import cancel_after_submit
from services.delivery import deliver
from services.endings import fail, log, settle
from services.inputs import InputImages
from services.run import Crew, JobRun
from services.submitting import submit
from services.watching import watch


async def execute(crew: Crew, run: JobRun, inputs: InputImages) -> None:
    """Carry the job to its end. Never raises (except cancellation): a bug ends the job refunded."""
    try:
        await carry_on(crew, run, inputs)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("job %d: internal error", run.job.id)
        await fail(crew.store, run, FailureKind.INTERNAL, "internal error")
    if crew.verdicts is not None:
        ended = await crew.store.get(run.job.id)
        if ended is not None and ended.error_kind == FailureKind.MODERATION:
            await crew.verdicts(ended)  # a provider's content filter blocked it: a strike for the member


async def carry_on(crew: Crew, run: JobRun, inputs: InputImages) -> None:
    job = run.job
    await run.updater.update(run.card)
    if job.status == JobStatus.POSTING and job.output_url and await run.reporter.delivered_before(run.card):
        await settle(crew.store, job, "file", "found already posted after a restart")
        return
    provider = crew.router.providers.get(job.provider)
    # Past `reserved`, a provider whose tasks live in the process has lost this one in the restart.
    if provider is not None and job.status != JobStatus.RESERVED and not provider.capabilities.tasks_survive_restart:
        if not await _start_again(crew, run, provider):
            return
        job = run.job
    if job.status == JobStatus.SUBMITTING:
        # The bot stopped while the submit was in flight: it may or may not exist at the provider,
        # and there is no way to look it up, so it is never sent again. Refund, and tell the admin.
        log.warning("job %d: the bot stopped while submitting to %s; outcome unknown", job.id, job.provider)
        await fail(crew.store, run, FailureKind.UNAVAILABLE, "interrupted during submit")
        return
    if job.status in (JobStatus.DOWNLOADING, JobStatus.POSTING) and job.output_url:
        run.card = run.card.with_stage("downloading", started_at=unix(job.submitted_at))
        await deliver(crew, run, job.output_url)
        return
    if job.provider_task_id is None:
        if not await submit(crew, run, inputs.spec_for(job)):
            return
        if run.cancel_requested:  # the member pressed Cancel while the submit was in flight
            await cancel_after_submit(crew, run)
        submitted = time.time()
    else:
        run.task_id = job.provider_task_id
        submitted = unix(job.submitted_at) or time.time()
    status = await watch(crew, run, submitted)
    if status is None:
        return
    assert status.output_url is not None
    await crew.store.update(
        run.job.id,
        provider_done_at=iso_now(),
        generation_seconds=round(time.time() - submitted, 3),
        output_url=status.output_url,
    )
    run.card = run.card.with_stage("downloading", started_at=int(submitted))
    await deliver(crew, run, status.output_url)


async def _start_again(crew: Crew, run: JobRun, provider: Provider) -> bool:
    """A task that lived in the process that stopped (a local preview render) is gone. A free one is
    simply started again; a paid one could not be, so it ends refunded. Returns whether to go on."""
    job = run.job
    if not provider.capabilities.free:
        log.warning("job %d: its %s task did not survive the restart; refunding", job.id, job.provider)
        await fail(crew.store, run, FailureKind.INTERNAL, "task lost in a restart")
        return False
    log.info("job %d: its %s task did not survive the restart; starting it again (free)", job.id, job.provider)
    run.job = replace(job, status=JobStatus.RESERVED, provider_task_id=None, output_url=None)
    return True
