"""Generation jobs handed between processes through procrastinate, an established PostgreSQL job engine.

Each generation job is one engine task, `hailuo.run_job(job_id)`. A gateway process reserves the job in
its own transaction and hands it over here; a worker process takes the task and carries the job on from
its stored state (the same resumable lifecycle a restart uses, so a job caught "submitting" is never
sent twice). Why procrastinate: asyncio workers, LISTEN/NOTIFY to start a task at once, worker
heartbeats, and it runs on psycopg 3 like our PostgreSQL store.

Two locks keep one job to one runner: the queueing lock lets one copy of a job's task wait at a time
(a second hand-over is a no-op), and the job lock makes procrastinate run two copies of it one after
the other, never together (the second finds the job ended and returns).

A worker that dies (SIGKILL, a lost machine) stops sending heartbeats; every worker looks for tasks
left "doing" by a worker silent for `stalled_after` seconds and puts them back in the queue, where the
next free worker takes them and resumes the job from its state. A worker told to stop takes no new task
and finishes the ones it holds, its heartbeat going on meanwhile, so no other worker takes them from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import procrastinate
import procrastinate.worker
import psycopg
from procrastinate import exceptions as engine_errors

log = logging.getLogger(__name__)

TASK = "hailuo.run_job"
QUEUE = "jobs"
# Taken with pg_advisory_xact_lock while the engine's schema is put in place, so workers and gateways starting
# together create it once. Any constant unlikely to clash with the store's own locks.
SCHEMA_LOCK = 0x6861_696C_756F  # "hailuo"

Carry = Callable[[int], Awaitable[None]]
CancelHere = Callable[[int], Awaitable[str | None]]
WakeHere = Callable[[str, str], bool]

# Cancel across processes: a gateway NOTIFYs the job and a nonce on CANCEL; the worker running the job
# cancels it and NOTIFYs the nonce and the outcome on CANCEL_DONE. A worker that does not run it stays quiet.
CANCEL = "hailuo_cancel"
CANCEL_DONE = "hailuo_cancel_done"
CANCEL_WAIT_SECONDS = 5.0
# A provider's callback reaches whichever process has the webhook receiver (a gateway); it NOTIFYs the
# provider and task id on WAKE, and the worker running that task polls it at once.
WAKE = "hailuo_wake"


@dataclass(frozen=True)
class Strays:
    handed_over: list[int]
    withdrawn: list[int]


class JobQueue:
    """The engine as the bot's processes use it: hand a job over; run a worker that carries jobs."""

    def __init__(self, url: str, *, heartbeat_seconds: float = 2.0, stalled_after: float = 10.0) -> None:
        self.url = url
        self.heartbeat_seconds = heartbeat_seconds
        self.stalled_after = stalled_after
        self.app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
        self._carry: Carry | None = None

        async def run_job(job_id: int) -> None:
            if self._carry is None:  # a gateway process never runs tasks
                raise RuntimeError("this process runs no jobs")
            await self._carry(job_id)

        self._task = self.app.task(name=TASK, queue=QUEUE)(run_job)

    async def open(self) -> JobQueue:
        await self.app.open_async()
        await self._prepare_schema()
        return self

    async def close(self) -> None:
        await self.app.close_async()

    async def __aenter__(self) -> JobQueue:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _prepare_schema(self) -> None:
        """Create the engine's tables once: one connection, one transaction, holding a transaction-level
        advisory lock (a session lock taken and released through a pool could land on two connections)."""
        async with await psycopg.AsyncConnection.connect(self.url) as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            cursor = await conn.execute("SELECT to_regclass('procrastinate_jobs')")
            row = await cursor.fetchone()
            if row is None or row[0] is None:
                await conn.execute(self.app.schema_manager.get_schema())
                log.info("job engine: schema created")

    async def hand_over(self, job_id: int) -> None:
        """Queue the job for a worker. Handing one job over twice queues it once."""
        lock = f"job-{job_id}"
        try:
            await self._task.configure(queueing_lock=lock, lock=lock).defer_async(job_id=job_id)
        except engine_errors.AlreadyEnqueued:
            log.debug("job %d: already waiting for a worker", job_id)

    async def strays(self, unfinished: Callable[[], Awaitable[list[int]]]) -> Strays:
        """Sort the unfinished jobs (`unfinished()` lists them): those with no task waiting or running are
        handed over (reserved while no hand-over could be made: the database away for a moment), and those
        whose task was withdrawn by a Cancel are returned to be ended (the gateway that withdrew it stopped
        before it could). The tasks are read first: a job that ends between the two reads is then no longer
        unfinished, rather than one that seems to have no task (and would be handed over for nothing)."""
        rows = await self.app.connector.execute_query_all_async(
            "SELECT lock, status FROM procrastinate_jobs"
            " WHERE queue_name = %(queue)s AND status IN ('todo', 'doing', 'cancelled')",
            queue=QUEUE,
        )
        job_ids = await unfinished()
        statuses: dict[str, set[str]] = {}
        for row in rows:
            statuses.setdefault(row["lock"], set()).add(row["status"])
        idle: list[int] = []
        withdrawn: list[int] = []
        for job_id in job_ids:
            seen = statuses.get(f"job-{job_id}", set())
            if seen & {"todo", "doing"}:
                continue  # waiting for a worker, or running on one
            (withdrawn if "cancelled" in seen else idle).append(job_id)
        for job_id in idle:
            await self.hand_over(job_id)
        return Strays(idle, withdrawn)

    async def live_workers(self) -> int:
        """Workers whose heartbeat is younger than `stalled_after` (a worker registers as it starts, and a
        graceful stop removes it): the processes running jobs now, for sharing the poll budgets."""
        rows = await self.app.connector.execute_query_all_async(
            "SELECT count(*) AS live FROM procrastinate_workers"
            " WHERE last_heartbeat > now() - make_interval(secs => %(seconds)s)",
            seconds=self.stalled_after,
        )
        return int(rows[0]["live"])

    async def cancel(self, job_id: int) -> str | None:
        """Ask the worker running the job to cancel it: its answer (a CancelOutcome value), or None when no
        worker answered within CANCEL_WAIT_SECONDS (no worker runs it)."""
        nonce = secrets.token_hex(8)
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            await conn.execute(f"LISTEN {CANCEL_DONE}")  # before asking, so the answer cannot be missed
            await conn.execute("SELECT pg_notify(%s, %s)", (CANCEL, f"{job_id}:{nonce}"))
            async for note in conn.notifies(timeout=CANCEL_WAIT_SECONDS):
                answered, _, outcome = note.payload.partition(":")
                if answered == nonce:
                    return outcome
        return None

    async def withdraw(self, job_id: int) -> bool:
        """Take the job's task out of the queue if no worker has started it; True when it was withdrawn
        (the engine marks it cancelled in one statement, so a worker cannot take it at the same moment)."""
        rows = await self.app.connector.execute_query_all_async(
            "SELECT id FROM procrastinate_jobs WHERE lock = %(lock)s AND status = 'todo'"
            " AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE lock = %(lock)s AND status = 'doing')",
            lock=f"job-{job_id}",
        )
        for row in rows:
            if await self.app.job_manager.cancel_job_by_id_async(row["id"]):
                return True
        return False

    async def wake(self, provider: str, task_id: str) -> None:
        """A verified callback arrived for this provider task: tell the worker that runs it."""
        await self.app.connector.execute_query_async(
            "SELECT pg_notify(%(channel)s, %(payload)s)", channel=WAKE, payload=f"{provider}:{task_id}"
        )

    async def serve(self, cancel_here: CancelHere, wake_here: WakeHere) -> None:
        """Until cancelled: cancel the jobs gateways ask about and wake the ones a callback reached, when
        they run in this process (and answer the cancels)."""
        while True:
            try:
                await self._serve(cancel_here, wake_here)
            except psycopg.OperationalError as exc:  # the database away for a moment: listen again
                log.warning("job engine: lost the cancel and callback channel (%s); listening again", exc)
                await asyncio.sleep(self.heartbeat_seconds)

    async def _serve(self, cancel_here: CancelHere, wake_here: WakeHere) -> None:
        async with (
            await psycopg.AsyncConnection.connect(self.url, autocommit=True) as listening,
            await psycopg.AsyncConnection.connect(self.url, autocommit=True) as answering,
        ):
            await listening.execute(f"LISTEN {CANCEL}")
            await listening.execute(f"LISTEN {WAKE}")
            async for note in listening.notifies():
                if note.channel == WAKE:
                    provider, _, task_id = note.payload.partition(":")
                    wake_here(provider, task_id)
                    continue
                job, _, nonce = note.payload.partition(":")
                try:
                    outcome = await cancel_here(int(job))
                except Exception:
                    log.exception("job %s: cancelling it for a gateway failed", job)
                    continue
                if outcome is not None:
                    await answering.execute("SELECT pg_notify(%s, %s)", (CANCEL_DONE, f"{nonce}:{outcome}"))

    async def requeue_stalled(self) -> list[int]:
        """Put back in the queue the tasks of workers that stopped sending heartbeats; their job ids."""
        manager = self.app.job_manager
        requeued = []
        for task in await manager.get_stalled_jobs(seconds_since_heartbeat=self.stalled_after):
            try:
                await manager.retry_job(task)
            except Exception as exc:  # another worker requeued it first
                log.debug("task %s: not requeued (%s)", task.id, exc)
                continue
            job_id = task.task_kwargs["job_id"]
            assert isinstance(job_id, int)  # hand_over defers it so
            requeued.append(job_id)
            log.warning("job %d: its worker stopped answering; handed to another worker", job_id)
        return requeued

    async def run_worker(self, carry: Carry, *, concurrency: int, name: str = "worker") -> None:
        """Carry jobs until cancelled: `carry(job_id)` runs one job from its stored state. Cancelled, it takes
        no new job and returns once the jobs it holds are finished."""
        self._carry = carry
        worker = procrastinate.worker.Worker(
            app=self.app,
            queues=[QUEUE],
            name=name,
            concurrency=concurrency,
            update_heartbeat_interval=self.heartbeat_seconds,
            stalled_worker_timeout=self.stalled_after,
            install_signal_handlers=False,
            delete_jobs="successful",
            wait=True,
        )
        watcher = asyncio.create_task(self._watch_stalled(), name="requeue-stalled")
        running = asyncio.create_task(worker.run(), name="engine-worker")
        try:
            await asyncio.shield(running)
        except asyncio.CancelledError:
            # The engine's worker stops its heartbeat before it waits for the jobs it holds: beat on for it
            # until they are finished, or every worker (this one too) would take them, after stalled_after,
            # for the jobs of a dead worker and run them a second time, at the same time.
            beating = asyncio.create_task(self._beat_for(worker), name="heartbeat-while-stopping")
            running.cancel()
            try:
                with contextlib.suppress(asyncio.CancelledError):
                    await running
            finally:
                beating.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beating
            raise
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            self._carry = None

    async def _beat_for(self, worker: procrastinate.worker.Worker) -> None:
        while (worker_id := worker.worker_id) is not None:  # None once it has finished and unregistered
            try:
                await self.app.job_manager.update_heartbeat(worker_id)
            except Exception as exc:  # the database away for a moment: the next beat may reach it
                log.warning("job engine: could not send the heartbeat of a stopping worker: %s", exc)
            await asyncio.sleep(self.heartbeat_seconds)

    async def _watch_stalled(self) -> None:
        while True:
            try:
                await self.requeue_stalled()
            except Exception as exc:  # the database is away for a moment: try again at the next beat
                log.warning("job engine: could not look for stalled tasks: %s", exc)
            await asyncio.sleep(self.heartbeat_seconds)
