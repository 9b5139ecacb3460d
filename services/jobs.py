"""The job lifecycle: reserve → submit (with failover) → poll → download → fit → deliver → settle.

Discord-free: the caller passes a `JobReporter` that knows how to show a card and deliver a clip
(the Discord cog, or the terminal for `bot.py generate`). Every job ends settled or refunded; a
paid submit is never retried on the same provider, and another provider is tried only when the
first certainly created nothing; each state change is one log line carrying the job id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from providers.base import SAFE_MESSAGES, FailureKind, ProviderError, TaskStatus
from services import media
from services.delivery import JobReporter, post_clip
from services.errors import UserError
from services.intake import JobIntake, Requester
from services.polling import PollPacer, PollPolicy
from services.pricing import PriceTable
from services.progress import CardUpdater, JobCard, edit_interval, estimate
from services.routing import OUTAGE_KINDS, ProviderRouter
from services.spec import RESOLUTION_BY_QUALITY, GenerationSpec
from settings import QuotasSection
from storage.jobs import REFUNDED_STATUSES, JobRecord, JobRepository, iso

log = logging.getLogger(__name__)
# A job that ended this recently without its final card reaching the user gets it at the next start.
ANNOUNCE_WITHIN = timedelta(days=1)


class CancelOutcome(StrEnum):
    STOPPED = "stopped"  # before the provider was called: refunded
    REQUESTED = "requested"  # the provider accepted a cancel; refunded when it confirms
    NOT_POSSIBLE = "not_possible"  # the provider cannot cancel a started task: it will be delivered
    TOO_LATE = "too_late"  # already finished (or finishing)
    UNKNOWN = "unknown"  # not a running job of this process

    @property
    def message(self) -> str:
        return {
            CancelOutcome.STOPPED: "Cancelled before it started. You were not charged.",
            CancelOutcome.REQUESTED: "Cancel requested. You will be refunded as soon as the video service "
            "confirms it stopped.",
            CancelOutcome.NOT_POSSIBLE: "This video service cannot stop a video once it has started, and it is "
            "already paid for, so it will still be posted here.",
            CancelOutcome.TOO_LATE: "Too late to cancel: this video has already finished.",
            CancelOutcome.UNKNOWN: "That job is not running any more.",
        }[self]


@dataclass
class _Run:
    """What one running job carries between its steps."""

    job: JobRecord
    reporter: JobReporter
    card: JobCard
    updater: CardUpdater
    began: float = field(default_factory=time.monotonic)
    task_id: str | None = None
    submitting: bool = False
    ending: bool = False  # refunded or cancelled, its final card on its way
    cancel_requested: bool = False
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)


class JobService:
    def __init__(
        self,
        repo: JobRepository,
        router: ProviderRouter,
        prices: PriceTable,
        quotas: QuotasSection,
        data_dir: Path,
        *,
        deadline_seconds: float = 900,
        max_output_bytes: int = 200 * 1024 * 1024,
        typical_seconds: dict[str, float] | None = None,
        edit_interval: float = 2.0,
        edits_per_second: float = 50.0,
        poll_policy: PollPolicy | None = None,
        polls_per_second: dict[str, float] | None = None,
        webhook_providers: frozenset[str] = frozenset(),
        max_concurrent_deliveries: int = 32,
        max_concurrent_reencodes: int = 2,
    ) -> None:
        self.repo = repo
        self.router = router
        self.prices = prices
        self.inputs_dir = data_dir / "inputs"
        self.intake = JobIntake(repo, router, prices, quotas, self.inputs_dir)
        self.tmp_dir = data_dir / "tmp"
        self.deadline_seconds = deadline_seconds
        self.max_output_bytes = max_output_bytes
        self.typical_seconds = typical_seconds or {}
        self.edit_interval = edit_interval
        self.edits_per_second = edits_per_second
        self.poll_policy = poll_policy or PollPolicy()
        # One pacer per provider with a poll budget: shared by all its jobs (see PollPacer).
        self._pacers = {name: PollPacer(rate) for name, rate in (polls_per_second or {}).items()}
        self.webhook_providers = webhook_providers
        self._tasks: set[asyncio.Task[JobRecord | None]] = set()
        self._runs: dict[int, _Run] = {}
        self.accepting = True  # False while shutting down: new commands are turned away
        # Moving 2–20 MB clips (download, probe, upload) mostly waits on sockets, and clips stream through
        # disk, so many can move at once: at 1,000 jobs in flight about 15 finish per second, and 8 slots
        # held ~0.6 s each made finished clips queue for 15 s (bench). Re-encodes are what burns CPU,
        # so they get their own, much smaller, limit.
        self._delivery_slots = asyncio.Semaphore(max_concurrent_deliveries)
        self._reencode_slots = asyncio.Semaphore(max_concurrent_reencodes)
        for folder in (self.inputs_dir, self.tmp_dir):
            folder.mkdir(parents=True, exist_ok=True)

    # ----- creating jobs -------------------------------------------------------------------------

    async def create(
        self, spec: GenerationSpec, requester: Requester, *, command: str, parent_job_id: int | None = None
    ) -> JobRecord:
        """Reserve the cost and record the job. Raises QuotaExceeded or UserError (nothing charged)."""
        return await self.intake.create(spec, requester, command=command, parent_job_id=parent_job_id)

    def spec_for(self, job: JobRecord) -> GenerationSpec:
        return self.intake.spec_for(job)

    def card_for(self, job: JobRecord) -> JobCard:
        return JobCard(
            job_id=job.id,
            stage="queued",
            prompt=job.prompt,
            command=job.command,
            model=job.model,
            quality=job.quality,
            resolution=RESOLUTION_BY_QUALITY.get(job.quality, "?"),
            duration=job.duration,
            cost_micros=job.cost_micros,
            provider=job.provider,
            requester_id=job.user_id,
        )

    async def abandon(self, job: JobRecord, reason: str) -> None:
        """End a reserved job that never reached a provider, refunding it."""
        await self._refund(job, "failed", FailureKind.INTERNAL, reason)

    # ----- running jobs --------------------------------------------------------------------------

    def start(self, job: JobRecord, reporter: JobReporter) -> asyncio.Task[JobRecord | None]:
        """Run the job in the background; the task is held until it ends. The job can be cancelled
        from the moment this returns."""
        return self._spawn(self._execute(self._register(job, reporter)), f"job-{job.id}")

    def _spawn(self, work: Coroutine[Any, Any, JobRecord | None], name: str) -> asyncio.Task[JobRecord | None]:
        """Run `work` in the background, held in `_tasks` (so shutdown can stop it) until it ends."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def shutdown(self) -> None:
        """Stop every job where it stands; its state is in the database and `resume` carries it on."""
        self.accepting = False
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def wait_idle(self) -> None:
        """Wait for every running job to end on its own (tests and the terminal runner)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def suspend(self, notice: str, grace: float = 5.0) -> None:
        """A graceful stop: turn new commands away, let submits and deliveries in flight finish (so
        none is left ambiguous or half-posted), stop the jobs (see `shutdown`), and only then tell
        each stopped job's followers, so no progress edit can land after the notice."""
        self.accepting = False
        loop = asyncio.get_running_loop()
        end = loop.time() + grace

        def busy() -> bool:
            return any(
                run.submitting or run.ending or run.card.stage in ("downloading", "posting")
                for run in self._runs.values()
            )

        # A short, bounded wait on flags other tasks clear; an Event per step would be more machinery.
        while busy() and loop.time() < end:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        stopped = list(self._runs.values())
        await self.shutdown()
        notes = [
            run.reporter.show(replace(run.updater.last_sent or run.card, notice=notice))
            for run in stopped
            if not run.ending and not (run.updater.last_sent or run.card).final
        ]
        if notes:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*notes, return_exceptions=True), max(end - loop.time(), 1.0))

    def sweep_tmp(self, older_than: float) -> int:
        """Remove temporary files left behind (by a crash) that are older than `older_than` seconds."""
        cutoff = time.time() - older_than
        removed = 0
        for path in self.tmp_dir.iterdir():
            with contextlib.suppress(OSError):
                if path.stat().st_mtime <= cutoff:
                    path.unlink()
                    removed += 1
        if removed:
            log.info("removed %d leftover temporary file(s)", removed)
        return removed

    async def resume(self, reporter_for: Callable[[JobRecord], JobReporter], notice: str) -> int:
        """Start every unfinished job found in the database again; returns how many."""
        jobs = await self.repo.unfinished()
        for job in jobs:
            log.info("job %d: resuming from %s", job.id, job.status)
            run = self._register(job, reporter_for(job))
            run.card = replace(run.card, notice=notice)
            self._spawn(self._execute(run), f"job-{job.id}")
        for ended in await self.repo.unannounced(since=datetime.now(UTC) - ANNOUNCE_WITHIN):
            self._spawn(self._announce(ended, reporter_for(ended)), f"job-{ended.id}-end")
        return len(jobs)

    async def _announce(self, job: JobRecord, reporter: JobReporter) -> JobRecord:
        """Show how a refunded job ended when the bot stopped before its last edit landed (the money
        was already refunded; only the card is behind)."""
        card = self.card_for(job).with_stage(job.status, message=ending_message(job.status, job.error_kind))  # type: ignore[arg-type]
        try:
            await reporter.show(card)
        except Exception:
            log.warning("job %d: its %s card still could not be shown", job.id, job.status, exc_info=True)
            return job
        log.info("job %d: showed its %s card after the restart", job.id, job.status)
        await self.repo.mark_final_shown(job.id)
        return job

    async def run(self, job: JobRecord, reporter: JobReporter) -> JobRecord | None:
        """Carry a reserved job to its end. Never raises (except cancellation)."""
        return await self._execute(self._register(job, reporter))

    def _edit_interval(self) -> float:
        return edit_interval(self.edit_interval, len(self._runs), self.edits_per_second)

    def _register(self, job: JobRecord, reporter: JobReporter) -> _Run:
        run = _Run(job, reporter, self.card_for(job), CardUpdater(reporter.show, self._edit_interval))
        self._runs[job.id] = run
        return run

    async def _execute(self, run: _Run) -> JobRecord | None:
        job = run.job
        try:
            await self._run(run)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %d: internal error", job.id)
            await self._fail(run, FailureKind.INTERNAL, "internal error")
        finally:
            await run.updater.close()
            self._runs.pop(job.id, None)
        ended = await self.repo.get(job.id)
        # A delivered job is marked when it is settled (its card went out with the clip); a refunded
        # one here, once its final card got through.
        shown = run.updater.last_sent is not None and run.updater.last_sent.final
        if ended is not None and ended.status in REFUNDED_STATUSES and shown:
            await self.repo.mark_final_shown(job.id)
        return ended

    async def _run(self, run: _Run) -> None:
        """Carry the job on from whatever state it is in (a fresh job is 'reserved'; after a restart it
        may be anywhere). Each step is safe to repeat: nothing is submitted twice, posted twice or
        charged twice."""
        job = run.job
        await run.updater.update(run.card)
        if job.status == "submitting":
            # The bot stopped while the submit was in flight: it may or may not exist at the provider,
            # and there is no way to look it up, so it is never sent again. Refund, and tell the admin.
            log.warning("job %d: the bot stopped while submitting to %s; outcome unknown", job.id, job.provider)
            await self._fail(run, FailureKind.UNAVAILABLE, "interrupted during submit")
            return
        if job.status in ("downloading", "posting") and job.output_url:
            if job.status == "posting" and await run.reporter.delivered_before(run.card):
                await self._settle(job, "file", "found already posted after a restart")
                return
            run.card = run.card.with_stage("downloading", started_at=_unix(job.submitted_at))
            await self._deliver(run, job.output_url)
            return
        if job.provider_task_id is None:
            if not await self._submit(run, self.spec_for(job)):
                return
            submitted = time.time()
        else:
            run.task_id = job.provider_task_id
            submitted = _unix(job.submitted_at) or time.time()
        status = await self._wait(run, submitted)
        if status is None:
            return
        assert status.output_url is not None
        await self.repo.update(
            run.job.id,
            provider_done_at=iso_now(),
            generation_seconds=round(time.time() - submitted, 3),
            output_url=status.output_url,
        )
        run.card = run.card.with_stage("downloading", started_at=int(submitted))
        await self._deliver(run, status.output_url)

    async def _submit(self, run: _Run, spec: GenerationSpec) -> bool:
        """Submit to the first provider that takes it. Another one is tried only after an outage-type
        error that certainly created nothing there, and only if its price fits the reservation."""
        try:
            candidates = self.router.candidates(spec, run.job.guild_id)
        except UserError as exc:  # the configuration changed since the job was created
            await self._fail(run, FailureKind.BAD_REQUEST, exc.message)
            return False
        reserved = (await self.repo.ledger_totals(run.job.id)).reserved
        affordable = [name for name in candidates if self.prices.price_micros(name, spec) <= reserved]
        for index, name in enumerate(affordable):
            if run.cancel_requested:
                await self._end_cancelled(run, "cancelled before submit")
                return False
            await self._use_provider(run, name, self.prices.price_micros(name, spec))
            run.submitting = True
            try:
                run.task_id = await self.router.providers[name].submit(spec)
            except ProviderError as exc:
                self.router.record_failure(name, exc.kind)
                if exc.maybe_created:
                    # The task may exist and may be billed; we cannot find it again, so we stop here
                    # and say so loudly for the admin. The user is refunded either way.
                    log.warning("job %d: submit outcome unknown on %s (%s); not retried", run.job.id, name, exc)
                elif exc.kind in OUTAGE_KINDS and index + 1 < len(affordable):
                    log.info(
                        "job %d: %s refused the submit (%s); trying %s", run.job.id, name, exc, affordable[index + 1]
                    )
                    continue
                await self._fail(run, exc.kind, str(exc))
                return False
            finally:
                run.submitting = False
            self.router.record_success(name)
            await self._status(run, "submitted", run.task_id, provider_task_id=run.task_id, submitted_at=iso_now())
            if run.cancel_requested:  # the user pressed Cancel while the submit was in flight
                await self._cancel_at_provider(run)
            return True
        await self._fail(run, FailureKind.UNAVAILABLE, "no provider could take the job")
        return False

    async def _use_provider(self, run: _Run, name: str, price: int) -> None:
        if (name, price) != (run.job.provider, run.job.cost_micros):
            await self.repo.update(run.job.id, provider=name, cost_micros=price)
            run.job = replace(run.job, provider=name, cost_micros=price)
            run.card = replace(run.card, provider=name, cost_micros=price)
        await self._status(run, "submitting")

    async def _wait(self, run: _Run, submitted: float) -> TaskStatus | None:
        job, task_id = run.job, run.task_id
        assert task_id is not None
        provider = self.router.providers[job.provider]
        typical, low, high = await self._history(job)
        schedule = self.poll_policy.schedule(typical, low, high, webhooks=job.provider in self.webhook_providers)
        deadline = submitted + self.deadline_seconds
        previous, errors = None, 0
        while True:
            last_look = time.time() >= deadline  # one more poll past the deadline before giving up
            await self._wait_for_poll_budget(job.provider)
            try:
                status = await provider.poll(task_id)
            except ProviderError as exc:
                if not exc.transient or last_look:
                    await self._fail(run, exc.kind if not exc.transient else FailureKind.TIMEOUT, str(exc))
                    return None
                errors += 1
                delay = self.poll_policy.error_delay(errors, exc.retry_after)
                log.debug("job %d: poll error %s, next in %.1fs", job.id, exc, delay)
                await self._sleep(run, min(delay, max(deadline - time.time(), 0)))
                continue
            errors = 0
            if status.state == "succeeded":
                return status
            if status.state == "cancelled":
                await self._end_cancelled(run, status.raw_status or "cancelled by the provider")
                return None
            if status.state == "failed":
                await self._fail(run, status.failure or FailureKind.GENERATION_FAILED, status.failure_detail)
                return None
            if last_look:
                await self._fail(run, FailureKind.TIMEOUT, "deadline passed")
                return None
            changed = (status.state, status.queue_position, status.progress) != previous
            if previous is None or status.state != previous[0]:
                await self._status(run, status.state, status.raw_status)
            previous = (status.state, status.queue_position, status.progress)
            await run.updater.update(self._progress_card(run.card, status, submitted, typical))
            delay = schedule.next_delay(time.time() - submitted, changed, status.retry_after)
            await self._sleep(run, min(delay, max(deadline - time.time(), 0.05)))

    async def _wait_for_poll_budget(self, provider: str) -> None:
        pacer = self._pacers.get(provider)
        if pacer is not None and (delay := pacer.reserve(time.monotonic())) > 0:
            await asyncio.sleep(delay)

    @staticmethod
    async def _sleep(run: _Run, seconds: float) -> None:
        """Sleep until the next poll, or until a webhook or a cancel wakes the job up.

        A timer that sets the event, not `wait_for`: that spawned a task and raised (and dropped) a
        TimeoutError at every poll, and those cycles of frames and tracebacks were most of what the
        garbage collector had to chase with 1,000 jobs in flight."""
        timer = asyncio.get_running_loop().call_later(seconds, run.wakeup.set)
        try:
            await run.wakeup.wait()
        finally:
            timer.cancel()
        run.wakeup.clear()

    def _progress_card(self, card: JobCard, status: TaskStatus, submitted: float, typical: float) -> JobCard:
        if status.state == "queued":
            return card.with_stage("queued", queue_position=status.queue_position)
        percent, left = estimate(time.time() - submitted, typical)
        if status.progress is not None:
            percent = int(min(status.progress, 0.99) * 10) * 10
        return card.with_stage("generating", started_at=int(submitted), percent=percent, eta_seconds=left)

    async def _history(self, job: JobRecord) -> tuple[float, float | None, float | None]:
        """(typical, low, high) generation seconds of past jobs of this provider/model/quality/duration:
        the median and about the 5th and 95th percentiles; the configured typical before any history."""
        quantiles = await self.repo.generation_quantiles(job.provider, job.model, job.quality, job.duration)
        if quantiles is None:
            return self.typical_seconds.get(job.provider, 60.0), None, None
        return quantiles

    async def _deliver(self, run: _Run, url: str) -> None:
        async with self._delivery_slots:
            await self._deliver_now(run, url)

    async def _deliver_now(self, run: _Run, url: str) -> None:
        job = run.job
        await self._status(run, "downloading")
        await run.updater.update(run.card)
        raw = self.tmp_dir / f"job-{job.id}-output.mp4"
        fitted = self.tmp_dir / f"job-{job.id}-fitted.mp4"
        try:
            try:
                size = await self.router.providers[job.provider].download(url, raw, self.max_output_bytes)
                await media.probe(raw)
            except (ProviderError, media.MediaError) as exc:
                await self._fail(run, FailureKind.OUTPUT_INVALID, str(exc))
                return
            await self._status(run, "posting", f"{size} bytes", output_bytes=size)
            await run.updater.update(run.card.with_stage("posting"))
            await run.updater.flush()
            done = run.card.with_stage("done", took_seconds=round(time.monotonic() - run.began))
            delivered_as = await post_clip(
                job.id, job.provider, raw, fitted, done, url, run.reporter, reencode_slots=self._reencode_slots
            )
        finally:
            for path in (raw, fitted):
                path.unlink(missing_ok=True)
        if delivered_as is None:
            await self._refund(job, "failed", FailureKind.INTERNAL, "delivery failed")
            return
        await self._settle(job, delivered_as)

    async def _settle(self, job: JobRecord, delivered_as: str, detail: str = "") -> None:
        await self.repo.finish(
            job.id, "delivered", "settle", detail or delivered_as, delivered_as=delivered_as, final_shown=1
        )
        log.info("job %d: delivered (%s), settled %d micros", job.id, delivered_as, job.cost_micros)

    # ----- cancel and webhooks -----------------------------------------------------------------

    async def request_cancel(self, job_id: int) -> CancelOutcome:
        """The user pressed Cancel. Returns what happened, to tell them."""
        run = self._runs.get(job_id)
        if run is None:
            job = await self.repo.get(job_id)
            return CancelOutcome.TOO_LATE if job is not None and job.terminal else CancelOutcome.UNKNOWN
        if run.card.stage in ("downloading", "posting", "done"):
            return CancelOutcome.TOO_LATE
        if run.task_id is None:
            # Not at the provider yet (or the submit is in flight: then it is cancelled there once it returns).
            run.cancel_requested = True
            run.wakeup.set()
            return CancelOutcome.REQUESTED if run.submitting else CancelOutcome.STOPPED
        return await self._cancel_at_provider(run)

    async def _cancel_at_provider(self, run: _Run) -> CancelOutcome:
        provider = self.router.providers[run.job.provider]
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

    def on_webhook(self, provider: str, task_id: str) -> bool:
        """A verified callback for this task arrived: poll it now. False if no running job has it."""
        for run in self._runs.values():
            if run.task_id == task_id and run.job.provider == provider:
                log.info("job %d: woken by a webhook from %s", run.job.id, provider)
                run.wakeup.set()
                return True
        return False

    # ----- endings -----------------------------------------------------------------------------

    async def _status(self, run: _Run, status: str, detail: str = "", **columns: object) -> None:
        """Persist a state change with its history row, and log it (one line per change, with the job id)."""
        await self.repo.set_status(run.job.id, status, detail, **columns)
        log.info("job %d: %s%s (%s)", run.job.id, status, f" {detail}" if detail else "", run.job.provider)

    async def _fail(self, run: _Run, kind: FailureKind, detail: str) -> None:
        run.ending = True
        if await self._refund(run.job, "failed", kind, detail):
            await run.updater.update(run.card.with_stage("failed", message=ending_message("failed", kind.value)))

    async def _end_cancelled(self, run: _Run, detail: str) -> None:
        run.ending = True
        if await self._refund(run.job, "cancelled", None, detail):
            await run.updater.update(run.card.with_stage("cancelled", message=ending_message("cancelled", None)))

    async def _refund(self, job: JobRecord, status: str, kind: FailureKind | None, detail: str) -> bool:
        label = kind.value if kind else status
        ended = await self.repo.finish(
            job.id, status, "refund", f"{label}: {detail}"[:500], error_kind=kind.value if kind else None,
            error_detail=detail[:500],
        )  # fmt: skip
        if ended:
            log.info("job %d: %s (%s), refunded", job.id, status, label)
        return ended


def ending_message(status: str, error_kind: str | None) -> str:
    """What a refunded job's card says: why it ended, and that nothing was charged."""
    if status == "cancelled":
        return "Cancelled. You were not charged."
    try:
        kind = FailureKind(error_kind or "")
    except ValueError:
        kind = FailureKind.INTERNAL
    return f"{SAFE_MESSAGES[kind]} You were not charged."


def iso_now() -> str:
    return iso(datetime.now(UTC))


def _unix(stamp: str | None) -> float | None:
    return datetime.fromisoformat(stamp).timestamp() if stamp else None
