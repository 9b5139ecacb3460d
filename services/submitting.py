"""Submitting a job: to the first provider that takes it, failing over only when nothing was created.

A paid submit is sent once. Another provider is tried only after an outage-type refusal (the provider
answered: nothing exists there), and only if its price fits the reservation. A submit whose outcome
is unknown (the request left, no answer came back) is never sent anywhere again: the job is refunded
and a WARNING tells the admin to check the provider's dashboard.
"""

from __future__ import annotations

from dataclasses import replace

from core.clock import iso_now
from core.errors import UserError
from core.jobs import JobStatus
from core.provider import ProviderError
from core.spec import GenerationSpec
from core.tasks import FailureKind
from services.endings import end_cancelled, fail, log, record_status
from services.routing import OUTAGE_KINDS
from services.run import Crew, JobRun


async def submit(crew: Crew, run: JobRun, spec: GenerationSpec) -> bool:
    """Submit the job; True once a provider holds its task (`run.task_id`), False when it ended here."""
    try:
        candidates = crew.router.candidates(spec, run.job.guild_id)
    except UserError as exc:  # the configuration changed since the job was created
        await fail(crew.store, run, FailureKind.BAD_REQUEST, exc.message)
        return False
    reserved = (await crew.store.ledger_totals(run.job.id)).reserved
    affordable = [name for name in candidates if crew.prices.price_micros(name, spec) <= reserved]
    for index, name in enumerate(affordable):
        if not await _use_provider(crew, run, name, crew.prices.price_micros(name, spec)):
            run.ending = True  # it ended in another process before the paid call: nothing is sent
            return False
        # Cancel and submit exclude each other: the last look at the flag and `submitting` going up
        # happen with no await between them, so a Cancel either stops the job here (and was told
        # "before it started") or finds the submit in flight (and was told what that means).
        if run.cancel_requested:
            await end_cancelled(crew.store, run, "cancelled before submit")
            return False
        run.submitting = True
        try:
            run.task_id = await crew.router.providers[name].submit(spec)
        except ProviderError as exc:
            run.submitting = False
            crew.router.record_failure(name, exc.kind)
            if exc.maybe_created:
                # The task may exist and may be billed; we cannot find it again, so we stop here
                # and say so loudly for the admin. The user is refunded either way.
                log.warning("job %d: submit outcome unknown on %s (%s); not retried", run.job.id, name, exc)
            elif exc.kind in OUTAGE_KINDS and index + 1 < len(affordable):
                log.info("job %d: %s refused the submit (%s); trying %s", run.job.id, name, exc, affordable[index + 1])
                continue
            await fail(crew.store, run, exc.kind, str(exc))
            return False
        except BaseException:
            run.submitting = False
            raise
        crew.router.record_success(name)
        await _store_task_id(crew, run, name, run.task_id)
        return True
    await fail(crew.store, run, FailureKind.UNAVAILABLE, "no provider could take the job")
    return False


async def _store_task_id(crew: Crew, run: JobRun, provider: str, task_id: str) -> None:
    """Store the new task's id before anything else happens to the job. The store waits out a sick
    database; meanwhile the job still counts as submitting, so a graceful stop waits for it too. If the
    bot is stopped before the id is stored, the job resumes as an interrupted submit (refunded, with a
    warning), and this line tells the admin which task to look for."""
    try:
        await record_status(
            crew.store, run, JobStatus.SUBMITTED, task_id, provider_task_id=task_id, submitted_at=iso_now()
        )
    except BaseException:
        log.warning(
            "job %d: %s created task %s, but the bot stopped before storing its id: check it on the provider's "
            "dashboard",
            run.job.id,
            provider,
            task_id,
        )
        raise
    finally:
        run.submitting = False


async def _use_provider(crew: Crew, run: JobRun, name: str, price: int) -> bool:
    if (name, price) != (run.job.provider, run.job.cost_micros):
        await crew.store.update(run.job.id, provider=name, cost_micros=price)
        run.job = replace(run.job, provider=name, cost_micros=price)
        run.card = replace(run.card, provider=name, cost_micros=price, free=crew.router.is_free(name))
    return await record_status(crew.store, run, JobStatus.SUBMITTING)
