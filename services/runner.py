"""The jobs running in this process: started, resumed after a restart, woken, stopped.

Each job runs as one held task (so a stop can reach it) with its `JobRun`, and ends settled or
refunded (`services.lifecycle`). A stop leaves every job where it stands: its state is in the store and
`resume` carries it on at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from core.jobs import JobRecord, JobStatus
from services.endings import ending_message, log
from services.inputs import InputImages
from services.lifecycle import execute
from services.progress import CardUpdater, JobCard, Stage, card_for, edit_interval
from services.reporter import JobReporter, SavedClipReporter
from services.run import Crew, JobRun

# A job that ended this recently without its final card reaching the user gets it at the next start.
ANNOUNCE_WITHIN = timedelta(days=1)
# For jobs found at start: a reporter for their chat, or None when they have none (the terminal).
ReporterFor = Callable[[JobRecord], JobReporter | None]


class JobRunner:
    def __init__(self, crew: Crew, inputs: InputImages) -> None:
        self.crew = crew
        self.inputs = inputs
        self._tasks: set[asyncio.Task[JobRecord | None]] = set()
        self._runs: dict[int, JobRun] = {}
        self.accepting = True  # False while stopping: new commands are turned away
        settings = crew.settings
        for folder in (settings.tmp_dir, settings.outputs_dir):
            folder.mkdir(parents=True, exist_ok=True)

    # ----- starting -------------------------------------------------------------------------------

    def start(self, job: JobRecord, reporter: JobReporter) -> asyncio.Task[JobRecord | None]:
        """Run the job in the background; the task is held until it ends. The job can be cancelled
        from the moment this returns."""
        return self._spawn(self._run(self._register(job, reporter)), f"job-{job.id}")

    async def run(self, job: JobRecord, reporter: JobReporter) -> JobRecord | None:
        """Carry a reserved job to its end here (the terminal runner). Never raises."""
        return await self._run(self._register(job, reporter))

    async def resume(self, reporter_for: ReporterFor, notice: str) -> int:
        """Start every unfinished job found in the store again; returns how many."""
        jobs = await self.crew.store.unfinished()
        for job in jobs:
            log.info("job %d: resuming from %s", job.id, job.status.value)
            run = self._register(job, self._reporter(reporter_for, job))
            run.card = replace(run.card, notice=notice)
            self._spawn(self._run(run), f"job-{job.id}")
        since = datetime.now(UTC) - ANNOUNCE_WITHIN
        for ended in await self.crew.store.unannounced(since):
            self._spawn(self._announce(ended, self._reporter(reporter_for, ended)), f"job-{ended.id}-end")
        return len(jobs)

    def _reporter(self, reporter_for: ReporterFor, job: JobRecord) -> JobReporter:
        return reporter_for(job) or SavedClipReporter(self.crew.settings.outputs_dir)

    def _spawn(self, work: Coroutine[Any, Any, JobRecord | None], name: str) -> asyncio.Task[JobRecord | None]:
        """Run `work` in the background, held in `_tasks` (so a stop can reach it) until it ends."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _register(self, job: JobRecord, reporter: JobReporter) -> JobRun:
        run = JobRun(job, reporter, self.card_for(job), CardUpdater(reporter.show, self._edit_interval))
        self._runs[job.id] = run
        return run

    def card_for(self, job: JobRecord) -> JobCard:
        """The job's card as it was reserved; the footer tells a free preview from a real generation."""
        return card_for(job, free=self.crew.router.is_free(job.provider))

    def _edit_interval(self) -> float:
        settings = self.crew.settings
        return edit_interval(settings.edit_interval, len(self._runs), settings.edits_per_second)

    async def _run(self, run: JobRun) -> JobRecord | None:
        job_id = run.job.id
        try:
            await execute(self.crew, run, self.inputs)
        finally:
            await run.updater.close()
            self._runs.pop(job_id, None)
        ended = await self.crew.store.get(job_id)
        # A delivered job is marked when it is settled (its card went out with the clip); a refunded
        # one here, once its final card got through.
        shown = run.updater.last_sent is not None and run.updater.last_sent.final
        if ended is not None and ended.status.refunded and shown:
            await self.crew.store.mark_final_shown(job_id)
        return ended

    async def announce(self, job: JobRecord, reporter: JobReporter) -> JobRecord:
        """Show the final card of a job that ended refunded without running here."""
        return await self._announce(job, reporter)

    async def _announce(self, job: JobRecord, reporter: JobReporter) -> JobRecord:
        """Show how a refunded job ended when the bot stopped before its last edit landed (the money
        was already refunded; only the card is behind)."""
        stage: Stage = "cancelled" if job.status == JobStatus.CANCELLED else "failed"
        card = self.card_for(job).with_stage(stage, message=ending_message(job.status, job.error_kind))
        try:
            await reporter.show(card)
        except Exception:
            log.warning("job %d: its %s card still could not be shown", job.id, job.status.value, exc_info=True)
            return job
        log.info("job %d: showed its %s card after the restart", job.id, job.status.value)
        await self.crew.store.mark_final_shown(job.id)
        return job

    # ----- while running --------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def running(self, job_id: int) -> JobRun | None:
        return self._runs.get(job_id)

    def wake(self, provider: str, task_id: str) -> bool:
        """A verified callback for this task arrived: poll it now. False if no running job has it."""
        for run in self._runs.values():
            if run.task_id == task_id and run.job.provider == provider:
                log.info("job %d: woken by a webhook from %s", run.job.id, provider)
                run.woken_by_callback_at = time.monotonic()
                run.wakeup.set()
                return True
        return False

    def sweep_tmp(self, older_than: float) -> int:
        """Remove temporary files left behind (by a crash) that are older than `older_than` seconds, this
        process's and those of processes sharing the data directory (a file of a running job is minutes old),
        and the emptied folders of other processes."""
        cutoff = time.time() - older_than
        removed = 0
        settings = self.crew.settings
        paths = sorted(settings.tmp_root.rglob("*"), reverse=True)  # a folder's files before the folder
        # A folder's age as it was before its files went (taking a file out makes a folder new again).
        idle = set()
        for path in paths:
            with contextlib.suppress(OSError):  # another process's sweep may take it first
                if path.is_dir() and path.stat().st_mtime <= cutoff:
                    idle.add(path)
        for path in paths:
            with contextlib.suppress(OSError):
                if path.is_dir():
                    if path in idle and path != settings.tmp_dir:
                        path.rmdir()  # only when empty
                elif path.stat().st_mtime <= cutoff:
                    path.unlink()
                    removed += 1
        if removed:
            log.info("removed %d leftover temporary file(s)", removed)
        return removed

    async def sweep_outputs(self, now: datetime | None = None) -> int:
        """Delete kept clips past their time or over the cap (services.outputs); returns how many."""
        outputs = self.crew.outputs
        return 0 if outputs is None else await outputs.sweep(now)

    # ----- stopping -------------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Stop every job where it stands; its state is in the store and `resume` carries it on."""
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
