"""One benchmark level: start the stand-ins and the bot, send the workload, wait, and measure.

The stand-ins (Discord, WaveSpeed, and a second WaveSpeed for the SDK twins) run in this process;
the bot runs as `python bot.py` in its own process with a generated config, so its memory and CPU
are its own. Everything talks over 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import os
import re
import shutil
import sqlite3
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import counting, replay
from bench.botproc import BotProcess, ProcSample, read_proc, write_config
from bench.sdk_twin import TwinRun, run_twins
from bench.stand_ins import BenchDiscord, BenchWaveSpeed
from bench.stats import mean, summary
from bench.workload import TYPICAL_S, Job
from tests.fakes.discord_server import FakeInteraction

API_KEY = "ws-bench-key"
SAMPLE_EVERY_S = 0.2
STALL_S = 60.0  # no job ended this long after all should have: stop and report the level as incomplete
TERMINAL = ("delivered", "failed", "cancelled")
# The line the bot is asked to log periodically (not there yet): "event-loop lag p50 1.2 ms, p99 8.0 ms, max 31.5 ms".
LAG_LINE = re.compile(r"event-loop lag p50 ([\d.]+) ms, p99 ([\d.]+) ms, max ([\d.]+) ms")


@dataclass(frozen=True)
class LevelConfig:
    compression: float
    bot_dir: Path
    bot_polling: str  # how the bot under test polls: "current" (PollPolicy) or "schedule" (PollSchedule)
    upload_limit: int
    heartbeat_ms: int
    sdk_sample: int  # how many of the jobs get an SDK twin (all when the level is smaller)
    webhooks: bool = False
    label: str = ""
    log_dir: Path | None = None  # where to keep the bot's log of each level


@dataclass
class Probe:
    """This process's own event-loop lag: if the stand-ins were the bottleneck it would show here."""

    lags: list[float] = field(default_factory=list)

    async def run(self, every: float = 0.05) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(every)
            self.lags.append(max(loop.time() - before - every, 0.0))


async def send_jobs(discord: BenchDiscord, jobs: list[Job], sent: dict[int, FakeInteraction], start: float) -> None:
    """Send each job's command through the Discord stand-in at its moment (`start` + `job.at`, loop time),
    each from its own member; `sent` gets each interaction by job index."""
    loop = asyncio.get_running_loop()
    data, width, height = animate_image()
    image = discord.add_attachment(data, "frame.jpg", "image/jpeg", width=width, height=height)
    for job in jobs:
        await asyncio.sleep(max(0.0, start + job.at - loop.time()))
        options = {**job.options, "image": image} if job.command == "animate" else job.options
        sent[job.index] = await discord.invoke(
            job.command, options, user_id=job.user_id, user_name=f"member{job.user_id}"
        )


def animate_image() -> tuple[bytes, int, int]:
    from PIL import Image

    image = Image.linear_gradient("L").resize((640, 480)).convert("RGB")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue(), 640, 480


async def run_level(jobs: list[Job], clips: dict[int, bytes], cfg: LevelConfig) -> dict[str, Any]:
    discord = BenchDiscord(upload_limit=cfg.upload_limit, heartbeat_ms=cfg.heartbeat_ms)
    bot_ws, twin_ws = BenchWaveSpeed(API_KEY), BenchWaveSpeed(API_KEY)
    for fake in (discord, bot_ws, twin_ws):
        await fake.start()
    try:
        for job in jobs:
            bot_ws.plan(job.index, duration_s=job.provider_seconds, output_bytes=clips[job.clip_bytes])
            twin_ws.plan(job.index, duration_s=job.provider_seconds)
        with tempfile.TemporaryDirectory(prefix="hailuo-bench-") as tmp:
            folder = Path(tmp)
            config = write_config(
                folder,
                cfg.bot_dir,
                wavespeed_url=bot_ws.base_url,
                typical_seconds=TYPICAL_S / cfg.compression,
                webhooks=cfg.webhooks,
            )
            env = {
                "DISCORD_TOKEN": discord.bot_token,
                "WAVESPEED_API_KEY": API_KEY,
                "DISCORD_API_BASE": discord.base_url,
                "DISCORD_GATEWAY_URL": discord.gateway_url,
            }
            bot = BotProcess(cfg.bot_dir, folder, config, env)
            run = _Run(jobs, cfg, discord, bot_ws, twin_ws, bot)
            await run.drive()
            return run.collect()
    finally:
        for fake in (discord, bot_ws, twin_ws):
            await fake.stop()


