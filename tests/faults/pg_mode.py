"""Worker mode: the run on the test session's PostgreSQL, with one gateway `bot.py` and `bot.py worker`
processes (`[workers] separate = true`, fast heartbeats), as tests/e2e/test_workers.py starts them.

The gateway answers commands, reserves and hands each job to the job engine; the workers carry the jobs.
Stops in this mode: the gateway SIGKILLed or SIGTERMed and started again (the jobs it handed over go on at
the workers meanwhile); a worker SIGKILLed with jobs in flight (another worker, or the same one started
again, takes them over once its heartbeat is missed) or SIGTERMed (it must end the jobs it holds before it
exits, and no other worker may take them meanwhile: they would run twice at once). A worker's stop is
played in the background, one at a time, so the plan goes on with the other worker carrying the jobs.

Which process holds which job is read from the engine's own tables: each worker process registers a row
in `procrastinate_workers` when it starts taking tasks (started one at a time, so the new row is its
own), and a job's task (`job-<id>` lock) in `doing` names the worker row that runs it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

from tests.faults.plan import JobRequest, Stop
from tests.faults.processes import (
    START_LIMIT_S,
    BotProcess,
    Stage,
    check_alive,
    final_stop,
    start_gateway,
    terminate_in_time,
)

# As in tests/e2e/test_workers.py: a killed worker's jobs move to another after 2 s without its heartbeat.
WORKERS_CONFIG = "[workers]\nseparate = true\nheartbeat_seconds = 0.5\nstalled_after_seconds = 2\n"
DRAIN_EXTRA_S = 60.0  # a worker told to stop may take a job's deadline and then its delivery to exit
HOLD_WAIT_S = 10.0  # how long a worker stop waits for a worker to hold the trigger sent again

HELD = """
    SELECT p.worker_id, j.id AS job_id, j.status
    FROM procrastinate_jobs p JOIN jobs j ON p.lock = 'job-' || j.id
    WHERE p.status = 'doing'"""
OWN_TASKS = "SELECT id FROM procrastinate_jobs WHERE worker_id = ? AND status = 'doing'"
TASKS_OF = "SELECT id, lock, status, worker_id FROM procrastinate_jobs WHERE lock = ANY(?)"
NEWEST_WORKER = "SELECT COALESCE(MAX(id), 0) AS newest FROM procrastinate_workers"


class GatewayAndWorkers:
    """One gateway and `count` workers on one database and one config.toml, so one data directory (each
    process keeps its temporary files in a folder of its own there)."""

    def __init__(self, stage: Stage, env: dict[str, str], logs: Path, *, count: int, deadline_s: float) -> None:
        self.stage = stage
        self.gateway = BotProcess(env, logs, "gateway")
        self.workers = [BotProcess(env, logs, f"worker{n}", ("worker",)) for n in range(1, count + 1)]
        self.processes = [self.gateway, *self.workers]
        self.engine_ids: dict[str, int] = {}  # worker process name -> its procrastinate_workers row
        self.drain_limit_s = deadline_s + DRAIN_EXTRA_S
        self._down: set[str] = set()  # stopped on purpose, not yet started again
        self._one_worker_stop = asyncio.Lock()  # one worker down at a time: the other carries the jobs

    async def start(self) -> None:
        await start_gateway(self.stage.discord, self.gateway)  # first: it creates the engine's tables
        for worker in self.workers:
            await self._start_worker(worker)

    def check_alive(self) -> None:
        check_alive(self.processes, self._down)

    async def stop(self, step: Stop) -> None:
        if step.target == "gateway":
            await self._stop_gateway(step)
        else:
            self.stage.spawn(self._stop_worker(step))

    async def final_stop(self) -> None:
        await final_stop(self.stage.figures, self.processes, limit_s=self.drain_limit_s)

    # ----- the gateway -----------------------------------------------------------------------------------

    async def _stop_gateway(self, step: Stop) -> None:
        """Down for the step's downtime; the jobs it handed over go on at the workers meanwhile (counted:
        those that moved to another state or ended while it was down)."""
        figures, db = self.stage.figures, self.stage.db
        await self.stage.catch(step)
        in_flight = db.statuses()
        self._down.add(self.gateway.name)
        if step.signal == "KILL":
            await self.gateway.kill()
            figures.kills += 1
        else:
            await terminate_in_time(self.stage, self.gateway, step.late)
        await asyncio.sleep(step.downtime)
        now = db.statuses()
        moved, total = figures.gateway_down_moves
        moved += sum(1 for job_id, status in in_flight.items() if now.get(job_id) != status)
        figures.gateway_down_moves = (moved, total + len(in_flight))
        await start_gateway(self.stage.discord, self.gateway)
        self._down.discard(self.gateway.name)
        self.stage.note("gateway connected again")

    # ----- the workers -----------------------------------------------------------------------------------

    async def _start_worker(self, worker: BotProcess) -> None:
        """Start it and wait until it takes tasks: its row in the engine's worker table appears."""
        before = self._newest_engine_worker()
        await worker.start()
        loop = asyncio.get_running_loop()
        give_up = loop.time() + START_LIMIT_S
        while (newest := self._newest_engine_worker()) <= before:
            if not worker.running:
                raise RuntimeError(f"{worker.name} exited while starting:\n{worker.log_tail()}")
            if loop.time() > give_up:
                raise TimeoutError(f"{worker.name} took no tasks within {START_LIMIT_S:.0f} s:\n{worker.log_tail()}")
            await asyncio.sleep(0.05)
        self.engine_ids[worker.name] = newest
        self._down.discard(worker.name)

    def _newest_engine_worker(self) -> int:
        return int(self.stage.db.rows(NEWEST_WORKER)[0]["newest"])

    async def _stop_worker(self, step: Stop) -> None:
        async with self._one_worker_stop:  # caught only now: a stop that waited its turn meets fresh jobs
            await self.stage.catch(step)
            worker, held = await self._choose(step)
            self._down.add(worker.name)
            self.stage.note(f"SIG{step.signal} {worker.name}, holding jobs {sorted(held)}")
            if step.signal == "KILL":
                await worker.kill()
                self.stage.figures.worker_kills.append(len(held))
            else:
                await self._drain(worker, held, step.late)
            await asyncio.sleep(step.downtime)
            await self._start_worker(worker)
            self.stage.note(f"{worker.name} started again")

    def _held(self) -> dict[str, dict[int, str]]:
        """The jobs each worker process holds (their engine tasks in `doing`), with their states."""
        names = {engine_id: name for name, engine_id in self.engine_ids.items()}
        held: dict[str, dict[int, str]] = {worker.name: {} for worker in self.workers}
        for row in self.stage.db.rows(HELD):
            if (name := names.get(row["worker_id"])) is not None:
                held[name][int(row["job_id"])] = str(row["status"])
        return held

    async def _choose(self, step: Stop) -> tuple[BotProcess, dict[int, str]]:
        """The worker holding a job in the step's state, else the one holding the most jobs. When none holds
        any (the trigger went through its state, and every other job, before it could be caught), the
        trigger is sent again, plain, to be held."""
        held = self._held()
        if not any(held.values()):
            await self.stage.send(replace(step.trigger, upload_limit=None))
            held = await self._wait_until_held()
        running = [worker for worker in self.workers if worker.running] or self.workers
        chosen = max(running, key=lambda w: (step.at_state in held[w.name].values(), len(held[w.name])))
        return chosen, held[chosen.name]

    async def _wait_until_held(self) -> dict[str, dict[int, str]]:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + HOLD_WAIT_S
        while True:
            held = self._held()
            if any(held.values()) or loop.time() > give_up:
                return held
            await asyncio.sleep(0.05)

    async def _drain(self, worker: BotProcess, held: dict[int, str], late: JobRequest | None) -> None:
        """SIGTERM: the worker ends the jobs it holds, then exits (0); meanwhile no other worker may take
        them (they would run twice at once). A command sent right after goes to the other worker."""
        figures, engine_id = self.stage.figures, self.engine_ids[worker.name]
        own = {int(row["id"]) for row in self.stage.db.rows(OWN_TASKS, (engine_id,))}
        signalled = time.monotonic()
        worker.terminate()
        if late is not None:
            await self.stage.send(late)
        locks = [f"job-{job_id}" for job_id in held]
        taken: set[int] = set()
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.drain_limit_s
        while worker.running and loop.time() < give_up:
            taken |= self._taken_from(engine_id, own, locks)
            await asyncio.sleep(0.05)
        code = await worker.wait_exit(timeout=max(0.1, give_up - loop.time()))
        took = time.monotonic() - signalled
        figures.worker_terms.append(took)
        figures.worker_terms_held.append(len(held))
        if code != 0:
            figures.term_failures.append(f"SIGTERM {worker.name}: exit code {code} after {took:.1f} s")
        ended = len(set(held) - set(self.stage.db.statuses()))
        figures.drained = (figures.drained[0] + ended, figures.drained[1] + len(held))
        figures.taken_over += [f"#{job_id} (from {worker.name})" for job_id in sorted(taken)]

    def _taken_from(self, engine_id: int, own: set[int], locks: list[str]) -> set[int]:
        """Jobs among `locks` whose task (one of `own`, the worker's) went back to the queue, or that another
        worker runs. A second copy of a task waiting on the job's lock is no take-over: it runs after the
        first and finds the job ended (a worker's round may hand over a job its gateway is handing over)."""
        if not locks:
            return set()
        rows = self.stage.db.rows(TASKS_OF, (locks,))
        return {
            int(str(row["lock"]).removeprefix("job-"))
            for row in rows
            if (row["id"] in own and row["status"] == "todo")
            or (row["status"] == "doing" and row["worker_id"] != engine_id)
        }
