"""One level of the workers benchmark: a scratch PostgreSQL database, the stand-ins in this process, ONE
gateway process (`bot.py`, `[workers] separate = true`) and N worker processes (`bot.py worker`), each its
own child so /proc gives its CPU and peak RSS.

The commands go through the Discord stand-in as real interactions, in the bursts of bench/workload.py.
WaveSpeed's stand-in holds every task queued ("created") until all N are submitted, then releases them:
each ends its drawn provider time (30–90 s ÷ compression) after the release, so all N jobs are at the
provider at once whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from bench.botproc import BotProcess, ProcSample, machine_busy_s, read_proc, tree_cpu_s, write_config
from bench.level import send_jobs
from bench.stand_ins import BenchDiscord, HeldWaveSpeed
from bench.workload import Job

API_KEY = "ws-bench-key"
READY_TIMEOUT_S = 120.0
STALL_S = 120.0  # no job ended for this long once all should have: stop, report the level incomplete
SUBMIT_STALL_S = 60.0  # all commands sent and no new submit for this long: release what is there
TERMINAL = ("delivered", "failed", "cancelled")
WORKERS_TABLE = "[workers]\nseparate = true\nconcurrency = {concurrency}\n"


@dataclass(frozen=True)
class WorkersConfig:
    workers: int
    compression: float
    callbacks: bool
    bot_dir: Path
    database_url: str  # a scratch database of this level's own
    postmaster_pid: int  # the PostgreSQL server, for its CPU
    clip: bytes  # every job's output (tiny: moving clips is not what this level measures)
    log_dir: Path  # each process's log is kept here (the level's folder goes away)
    heartbeat_ms: int = 1000
    concurrency: int | None = None  # workers.concurrency; None: the level's job count (one worker could take all)
    label: str = ""
    bot_settings: tuple[str, ...] = ()  # "key = value" lines for [bot], to try a setting


@dataclass(frozen=True)
class Snapshot:
    """/proc at one moment: each bot process, the PostgreSQL server (postmaster and backends), this process."""

    at: float  # time.monotonic()
    procs: dict[str, ProcSample | None]
    pg_cpu_s: float | None
    own: ProcSample | None
    machine_s: float  # CPU seconds of every process on the machine (other work on it too)


@dataclass
class Timeline:
    """time.time() of the moments the figures are measured between."""

    first_command: float = 0.0
    last_command: float = 0.0
    released: float | None = None
    finished: float = 0.0


@dataclass
class LevelRun:
    jobs: list[Job]
    cfg: WorkersConfig
    discord: BenchDiscord
    wavespeed: HeldWaveSpeed
    gateway: BotProcess
    workers: list[BotProcess]
    sent: dict[int, Any] = field(default_factory=dict)  # job index -> FakeInteraction
    start: Snapshot | None = None  # when the first command is sent
    drain: Snapshot | None = None  # when the first task ends: from here on clips are being delivered
    end: Snapshot | None = None  # when the last job has ended
    at: Timeline = field(default_factory=Timeline)
    rows: list[dict[str, Any]] = field(default_factory=list)
    ledger: dict[str, int] = field(default_factory=dict)
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    incomplete: bool = False
    wall_s: float = 0.0

    @property
    def processes(self) -> dict[str, BotProcess]:
        return {"gateway": self.gateway, **{f"worker {i + 1}": w for i, w in enumerate(self.workers)}}


async def run_workers_level(jobs: list[Job], cfg: WorkersConfig) -> LevelRun:
    discord = BenchDiscord(upload_limit=25 * 1024 * 1024, heartbeat_ms=cfg.heartbeat_ms)
    # No account tier: Gold allows 3,000 tasks at once and 3,000 a minute, and this level wants N at once.
    wavespeed = HeldWaveSpeed(API_KEY, videos_per_minute=None, max_concurrent=None)
    for fake in (discord, wavespeed):
        await fake.start()
    try:
        for job in jobs:
            wavespeed.plan(job.index, duration_s=job.provider_seconds, output_bytes=cfg.clip)
        with tempfile.TemporaryDirectory(prefix="hailuo-bench-workers-") as tmp:
            run = _prepare(Path(tmp), jobs, cfg, discord, wavespeed)
            began = time.monotonic()
            try:
                await _drive(run)
            finally:
                await _stop_all(run)
                run.wall_s = time.monotonic() - began
                _keep_logs(run)
            await _read_database(run)
            return run
    finally:
        for fake in (discord, wavespeed):
            await fake.stop()


def _prepare(
    folder: Path, jobs: list[Job], cfg: WorkersConfig, discord: BenchDiscord, wavespeed: HeldWaveSpeed
) -> LevelRun:
    """One config.toml for every process (one deployment on one machine: one data_dir, so a worker reads
    the /animate images the gateway kept; the gateway's receiver is everyone's callback URL)."""
    typical = sorted(job.provider_seconds for job in jobs)[len(jobs) // 2]
    config = write_config(
        folder,
        cfg.bot_dir,
        wavespeed_url=wavespeed.base_url,
        typical_seconds=typical,
        webhooks=cfg.callbacks,
        extra=WORKERS_TABLE.format(concurrency=cfg.concurrency or max(len(jobs), 1)),
        bot_settings=cfg.bot_settings,
    )
    env = {
        "DISCORD_TOKEN": discord.bot_token,
        "WAVESPEED_API_KEY": API_KEY,
        "DISCORD_API_BASE": discord.base_url,
        "DISCORD_GATEWAY_URL": discord.gateway_url,
        "DATABASE_URL": cfg.database_url,
    }
    gateway = BotProcess(cfg.bot_dir, folder, config, env, log_name="gateway.log")
    workers = [
        BotProcess(cfg.bot_dir, folder, config, env, args=("worker",), log_name=f"worker-{i + 1}.log")
        for i in range(cfg.workers)
    ]
    return LevelRun(jobs, cfg, discord, wavespeed, gateway, workers)


# ----- running ---------------------------------------------------------------------------------------


async def _drive(run: LevelRun) -> None:
    await run.gateway.start()
    for worker in run.workers:
        await worker.start()
    await _wait_ready(run)
    await asyncio.sleep(1.0)  # start-up work (command sync, first heartbeats, first rounds) settles
    run.start = _snapshot(run)
    run.at.first_command = time.time()
    releaser = asyncio.create_task(_release_when_all_submitted(run))
    drain = asyncio.create_task(_snapshot_at_first_end(run, releaser))
    try:
        await _send_all(run)
        await releaser
        await _wait_done(run)
    finally:
        for task in (releaser, drain):
            task.cancel()
        await asyncio.gather(releaser, drain, return_exceptions=True)
    run.at.finished = time.time()
    run.end = _snapshot(run)  # before any process stops: VmHWM is each one's peak RSS over its life


def _check_alive(run: LevelRun) -> None:
    for name, proc in run.processes.items():
        if proc.proc is not None and proc.proc.returncode is not None:
            raise RuntimeError(f"{name} exited with {proc.proc.returncode}:\n{proc.log_tail()}")


async def _wait_ready(run: LevelRun) -> None:
    """The gateway: commands synced, gateway connected, and (callbacks) the signing secret fetched; every
    worker registered with the job engine (it does so once logged in to Discord's REST API)."""
    end = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < end:
        _check_alive(run)
        names = {c["name"] for c in run.discord.commands}
        active = run.discord._active
        gateway_ready = {"video", "animate"} <= names and active is not None and not active.ws.closed
        secret = not run.cfg.callbacks or any(r.path == "/api/v3/webhook/secret" for r in run.wavespeed.requests)
        if gateway_ready and secret and await _registered_workers(run.cfg.database_url) >= len(run.workers):
            return
        await asyncio.sleep(0.1)
    logs = "\n".join(f"--- {name}\n{proc.log_tail()}" for name, proc in run.processes.items())
    raise TimeoutError(f"not ready within {READY_TIMEOUT_S:g} s:\n{logs}")


async def _registered_workers(url: str) -> int:
    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            cursor = await conn.execute("SELECT count(*) FROM procrastinate_workers")
            row = await cursor.fetchone()
    except psycopg.Error:  # the engine's tables are not there yet
        return 0
    return int(row[0]) if row else 0


async def _send_all(run: LevelRun) -> None:
    await send_jobs(run.discord, run.jobs, run.sent, asyncio.get_running_loop().time())
    run.at.last_command = time.time()


async def _release_when_all_submitted(run: LevelRun) -> None:
    """Release the provider's queue once every job is submitted; or, when submits stop coming for
    SUBMIT_STALL_S after the last command, with what is there (the level then says fewer were in flight)."""
    seen, since = -1, time.monotonic()
    while True:
        _check_alive(run)
        submitted = len(run.wavespeed.tasks)
        if submitted >= len(run.jobs):
            break
        if submitted != seen or not run.at.last_command:
            seen, since = submitted, time.monotonic()
        elif time.monotonic() - since > SUBMIT_STALL_S:
            break
        await asyncio.sleep(0.05)
    run.wavespeed.release()
    run.at.released = run.wavespeed.released_at


async def _wait_done(run: LevelRun) -> None:
    """Until every job has ended (or STALL_S passed without one ending after the last should have)."""
    due = (run.at.released or time.time()) + max((job.provider_seconds for job in run.jobs), default=0.0)
    last_count, last_change = -1, time.time()
    async with await psycopg.AsyncConnection.connect(run.cfg.database_url, autocommit=True) as conn:
        while True:
            _check_alive(run)
            cursor = await conn.execute("SELECT count(*) FROM jobs WHERE status = ANY(%s)", (list(TERMINAL),))
            row = await cursor.fetchone()
            ended = int(row[0]) if row else 0
            if ended >= len(run.jobs):
                return
            if ended != last_count:
                last_count, last_change = ended, time.time()
            elif time.time() - max(last_change, due) > STALL_S:
                run.incomplete = True
                return
            await asyncio.sleep(0.25)


async def _snapshot_at_first_end(run: LevelRun, released: asyncio.Task[None]) -> None:
    await released
    first_end = (run.at.released or time.time()) + min((job.provider_seconds for job in run.jobs), default=0.0)
    await asyncio.sleep(max(0.0, first_end - time.time()))
    run.drain = _snapshot(run)


def _snapshot(run: LevelRun) -> Snapshot:
    now = time.monotonic()
    procs = {name: proc.sample(now) for name, proc in run.processes.items()}
    pg, own = tree_cpu_s(run.cfg.postmaster_pid), read_proc(os.getpid(), now)
    return Snapshot(now, procs, pg, own, machine_busy_s())


async def _stop_all(run: LevelRun) -> None:
    """Workers first (each finishes what it holds), then the gateway."""
    codes = await asyncio.gather(*(worker.stop() for worker in run.workers))
    for i, code in enumerate(codes):
        run.exit_codes[f"worker {i + 1}"] = code
    run.exit_codes["gateway"] = await run.gateway.stop()


def _keep_logs(run: LevelRun) -> None:
    run.cfg.log_dir.mkdir(parents=True, exist_ok=True)
    for proc in run.processes.values():
        with contextlib.suppress(FileNotFoundError):
            shutil.copyfile(proc.log_path, kept_log(run.cfg, proc.log_path.name))


def kept_log(cfg: WorkersConfig, name: str) -> Path:
    """Where a process's log (gateway.log, worker-1.log…) of this level is kept."""
    level = re.sub(r"[^a-z0-9]+", "-", cfg.label.lower()).strip("-") or "level"
    return cfg.log_dir / f"workers-{level}-{name}"


async def _read_database(run: LevelRun) -> None:
    url = run.cfg.database_url
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        cursor = await conn.execute(
            "SELECT id, interaction_id, provider_task_id, message_id, status, cost_micros, created_at FROM jobs"
        )
        run.rows = list(await cursor.fetchall())
        cursor = await conn.execute("SELECT kind, SUM(amount_micros) AS total FROM ledger GROUP BY kind")
        run.ledger = {row["kind"]: int(row["total"]) for row in await cursor.fetchall()}


def with_label(cfg: WorkersConfig, jobs: int) -> WorkersConfig:
    mode = "callbacks" if cfg.callbacks else "polling"
    return replace(cfg, label=f"{cfg.workers}w × {jobs:,} ({mode}, ×{cfg.compression:g})")