class _Run:
    def __init__(
        self,
        jobs: list[Job],
        cfg: LevelConfig,
        discord: BenchDiscord,
        bot_ws: BenchWaveSpeed,
        twin_ws: BenchWaveSpeed,
        bot: BotProcess,
    ) -> None:
        self.jobs, self.cfg, self.discord, self.bot_ws, self.twin_ws, self.bot = (
            jobs,
            cfg,
            discord,
            bot_ws,
            twin_ws,
            bot,
        )
        self.sent: dict[int, FakeInteraction] = {}
        self.samples: list[tuple[ProcSample, int]] = []  # (sample, jobs in flight then)
        self.own: list[ProcSample] = []  # this process (the stand-ins), to show it is not the bottleneck
        self.baseline: ProcSample | None = None
        self.final: ProcSample | None = None
        self.twins: list[TwinRun] = []
        self.probe = Probe()
        self.started = self.finished = 0.0  # time.monotonic() of the first command / the last job's end
        self.rows: list[sqlite3.Row] = []
        self.ledger: dict[str, int] = {}
        self.exit_code: int | None = None
        self.wall_s = 0.0
        self.incomplete = False

    # ----- running -------------------------------------------------------------------------------

    async def drive(self) -> None:
        began = time.monotonic()
        await self.bot.start()
        try:
            await self._wait_ready()
            await asyncio.sleep(1.0)  # let start-up work (command sync, first heartbeats) settle
            self.baseline = self.bot.sample(time.monotonic())
            background = [asyncio.create_task(self._sample()), asyncio.create_task(self.probe.run())]
            loop = asyncio.get_running_loop()
            start = loop.time()
            self.started = time.monotonic()
            sampled = self.jobs[: self.cfg.sdk_sample]
            twins = asyncio.create_task(run_twins(self.twin_ws.base_url, API_KEY, sampled, start))
            try:
                await self._send_all(start)
                await self._wait_done()
                self.finished = time.monotonic()
                self.final = self.bot.sample(self.finished)
                self.twins = await asyncio.wait_for(twins, 120)
            finally:
                twins.cancel()
                for task in background:
                    task.cancel()
                await asyncio.gather(twins, *background, return_exceptions=True)
        finally:
            self.exit_code = await self.bot.stop()
            self.wall_s = time.monotonic() - began
            if self.cfg.log_dir is not None:  # the temporary folder goes away; its log is worth keeping
                self.cfg.log_dir.mkdir(parents=True, exist_ok=True)
                name = re.sub(r"[^a-z0-9]+", "-", self.cfg.label.lower()).strip("-") or "level"
                shutil.copyfile(self.bot.log_path, self.cfg.log_dir / f"bot-{name}.log")
        self._read_database()

    async def _wait_ready(self) -> None:
        timeout = 60.0
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.bot.proc is not None and self.bot.proc.returncode is not None:
                raise RuntimeError(f"the bot exited with {self.bot.proc.returncode}:\n{self.bot.log_tail()}")
            names = {c["name"] for c in self.discord.commands}
            active = self.discord._active
            if {"video", "animate"} <= names and active is not None and not active.ws.closed:
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"the bot was not ready within {timeout}s:\n{self.bot.log_tail()}")

    async def _send_all(self, start: float) -> None:
        await send_jobs(self.discord, self.jobs, self.sent, start)

    def _in_flight(self) -> int:
        return len(self.sent) - len(self.discord.uploads)

    async def _sample(self) -> None:
        while True:
            now = time.monotonic()
            sample = self.bot.sample(now)
            if sample is not None:
                self.samples.append((sample, self._in_flight()))
            own = read_proc(os.getpid(), now)
            if own is not None:
                self.own.append(own)
            await asyncio.sleep(SAMPLE_EVERY_S)

    async def _wait_done(self) -> None:
        """Until every job has ended. A command that failed after reserving leaves a job with no card
        and no task (a bot bug, reported in `orphans`): it counts as ended once it sat still 10 s.
        A run that makes no progress for `STALL_S` after the last task should have ended at the
        provider stops here too, reported as incomplete."""
        last_count, last_change = -1, time.monotonic()
        due = self.started + max((job.at + job.provider_seconds for job in self.jobs), default=0.0)
        while True:
            if self.bot.proc is not None and self.bot.proc.returncode is not None:
                raise RuntimeError(f"the bot exited with {self.bot.proc.returncode}:\n{self.bot.log_tail()}")
            ended, orphans = self._progress()
            if len(self.sent) == len(self.jobs) and ended + orphans >= len(self.jobs):
                return
            if ended != last_count:
                last_count, last_change = ended, time.monotonic()
            elif time.monotonic() - max(last_change, due) > STALL_S:
                self.incomplete = True
                return
            await asyncio.sleep(0.25)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(f"file:{self.bot.database}?mode=ro", uri=True, timeout=5)
        conn.row_factory = sqlite3.Row
        return conn

    def _progress(self) -> tuple[int, int]:
        """(jobs ended, orphans: reserved over 10 s ago and still without a card)."""
        if not self.bot.database.exists():
            return 0, 0
        marks = ",".join("?" * len(TERMINAL))
        try:
            with contextlib.closing(self._connect()) as conn:
                ended = conn.execute(f"SELECT COUNT(*) FROM jobs WHERE status IN ({marks})", TERMINAL).fetchone()[0]
                orphans = conn.execute(
                    "SELECT COUNT(*) FROM jobs WHERE status = 'reserved' AND message_id IS NULL"
                    " AND created_at < strftime('%Y-%m-%dT%H:%M:%f', 'now', '-10 seconds')"
                ).fetchone()[0]
        except sqlite3.Error:
            return 0, 0
        return int(ended), int(orphans)

    def _read_database(self) -> None:
        with contextlib.closing(self._connect()) as conn:
            self.rows = conn.execute(
                "SELECT id, interaction_id, provider_task_id, message_id, status, cost_micros FROM jobs"
            ).fetchall()
            self.ledger = {
                row[0]: int(row[1])
                for row in conn.execute("SELECT kind, SUM(amount_micros) FROM ledger GROUP BY kind").fetchall()
            }

    # ----- measuring -----------------------------------------------------------------------------

    def collect(self) -> dict[str, Any]:
        by_interaction = {row["interaction_id"]: row for row in self.rows}
        job_of_token = {it.token: index for index, it in self.sent.items()}
        job_of_message: dict[int, int] = {}
        for index, it in self.sent.items():
            row = by_interaction.get(it.id)
            if row is not None and row["message_id"]:
                job_of_message[int(row["message_id"])] = index
        discord_counts, uploads = counting.discord_requests(self.discord, job_of_token, job_of_message)
        provider_counts = counting.provider_requests(self.bot_ws)
        n = len(self.jobs)
        delivered = [row for row in self.rows if row["status"] == "delivered"]

        acks = [
            (self.discord.acked_at[it.id] - it.created) * 1000
            for it in self.sent.values()
            if it.id in self.discord.acked_at
        ]
        first_burst = [job.index for job in self.jobs if job.at < 1.0]
        burst_acks = [
            (self.discord.acked_at[self.sent[i].id] - self.sent[i].created) * 1000
            for i in first_burst
            if self.sent[i].id in self.discord.acked_at
        ]
        notice, overhead, after_notice, transfer = [], [], [], []
        deliveries: list[tuple[float, float]] = []  # (download started, upload ended)
        steps: dict[str, list[float]] = defaultdict(list)  # where the time after the notice goes
        for job in self.jobs:
            task = self._task(self.bot_ws, job.index)
            if task is None or task.completed_at is None or task.terminal_seen_at is None:
                continue
            notice.append(task.terminal_seen_at - task.completed_at)
            upload = uploads.get(job.index)
            download = self.bot_ws.downloads.get(task.id)
            if upload is None or download is None:
                continue
            moving = (upload.ended - upload.started) + (download.ended - download.started)
            deliveries.append((download.started, upload.ended))
            steps["notice_to_download"].append(download.started - task.terminal_seen_at)
            steps["download"].append(download.ended - download.started)
            steps["download_to_upload"].append(upload.started - download.ended)
            steps["upload"].append(upload.ended - upload.started)
            transfer.append(moving)
            overhead.append(upload.ended - task.completed_at - moving)
            after_notice.append(upload.ended - task.terminal_seen_at - moving)

        twin_notice, twin_polls = [], []
        for twin in self.twins:
            task = self.twin_ws.tasks.get(twin.task_id)
            if task and task.completed_at is not None and task.terminal_seen_at is not None:
                twin_notice.append(task.terminal_seen_at - task.completed_at)
                twin_polls.append(task.polls)

        return {
            "label": self.cfg.label,
            "jobs": n,
            "compression": self.cfg.compression,
            "webhooks": self.cfg.webhooks,
            "wall_seconds": round(self.wall_s, 1),
            "active_seconds": round(self.finished - self.started, 2),
            "outcomes": dict(Counter(row["status"] for row in self.rows)),
            "incomplete": self.incomplete,
            "commands_without_job": n - len(by_interaction.keys() & {it.id for it in self.sent.values()}),
            "peak_in_flight": max((f for _, f in self.samples), default=0),
            "ack_ms": summary(acks),
            "ack_missing": n - len(acks),
            "ack_first_burst_ms": summary(burst_acks),
            "notice_s": summary(notice),
            "provider_requests_per_job": {k: v / n for k, v in provider_counts.items()},
            "discord_requests_per_job": {k: v / n for k, v in discord_counts.items()},
            "overhead_s": summary(overhead),
            "overhead_after_notice_s": summary(after_notice),
            "transfer_s": summary(transfer),
            "delivery_steps_s": {name: summary(values) for name, values in steps.items()},
            "max_concurrent_deliveries": counting.max_overlap(deliveries),
            "clip_mib_mean": (mean(job.clip_bytes for job in self.jobs) or 0) / 2**20,
            "process": self._process_figures(n),
            "loop_lag_ms": self._lag_figures(),
            "bench_loop_lag_ms": summary(lag * 1000 for lag in self.probe.lags),
            "bench_cpu_utilisation": self._own_cpu(),
            "bot_reported_loop_lag_ms": self._reported_lag(),
            "sdk_twin": {
                "jobs": len(twin_polls),
                "notice_s": summary(twin_notice),
                # submit + polls + the one download the caller makes (counted, not made)
                "provider_requests_per_job": (1 + mean(twin_polls) + 1) if twin_polls else None,
                "polls_per_job": mean(twin_polls),
            },
            "projection": self._projection(),
            "ledger": self._ledger_check(delivered),
            "bot_exit_code": self.exit_code,
        }

    @staticmethod
    def _task(fake: BenchWaveSpeed, index: int) -> Any:
        task_id = fake.task_of_job.get(index)
        return fake.tasks.get(task_id) if task_id else None

    def _process_figures(self, n: int) -> dict[str, Any]:
        if self.baseline is None or self.final is None:
            return {}
        peak_flight = max(self.samples, key=lambda s: s[1], default=None)
        per_job = None
        if peak_flight is not None and peak_flight[1] > 0:
            per_job = (peak_flight[0].rss_kib - self.baseline.rss_kib) / peak_flight[1]
        peak_rss = max([s.peak_rss_kib for s, _ in self.samples] + [self.final.peak_rss_kib])
        return {
            "pid_threads_max": max((s.threads for s, _ in self.samples), default=0),
            "rss_idle_mib": self.baseline.rss_kib / 1024,
            "rss_peak_mib": peak_rss / 1024,
            "rss_at_peak_in_flight_mib": peak_flight[0].rss_kib / 1024 if peak_flight else None,
            "rss_per_job_in_flight_kib": per_job,
            "rss_growth_mib": (peak_rss - self.baseline.rss_kib) / 1024,
            # What downloading and posting clips adds on top of carrying the jobs.
            "rss_delivery_growth_mib": (peak_rss - peak_flight[0].rss_kib) / 1024 if peak_flight else None,
            "cpu_s": self.final.cpu_s - self.baseline.cpu_s,
            "cpu_s_per_job": (self.final.cpu_s - self.baseline.cpu_s) / n,
            "children_cpu_s_per_job": (self.final.children_cpu_s - self.baseline.children_cpu_s) / n,
            "cpu_utilisation": (self.final.cpu_s - self.baseline.cpu_s) / max(self.finished - self.started, 1e-9),
        }

    def _own_cpu(self) -> float | None:
        if len(self.own) < 2:
            return None
        first, last = self.own[0], self.own[-1]
        return (last.cpu_s - first.cpu_s) / max(last.at - first.at, 1e-9)

    def _reported_lag(self) -> dict[str, Any] | None:
        """The bot's own figures, once it logs them (the hook asked of the bot; see bench/README)."""
        try:
            text = self.bot.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return None
        windows = [tuple(map(float, m.groups())) for m in LAG_LINE.finditer(text)]
        if not windows:
            return None
        return {"windows": len(windows), "p99_worst_window": max(w[1] for w in windows),
                "max": max(w[2] for w in windows)}  # fmt: skip

    def _lag_figures(self) -> dict[str, Any]:
        """The bot's event-loop lag seen from outside: discord.py's heartbeat thread waits its interval,
        then hands the send to the event loop and blocks until it is done; so each gap between two
        heartbeats is the interval plus how long the loop took to run the send."""
        interval = self.cfg.heartbeat_ms / 1000
        beats = [t for t in self.discord.heartbeats if self.started <= t <= self.finished]
        lags = [max(b - a - interval, 0.0) * 1000 for a, b in itertools.pairwise(beats)]
        return {"heartbeat_interval_ms": self.cfg.heartbeat_ms, **summary(lags)}

    def _projection(self) -> dict[str, Any]:
        """Polling figures replayed at the compressed durations (model check) and at real ones."""
        bot_polls, twin_polls = counting.poll_times(self.bot_ws), counting.poll_times(self.twin_ws)
        tasks = [task for job in self.jobs if (task := self._task(self.bot_ws, job.index)) is not None]
        twins = [self.twin_ws.tasks[twin.task_id] for twin in self.twins]
        return replay.project_level(
            [(t.duration_s, [at - t.submitted_at for at in bot_polls[t.id]]) for t in tasks],
            [(t.duration_s, [at - t.submitted_at for at in twin_polls[t.id]]) for t in twins],
            compression=self.cfg.compression,
            bot_polling=self.cfg.bot_polling,
            webhooks=self.cfg.webhooks,
            typical=TYPICAL_S,
        )

    def _ledger_check(self, delivered: list[sqlite3.Row]) -> dict[str, int]:
        reserved = self.ledger.get("reserve", 0)
        settled = self.ledger.get("settle", 0)
        refunded = self.ledger.get("refund", 0)
        released = self.ledger.get("release", 0)
        return {
            "reserved_micros": reserved,
            "settled_micros": settled,
            "delivered_cost_micros": sum(row["cost_micros"] for row in delivered),
            "outstanding_micros": reserved - settled - refunded - released,
        }
