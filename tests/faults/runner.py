"""Fault injection against the real bot: `bot.py` as a child process, real sockets, SQLite and ffmpeg.

`FaultRun` starts the bot pointed at stand-ins that run in the caller's event loop (FakeDiscord, and
FakeWaveSpeed and FakeSeaArt each behind a TCP gate), sends it jobs from several users in bursts, and
injects faults at points chosen by a seeded `random.Random`: providers refusing connections, failing,
rate-limiting or answering garbage, tasks that never finish, outputs that 404, crawl, are too large or are
not videos, ambiguous submits, failover, Discord rate limits and 5xx, deleted job cards, refused uploads,
expired tokens, gateway reconnects, a failed receipt, and the bot itself stopped with SIGTERM or killed
with SIGKILL and started again. In storage-fault mode (`RunSize.storage_faults`) the database is sick too:
its write lock held by another process past the bot's busy timeout, the disk full (the data directory is
a small tmpfs that a filler file fills up), and a start on a read-only file system.
Then it waits for every job to end and checks the promise: each job
delivered or refunded and the user shown which, nothing charged or posted twice, no one charged after
being told otherwise, the ledger balanced, no provider task without its job, no temporary file left.

The seed fixes the plan (the jobs, the faults and their order); the exact interleaving still depends on
timing, so a replay repeats the same run, not the same microsecond.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import itertools
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from tests.e2e.harness import write_config
from tests.fakes.discord_server import DiscordError, FakeDiscord, FakeInteraction, FakeMessage
from tests.fakes.seaart_server import FakeSeaArt
from tests.fakes.wavespeed_server import FakeWaveSpeed

ROOT = Path(__file__).resolve().parents[2]
SEED_ENV = "HAILUO_FAULT_SEED"
ROLE_ID = 777_000_000_000_000_001  # the role whose quota override lets every job through
USERS = (5001, 5002, 5003, 5004, 5005)
TERMINAL = ("delivered", "failed", "cancelled")
TERM_LIMIT_S = 10.0  # the bot promises to exit within this after SIGTERM
SMALL_UPLOAD_LIMIT = 6000  # below the stand-in's ~7 KB clip: the bot has to re-encode or link
NOT_A_VIDEO = b"<!doctype html><html><body>502 Bad Gateway</body></html>\n" * 20
PROMPTS = (
    "a lighthouse in a storm [Push in]",
    "a paper boat on a river",
    "a red fox in the snow [Pan left]",
    "city lights at night, rain on the window",
    "a cat looks up [Tilt up]",
    "waves crashing on black rocks [Truck left, Pedestal up]",
)
# Valid option sets (the commands refuse impossible ones before any job exists), most common first.
VIDEO_OPTIONS: tuple[dict[str, object], ...] = (
    {}, {}, {}, {"quality": "pro"}, {"duration": 10}, {"model": "hailuo-02"}, {"model": "hailuo-02", "quality": "pro"},
)  # fmt: skip
ANIMATE_OPTIONS: tuple[dict[str, object], ...] = (
    {}, {}, {"quality": "fast"}, {"quality": "fast-pro"}, {"quality": "pro"}, {"quality": "fast", "duration": 10},
    {"model": "hailuo-02"},
)  # fmt: skip

# Faults injected between bursts. Each name has a `_fault_<name>` method on FaultRun.
STEP_FAULTS = (
    "wavespeed_refused",  # connection refused for a few seconds: polls back off, submits fail over
    "seaart_refused",
    "poll_5xx",
    "poll_429",
    "malformed_json",
    "seaart_poll_5xx",
    "submit_outage",  # WaveSpeed 5xx on submit: the job fails over to SeaArt
    "submit_429",
    "ambiguous_drop",  # the submit created a task, then the connection dropped: refund, never resend
    "ambiguous_timeout",  # the submit created a task and answered too late: the same
    "discord_429",  # discord.py must pace and retry, never drop the result
    "discord_5xx",
    "card_deleted",  # a moderator deletes a running job's card
    "token_expired",
    "gateway_reconnect",
    "upload_413",
    "receipt_outage",  # Discord fails the edit that turns a command's "thinking…" into its receipt
)
# Faults carried by a provider task (queued on FakeWaveSpeed just before the job that should meet it).
TASK_FAULTS = ("never", "output_404", "output_5xx", "output_slow", "not_video", "output_too_big", "gen_failed", "nsfw")
# Storage faults (storage-fault mode only): see the `_fault_<name>` methods.
STORAGE_FAULTS = ("db_locked", "disk_full", "read_only_start")
DATA_TMPFS_SIZE = "64m"  # the data directory's file system in storage-fault mode
START_FAILURE_LIMIT_S = 5.0  # a start on a read-only database must end this quickly, with exit code 2
MAX_OUTPUT_MIB = 1  # bot.max_output_mib: the stand-in's clips are ~7 KB, "output_too_big" is just over
CRASH_STATES = ("reserved", "submitting", "running", "downloading", "posting")

Signal = Literal["KILL", "TERM"]


# ----- the plan --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSize:
    jobs: int  # jobs in bursts (each stop adds one more, started just before it)
    bursts: int
    kills: int  # SIGKILL + start again
    terms: int  # SIGTERM + start again
    faults: int  # from STEP_FAULTS
    task_faults: int  # from TASK_FAULTS
    deadline_s: int = 30  # bot.job_deadline_seconds (the bot's minimum)
    storage_faults: int = 0  # from STORAGE_FAULTS (0: the database stays healthy)


@dataclass(frozen=True)
class JobRequest:
    user_id: int
    command: Literal["video", "animate"]
    options: dict[str, object]
    task: str = "ok"  # a TASK_FAULTS name, or "ok"
    scenario: dict[str, object] = field(default_factory=dict)  # FakeWaveSpeed.next_scenario(**scenario)
    upload_limit: int | None = None  # the interaction's attachment_size_limit (None: the fake's default)


@dataclass(frozen=True)
class Burst:
    requests: tuple[JobRequest, ...]
    gaps: tuple[float, ...]  # seconds before each request


@dataclass(frozen=True)
class Fault:
    name: str
    n: int = 1
    seconds: float = 0.0
    code: int = 0
    pick: float = 0.0  # which of the eligible targets, as a fraction of their number
    request: JobRequest | None = None  # a command the fault is aimed at, sent by the fault itself


@dataclass(frozen=True)
class Stop:
    signal: Signal
    at_state: str  # wait (briefly) until some job is in this state, then signal
    trigger: JobRequest  # started just before, so there is a job to catch in that state
    downtime: float  # seconds before starting the bot again
    late: JobRequest | None = None  # sent right after SIGTERM: the bot must turn it away or carry it


@dataclass(frozen=True)
class Pause:
    seconds: float


Step = Burst | Fault | Stop | Pause


def make_plan(size: RunSize, rng: random.Random) -> list[Step]:
    """Bursts of jobs, with faults and stops scattered between them. Every random choice is made here,
    so the seed alone fixes the plan."""
    task_faults = _cycle(TASK_FAULTS, size.task_faults, rng, first="never")
    requests = [_job_request(rng, task_faults[i] if i < len(task_faults) else "ok") for i in range(size.jobs)]
    rng.shuffle(requests)
    never = next((index for index, request in enumerate(requests) if request.task == "never"), None)
    if never is not None:  # first: its deadline (30 s) then overlaps the rest of the run instead of adding to it
        requests.insert(0, requests.pop(never))
    slots: list[list[Step]] = [[] for _ in range(size.bursts + 1)]  # slot i runs after burst i (0: before any)
    for name in _cycle(STEP_FAULTS, size.faults, rng):
        slots[rng.randrange(size.bursts + 1)].append(_fault(name, rng))
    for name in _cycle(STORAGE_FAULTS, size.storage_faults, rng):  # after a burst: jobs are in flight
        slots[rng.randrange(1, size.bursts + 1)].append(_storage_fault(name, rng))
    stops: list[Signal] = ["KILL"] * size.kills + ["TERM"] * size.terms
    rng.shuffle(stops)
    for sig in stops:
        slots[rng.randrange(1, size.bursts + 1)].append(_stop(sig, rng))
    plan: list[Step] = list(slots[0])
    for index, chunk in enumerate(_split(requests, size.bursts, rng), start=1):
        plan.append(Burst(tuple(chunk), tuple(round(rng.uniform(0, 0.25), 2) for _ in chunk)))
        rng.shuffle(slots[index])
        for step in slots[index]:
            plan += [Pause(round(rng.uniform(0.1, 1.2), 2)), step]
        plan.append(Pause(round(rng.uniform(0.3, 2.0), 2)))
    return plan


def _cycle(names: tuple[str, ...], count: int, rng: random.Random, first: str | None = None) -> list[str]:
    """`count` names: every name once (shuffled) before any repeats, so small runs still vary."""
    out: list[str] = []
    while len(out) < count:
        batch = list(names)
        rng.shuffle(batch)
        if first is not None and not out:
            batch.remove(first)
            batch.insert(0, first)
        out += batch
    return out[:count]


def _split(items: list[JobRequest], parts: int, rng: random.Random) -> list[list[JobRequest]]:
    cuts = sorted(rng.sample(range(1, len(items)), parts - 1)) if parts > 1 else []
    bounds = [0, *cuts, len(items)]
    return [items[a:b] for a, b in itertools.pairwise(bounds)]


def _job_request(rng: random.Random, task: str = "ok", **scenario: object) -> JobRequest:
    command: Literal["video", "animate"] = "video" if rng.random() < 0.5 else "animate"
    options = dict(rng.choice(VIDEO_OPTIONS if command == "video" else ANIMATE_OPTIONS))
    if command == "video" or rng.random() < 0.7:
        options["prompt"] = rng.choice(PROMPTS)
    return JobRequest(
        user_id=rng.choice(USERS),
        command=command,
        options=options,
        task=task,
        scenario=_scenario(task, rng) | scenario,
        upload_limit=SMALL_UPLOAD_LIMIT if rng.random() < 0.1 else None,
    )


def _scenario(task: str, rng: random.Random) -> dict[str, object]:
    """What the provider task does: real time compressed to 0.5–3 s, plus the task's fault."""
    timing: dict[str, object] = {"duration_s": round(rng.uniform(0.5, 3.0), 2)}
    delay = round(rng.uniform(1.5, 3.5), 2)  # drawn for every task, so one task's fault does not shift the rest
    match task:
        case "never":
            return {"outcome": "never"}
        case "output_404" | "output_5xx":
            return timing | {"output_status": 404 if task == "output_404" else 503}
        case "output_slow":
            return timing | {"output_delay": delay}
        case "not_video":
            return timing | {"output_bytes": NOT_A_VIDEO}
        case "output_too_big":
            return timing | {"output_bytes": bytes(MAX_OUTPUT_MIB * 1024 * 1024 + 4096)}
        case "gen_failed":
            return timing | {"outcome": "failed", "error_text": "Internal inference error"}
        case "nsfw":
            return timing | {"outcome": "nsfw"}
    return timing


def _fault(name: str, rng: random.Random) -> Fault:
    return Fault(
        name,
        n=rng.randint(1, 4),
        seconds=round(rng.uniform(1.0, 3.5), 2),
        code=rng.choice((500, 502, 503, 504)),
        pick=rng.random(),
        request=_job_request(rng) if name == "receipt_outage" else None,
    )


def _storage_fault(name: str, rng: random.Random) -> Fault:
    # A lock must outlast the bot's 5 s busy timeout to be felt; a full disk lasts a few seconds.
    seconds = rng.uniform(6.0, 9.0) if name == "db_locked" else rng.uniform(2.0, 5.0)
    return Fault(name, seconds=round(seconds, 2), pick=rng.random())


def _stop(sig: Signal, rng: random.Random) -> Stop:
    state = rng.choice(CRASH_STATES)
    # Widen the window of the state to catch: a slow download, or an upload that must be re-encoded.
    extra: dict[str, object] = {"output_delay": 3.0} if state == "downloading" else {}
    trigger = _job_request(rng, **extra)
    if state == "posting":
        trigger = replace(trigger, upload_limit=SMALL_UPLOAD_LIMIT)
    late = _job_request(rng) if sig == "TERM" and rng.random() < 0.7 else None
    return Stop(sig, state, trigger, round(rng.uniform(0.2, 2.0), 2), late)


def describe(step: Step) -> str:
    if isinstance(step, Burst):
        jobs = ", ".join(f"/{r.command}({r.task}{', small upload' if r.upload_limit else ''})" for r in step.requests)
        return f"burst of {len(step.requests)}: {jobs}"
    if isinstance(step, Fault):
        return f"fault {step.name} (n={step.n}, {step.seconds} s, code {step.code}, pick {step.pick:.2f})"
    if isinstance(step, Stop):
        late = ", one command right after" if step.late else ""
        return f"SIG{step.signal} at '{step.at_state}', down {step.downtime} s{late}"
    return f"pause {step.seconds} s"


# ----- stand-ins -------------------------------------------------------------------------------------------


class ProviderGate:
    """A TCP pass-through in front of a provider stand-in, which can go down and come back on the same port.

    Down means nothing listens on the port, so new connections are refused (ECONNREFUSED), exactly what a
    provider host that is down looks like; open connections are cut as well, so the bot's pooled
    keep-alive connections cannot hide the outage. A bound, never-listening placeholder socket keeps the
    port reserved meanwhile: without it the kernel hands the free port to the next outgoing connection on
    the machine, and the gate could not come back. Output downloads do not pass through the gate (the
    stand-ins hand out their own URLs), like a CDN that stays up while the API is down."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.outages = 0
        self._down = 0  # outages in progress: they may overlap, and the gate reopens when the last ends
        self._placeholder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._placeholder.bind(("127.0.0.1", 0))
        self.port: int = self._placeholder.getsockname()[1]
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()

    def release(self) -> None:
        self.close()
        self._placeholder.close()

    async def outage(self, seconds: float) -> None:
        self.outages += 1
        self._down += 1
        self.close()
        try:
            await asyncio.sleep(seconds)
        finally:
            self._down -= 1
        if self._down == 0:
            await self.open()

    async def _serve(self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        if self._server is None:  # accepted just before the gate went down
            client.transport.abort()
            return
        self._transports.add(client.transport)
        try:
            upstream_reader, upstream = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client.transport.abort()
            self._transports.discard(client.transport)
            return
        self._transports.add(upstream.transport)
        try:
            await asyncio.gather(_pipe(client_reader, upstream), _pipe(upstream_reader, client))
        finally:
            for writer in (client, upstream):
                writer.transport.abort()
                self._transports.discard(writer.transport)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while chunk := await source.read(64 * 1024):
            sink.write(chunk)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()  # pass a half-close on, as HTTP clients and servers expect
    except OSError:
        sink.transport.abort()  # the other direction ends too


class UploadRefusingDiscord(FakeDiscord):
    """FakeDiscord that answers 413 / 40005 to the next few clip uploads, as Discord does when a channel's
    real limit is lower than the one the interaction announced."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.to_refuse = 0
        self.refused = 0

    def refuse_next_uploads(self, count: int) -> None:
        self.to_refuse += count

    def _validate(self, payload: dict[str, Any], files: list[Any], limit: int) -> None:
        if self.to_refuse > 0 and any(str(upload.filename).endswith(".mp4") for upload in files):
            self.to_refuse -= 1
            self.refused += 1
            raise DiscordError(413, 40005, "Request entity too large")
        super()._validate(payload, files, limit)


# ----- the bot process -------------------------------------------------------------------------------------


class BotProcess:
    """`python bot.py` in the repository, its output in one log file per start (a file, not a pipe: a
    full pipe would stall the bot)."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.starts = 0
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def log_path(self) -> Path:
        return self.logs / f"bot-{self.starts}.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        self.starts += 1
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "bot.py", cwd=ROOT, env=self.env, stdin=asyncio.subprocess.DEVNULL,
                stdout=log, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip

    async def kill(self) -> None:
        if self.proc is not None and self.running:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    async def wait_exit(self, timeout: float) -> int | None:
        """The exit code, or None (and a SIGKILL) when the bot did not exit in time."""
        assert self.proc is not None
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            await self.kill()
            return None

    def log_lines(self) -> list[str]:
        lines: list[str] = []
        for path in sorted(self.logs.glob("bot-*.log"), key=lambda p: int(p.stem.split("-")[1])):
            lines += path.read_text(errors="replace").splitlines()
        return lines

    def log_tail(self, count: int = 40) -> str:
        return "\n".join(self.log_lines()[-count:])


def tune_bot_section(config: Path, *, log_level: str, max_output_mib: int) -> None:
    """Settings the harness template has no slot for, set on its `[bot]` log_level line. INFO: one line per
    job state change is what a failed run needs; DEBUG (every SQL statement and gateway frame) would cost
    this loaded machine more than the bot's own work."""
    text = config.read_text(encoding="utf-8")
    line = 'log_level = "DEBUG"'
    assert line in text, "the harness config template changed: update tune_bot_section"
    tuned = f'log_level = "{log_level}"\nmax_output_mib = {max_output_mib}'
    config.write_text(text.replace(line, tuned), encoding="utf-8")


def bot_environment(config: Path, discord: FakeDiscord, keys: dict[str, str]) -> dict[str, str]:
    """A minimal environment: nothing of the developer's (keys, Discord endpoints) leaks into the bot."""
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TMPDIR") if name in os.environ}
    ours = {
        "PYTHONUNBUFFERED": "1",
        "HAILUO_CONFIG": str(config),
        "DISCORD_TOKEN": discord.bot_token,
        "DISCORD_API_BASE": discord.base_url,
        "DISCORD_GATEWAY_URL": discord.gateway_url,
    }
    return env | keys | ours


# ----- the database, read-only -----------------------------------------------------------------------------


class DatabaseView:
    """The bot's SQLite file opened read-only for each query: WAL lets us read while the bot writes, and
    a short-lived connection never holds a snapshot that would block the bot's checkpoints."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def rows(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        if not self.path.exists():
            return []
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        try:
            conn.row_factory = sqlite3.Row
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def unfinished(self) -> list[sqlite3.Row]:
        return self.rows(f"SELECT id, status, message_id, interaction_id FROM jobs WHERE status NOT IN {TERMINAL}")

    def newest_job(self) -> int:
        rows = self.rows("SELECT COALESCE(MAX(id), 0) FROM jobs")
        return int(rows[0][0]) if rows else 0

    def any_in(self, status: str) -> bool:
        return bool(self.rows("SELECT 1 FROM jobs WHERE status = ? LIMIT 1", (status,)))

    def jobs(self) -> list[sqlite3.Row]:
        """Every job with its ledger rows counted and summed by kind."""
        return self.rows(
            """SELECT j.id, j.status, j.cost_micros, j.provider, j.provider_task_id, j.delivered_as,
                      j.error_kind, j.interaction_id,
                      COALESCE(SUM(l.kind = 'reserve'), 0) AS reserves,
                      COALESCE(SUM(l.kind = 'settle'), 0) AS settles,
                      COALESCE(SUM(l.kind = 'refund'), 0) AS refunds,
                      COALESCE(SUM(CASE l.kind WHEN 'reserve' THEN l.amount_micros END), 0) AS reserved,
                      COALESCE(SUM(CASE l.kind WHEN 'settle' THEN l.amount_micros END), 0) AS settled,
                      COALESCE(SUM(CASE l.kind WHEN 'refund' THEN l.amount_micros END), 0) AS refunded,
                      COALESCE(SUM(CASE l.kind WHEN 'release' THEN l.amount_micros END), 0) AS released,
                      EXISTS (SELECT 1 FROM job_events e WHERE e.job_id = j.id AND e.status = 'submitting')
                          AS tried_submit
               FROM jobs j LEFT JOIN ledger l ON l.job_id = j.id
               GROUP BY j.id ORDER BY j.id"""
        )


# ----- what users saw --------------------------------------------------------------------------------------

_TITLE = re.compile(r"^(?P<stage>[^·]+?) · job #(?P<id>\d+)$")


def title_of(message: FakeMessage) -> tuple[str, int] | None:
    """(stage, job id) from a job card's title ("Posting the clip · job #12")."""
    match = _TITLE.match(str(message.embeds[0].get("title") or "")) if message.embeds else None
    return (match["stage"], int(match["id"])) if match else None


def card_of(message: FakeMessage) -> tuple[str, int] | None:
    """(stage, job id) of a public job card still in the channel."""
    return None if message.deleted or message.ephemeral else title_of(message)


def summary(message: FakeMessage) -> str:
    """One line for a failure report: what the message shows now."""
    title = message.embeds[0].get("title") if message.embeds else repr(message.content[:60])
    notice = " [restart notice]" if message.embeds and "restart" in str(message.embeds[0].get("description")) else ""
    files = [a["filename"] for a in message.attachments]
    state = "deleted" if message.deleted else "ephemeral" if message.ephemeral else "public"
    return f"message {message.id} ({state}, {message.edits} edits): {title}{notice}; files {files}; " \
           f"buttons {message.custom_ids()}"  # fmt: skip


def carries_clip(message: FakeMessage, job_id: int) -> bool:
    """The message holds this job's posted result: its mp4, or its Re-roll button (also on link results)."""
    if message.deleted:
        return False
    files = {attachment["filename"] for attachment in message.attachments}
    return f"hailuo-{job_id}.mp4" in files or f"hailuo:reroll:{job_id}" in message.custom_ids()


def shows_result(message: FakeMessage, job_id: int) -> bool:
    """A finished card with the clip attached or the provider's link in it."""
    card = card_of(message)
    if card != ("Done", job_id):
        return False
    has_link = "http" in str(message.embeds[0].get("description") or "")
    return any(a["filename"] == f"hailuo-{job_id}.mp4" for a in message.attachments) or has_link


def shows_failure(message: FakeMessage, job_id: int) -> bool:
    card = card_of(message)
    return card is not None and card[1] == job_id and card[0] in ("Failed", "Cancelled")


def _about(message: FakeMessage, job_id: int) -> bool:
    """A card of the job (even deleted), a message with its clip, or the requester's mention."""
    title = title_of(message)
    return (
        (title is not None and title[1] == job_id)
        or carries_clip(message, job_id)
        or (f"job #{job_id})" in message.content)
    )


def told_privately(interaction: FakeInteraction | None) -> bool:
    """The user's private receipt says nothing was charged (the job ended before its card was posted, or the
    command failed on the bot's side)."""
    original = interaction.original() if interaction is not None else None
    return original is not None and "Nothing was charged" in original.content


# ----- figures and invariants ------------------------------------------------------------------------------


@dataclass
class Figures:
    seed: int
    size: RunSize
    elapsed_s: float = 0.0
    commands: int = 0
    accepted: int = 0
    turned_away: int = 0  # "the bot is restarting" receipts
    apologised: int = 0  # "Sorry, ... Nothing was charged" receipts
    unacknowledged: int = 0
    not_dispatched: int = 0  # sent as the bot stopped, after its gateway connection closed
    started: int = 0
    delivered: Counter[str] = field(default_factory=Counter)  # by how: file, reencoded, link
    served_by: Counter[str] = field(default_factory=Counter)  # delivered jobs by provider
    refunded: Counter[str] = field(default_factory=Counter)  # by error kind
    lost: list[str] = field(default_factory=list)
    charged_twice: list[int] = field(default_factory=list)
    outcome_mismatch: list[str] = field(default_factory=list)
    posted_twice: list[int] = field(default_factory=list)
    given_away: list[int] = field(default_factory=list)  # refunded, yet the clip is in the channel
    misled: list[int] = field(default_factory=list)  # told "Nothing was charged", yet charged
    settled_micros: int = 0
    delivered_cost_micros: int = 0
    unbalanced: list[int] = field(default_factory=list)  # reserve - settle - refund - release != 0
    temp_files: list[str] = field(default_factory=list)
    provider_tasks: dict[str, int] = field(default_factory=dict)
    orphan_tasks: int = 0  # provider tasks no job owns
    unknown_submits: int = 0  # jobs that tried a submit, got no task id, and were refunded
    kills: int = 0
    terms: list[float] = field(default_factory=list)  # seconds from SIGTERM to exit
    term_failures: list[str] = field(default_factory=list)
    start_failures: list[str] = field(default_factory=list)  # starts on a sick database that did not end right
    restart_notices: tuple[int, int] = (0, 0)  # jobs in flight at SIGTERM told "restarting" / all of them
    untold: list[str] = field(default_factory=list)  # those not told, with their state then
    faults: Counter[str] = field(default_factory=Counter)
    trails: dict[int, list[str]] = field(default_factory=dict)  # what the channel shows of each problem job
    errors_logged: Counter[str] = field(default_factory=Counter)  # the bot's ERROR lines, by message
    workdir: Path | None = None

    @property
    def refunded_total(self) -> int:
        return sum(self.refunded.values())

    @property
    def delivered_total(self) -> int:
        return sum(self.delivered.values())

    def problems(self) -> list[str]:
        found = []
        if self.lost:
            found.append(f"lost jobs: {self.lost}")
        if self.charged_twice:
            found.append(f"charged twice: jobs {self.charged_twice}")
        if self.outcome_mismatch:
            found.append(f"status and ledger disagree: {self.outcome_mismatch}")
        if self.posted_twice:
            found.append(f"posted twice: jobs {self.posted_twice}")
        if self.given_away:
            found.append(f"clip posted but refunded: jobs {self.given_away}")
        if self.misled:
            found.append(f"charged after the user was told nothing was charged: jobs {self.misled}")
        if self.settled_micros != self.delivered_cost_micros:
            found.append(f"settled {self.settled_micros} != cost of delivered jobs {self.delivered_cost_micros}")
        if self.unbalanced:
            found.append(f"money left reserved: jobs {self.unbalanced}")
        if self.temp_files:
            found.append(f"temporary files left: {self.temp_files}")
        if self.orphan_tasks > self.unknown_submits:
            found.append(f"{self.orphan_tasks} provider tasks owned by no job, only {self.unknown_submits} "
                         "submits of unknown outcome to explain them (a job was submitted twice)")  # fmt: skip
        if self.started != self.delivered_total + self.refunded_total + len(self.lost):
            found.append("started != delivered + refunded + lost")
        found += self.term_failures + self.start_failures
        return found

    def render(self) -> str:
        usd = lambda micros: f"${micros / 1_000_000:,.2f}"  # noqa: E731
        balanced = self.settled_micros == self.delivered_cost_micros and not self.unbalanced
        told, in_flight = self.restart_notices
        terms = ", ".join(f"{s:.1f} s" for s in self.terms) or "-"
        lines = [
            f"fault-injection run, seed {self.seed} (replay: {SEED_ENV}={self.seed}), {self.elapsed_s:.0f} s",
            f"  commands sent        {self.commands} ({self.accepted} accepted, {self.turned_away} turned away "
            f"while restarting, {self.apologised} 'nothing was charged', {self.unacknowledged} unanswered; "
            f"{self.not_dispatched} more found the bot gone)",
            f"  jobs started         {self.started}",
            f"  delivered            {self.delivered_total} {_breakdown(self.delivered, self.served_by)}",
            f"  refunded             {self.refunded_total} {_breakdown(self.refunded)}",
            f"  lost                 {len(self.lost)}",
            f"  charged twice        {len(self.charged_twice)}",
            f"  posted twice         {len(self.posted_twice)}",
            f"  ledger balanced      {'yes' if balanced else 'NO'}: settled {usd(self.settled_micros)} = cost of "
            f"delivered jobs {usd(self.delivered_cost_micros)}; jobs with money still reserved: {len(self.unbalanced)}",
            f"  temp files left      {len(self.temp_files)}",
            f"  provider tasks       {_breakdown(Counter(self.provider_tasks))}; owned by no job {self.orphan_tasks}"
            f" (submits of unknown outcome, refunded: {self.unknown_submits})",
            f"  restarts             SIGKILL {self.kills}, SIGTERM {len(self.terms)} (exit after {terms}; "
            f"{told}/{in_flight} jobs in flight told{'; not told: ' + ', '.join(self.untold) if self.untold else ''})",
            f"  faults injected      {sum(self.faults.values())} {_breakdown(self.faults)}",
            f"  ERROR lines in log   {sum(self.errors_logged.values())} {_breakdown(self.errors_logged)}",
        ]
        if self.workdir is not None:
            lines.append(f"  logs and plan        {self.workdir}")
        for job_id, trail in sorted(self.trails.items()):
            lines += [f"  job #{job_id} in the channel:", *(f"    {line}" for line in trail or ["(nothing)"])]
        return "\n".join(line.rstrip() for line in lines)


def _breakdown(*counts: Counter[str]) -> str:
    parts = [", ".join(f"{name} {n}" for name, n in sorted(c.items())) for c in counts if c]
    return f"({'; '.join(parts)})" if parts else ""


# ----- the run ---------------------------------------------------------------------------------------------


def seed_from_environment(default: int | None = None) -> int:
    """The seed to replay (HAILUO_FAULT_SEED), else `default`, else a fresh random one."""
    value = os.environ.get(SEED_ENV, "").strip()
    if value:
        return int(value)
    return default if default is not None else random.SystemRandom().randrange(1, 2**31)


def jpeg(width: int = 640, height: int = 480) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (40, 120, 200)).save(buffer, "JPEG")
    return buffer.getvalue()


class FaultRun:
    """One run: stand-ins up, the bot started, the plan played, every job waited for, invariants read."""

    def __init__(self, workdir: Path, size: RunSize, seed: int, *, plan: list[Step] | None = None) -> None:
        self.workdir = workdir
        self.size = size
        self.seed = seed
        self.plan = plan if plan is not None else make_plan(size, random.Random(seed))
        self.figures = Figures(seed, size, workdir=workdir)
        self.discord = UploadRefusingDiscord(ack_deadline=10.0)  # a loaded machine must not miss the 3 s
        self.wavespeed = FakeWaveSpeed(duration_s=1.0)
        self.seaart = FakeSeaArt(duration_s=1.0)
        self.db = DatabaseView(workdir / "data" / "hailuo.db")
        self.interactions: list[FakeInteraction] = []
        self.task_faults: dict[int, str] = {}  # id(Scenario) -> its TASK_FAULTS name
        self._background: set[asyncio.Task[None]] = set()
        self._image = jpeg()
        self.trace: list[str] = []
        self.bot: BotProcess
        self.data_tmpfs: Path | None = None  # the data directory's own small file system (storage-fault mode)
        self._sick_database = asyncio.Lock()  # one storage fault at a time: each must be seen for what it is
        self.wavespeed_gate: ProviderGate
        self.seaart_gate: ProviderGate

    async def run(self) -> Figures:
        began = time.monotonic()
        (self.workdir / "plan.txt").write_text("\n".join(map(describe, self.plan)) + "\n", encoding="utf-8")
        try:
            async with self._world():
                for step in self.plan:
                    self.note(describe(step))
                    await self._play(step)
                await asyncio.gather(*self._background)
                self.note("waiting for every job to end")
                await self._wait_until_all_ended()
                await self._final_stop()
                self._read_figures()
        finally:
            # Wall-clock times, to line up with the bot's log when reading a failed run.
            (self.workdir / "trace.txt").write_text("\n".join(self.trace) + "\n", encoding="utf-8")
        self.figures.elapsed_s = time.monotonic() - began
        return self.figures

    def note(self, event: str) -> None:
        self.trace.append(f"{datetime.now():%H:%M:%S,%f}"[:-3] + f" {event}")

    # ----- setting up ------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _world(self) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for fake in (self.discord, self.wavespeed, self.seaart):
                await fake.start()
                stack.push_async_callback(fake.stop)
            self.wavespeed_gate = ProviderGate(self.wavespeed.port)
            self.seaart_gate = ProviderGate(self.seaart.port)
            for gate in (self.wavespeed_gate, self.seaart_gate):
                stack.callback(gate.release)
                await gate.open()
            if self.size.storage_faults:
                self.data_tmpfs = mount_tmpfs(self.workdir / "data", DATA_TMPFS_SIZE)
                if self.data_tmpfs is not None:
                    stack.callback(unmount, self.data_tmpfs)
            self.bot = BotProcess(self._environment(), self.workdir)
            stack.push_async_callback(self._cancel_background)
            stack.push_async_callback(self.bot.kill)
            await self._start_bot()
            yield

    def _environment(self) -> dict[str, str]:
        # The config template has no slot for [providers] keys other than `order`; these ride along on its line.
        order = '["wavespeed", "seaart"]\nfailure_threshold = 3\ncooldown_seconds = 5'
        seaart = f'\n[providers.seaart]\nbase_url = "{self.seaart_gate.url}/model"\ntimeout = 5\ntypical_seconds = 2\n'
        unlimited = f"""
[quotas.roles."{ROLE_ID}"]
user_daily_videos = 1000000
user_daily_usd = ""
user_monthly_usd = ""
guild_monthly_usd = ""
global_monthly_usd = ""
user_max_in_flight = 1000000
"""
        config = write_config(
            self.workdir, deadline=self.size.deadline_s, order=order, wavespeed_url=self.wavespeed_gate.url,
            provider_sections=seaart, daily_videos=1000000, daily_usd="100000.00", extra=unlimited,
        )  # fmt: skip
        tune_bot_section(config, log_level="INFO", max_output_mib=MAX_OUTPUT_MIB)
        keys = {"WAVESPEED_API_KEY": self.wavespeed.api_key, "SEAART_API_KEY": self.seaart.api_key}
        return bot_environment(config, self.discord, keys)

    async def _start_bot(self) -> None:
        """Start the bot and wait for its new gateway session (jobs found unfinished resume before that)."""
        before = self.discord.ready_count
        await self.bot.start()
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 60
        while self.discord.ready_count <= before:
            if not self.bot.running:
                raise RuntimeError(f"the bot exited while starting:\n{self.bot.log_tail()}")
            if loop.time() > give_up:
                raise TimeoutError(f"the bot did not connect within 60 s:\n{self.bot.log_tail()}")
            await asyncio.sleep(0.05)
        await self.discord.wait_ready(timeout=30)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _cancel_background(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    # ----- playing the plan ------------------------------------------------------------------------------

    async def _play(self, step: Step) -> None:
        if not self.bot.running:
            raise RuntimeError(f"the bot exited on its own:\n{self.bot.log_tail()}")
        if isinstance(step, Burst):
            for gap, request in zip(step.gaps, step.requests, strict=True):
                await asyncio.sleep(gap)
                await self._send(request)
        elif isinstance(step, Fault):
            applied = await FAULTS[step.name](self, step)
            self.figures.faults[step.name if applied else f"{step.name} (no target)"] += 1
        elif isinstance(step, Stop):
            await self._stop(step)
        else:
            await asyncio.sleep(step.seconds)

    async def _send(self, request: JobRequest) -> FakeInteraction | None:
        """Invoke the command as the user would. The provider task it should meet is queued just before; the
        stand-in hands scenarios out in order, so a job that never reaches it leaves its task to the next."""
        if request.scenario:
            scenario = self.wavespeed.next_scenario(**request.scenario)
            self.task_faults[id(scenario)] = request.task
        options = dict(request.options)
        if request.command == "animate":
            options["image"] = self.discord.add_attachment(self._image, "frame.jpg", "image/jpeg", width=640,
                                                           height=480)  # fmt: skip
        try:
            interaction = await self.discord.invoke(
                request.command, options, user_id=request.user_id, user_name=f"user{request.user_id}",
                roles=[ROLE_ID], attachment_size_limit=request.upload_limit,
            )  # fmt: skip
        except RuntimeError:  # the gateway is down (only for a command sent while the bot stops)
            self.figures.not_dispatched += 1
            return None
        self.interactions.append(interaction)
        return interaction

    async def _stop(self, step: Stop) -> None:
        if step.at_state == "submitting":  # a submit that takes 2.5 s (within the 5 s timeout) to catch
            self.wavespeed.slow_next_submit(2.5)
            self.seaart.slow_next_submit(2.5)
        newest = self.db.newest_job()
        await self._send(step.trigger)
        if step.at_state == "reserved":  # passed through in milliseconds: catch the trigger's job as it appears
            caught = await self._wait_for(lambda: self.db.newest_job() > newest, timeout=8.0)
        else:
            caught = await self._wait_for(lambda: self.db.any_in(step.at_state), timeout=8.0)
        self.figures.faults[f"SIG{step.signal} at {step.at_state}{'' if caught else ' (not seen in 8 s)'}"] += 1
        self.note(f"SIG{step.signal} ({step.at_state} {'seen' if caught else 'not seen'})")
        if step.signal == "KILL":
            await self.bot.kill()
            self.figures.kills += 1
        else:
            await self._terminate(step.late)
        await asyncio.sleep(step.downtime)
        await self._start_bot()
        self.note("bot connected again")

    @staticmethod
    async def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        while loop.time() < give_up:
            if condition():
                return True
            await asyncio.sleep(0.01)
        return False

    async def _terminate(self, late: JobRequest | None) -> None:
        """SIGTERM: the bot must tell the users of running jobs, turn new commands away and exit in 10 s."""
        in_flight = {int(row["id"]): str(row["status"]) for row in self.db.unfinished()}
        signalled = time.monotonic()
        self.bot.terminate()
        if late is not None:  # at once: it races the bot's handling of the signal
            await self._send(late)
        code = await self.bot.wait_exit(timeout=TERM_LIMIT_S + 20)
        took = time.monotonic() - signalled
        self.figures.terms.append(took)
        if code is None or took > TERM_LIMIT_S or code != 0:
            self.figures.term_failures.append(f"SIGTERM: exit code {code} after {took:.1f} s (limit {TERM_LIMIT_S} s)")
        told, total = self.figures.restart_notices
        still = sorted({int(row["id"]) for row in self.db.unfinished()} & set(in_flight))
        untold = [job_id for job_id in still if not self._card_mentions(job_id, "restarting")]
        self.figures.untold += [f"#{job_id} ({in_flight[job_id]})" for job_id in untold]
        self.figures.restart_notices = (told + len(still) - len(untold), total + len(still))

    def _card_mentions(self, job_id: int, text: str) -> bool:
        return any(
            (card := card_of(m)) is not None and card[1] == job_id and text in str(m.embeds[0].get("description"))
            for m in self.discord.messages.values()
        )

    # ----- faults ----------------------------------------------------------------------------------------

    async def _fault_wavespeed_refused(self, step: Fault) -> bool:
        self._spawn(self.wavespeed_gate.outage(step.seconds))
        return True

    async def _fault_seaart_refused(self, step: Fault) -> bool:
        self._spawn(self.seaart_gate.outage(step.seconds))
        return True

    # Poll errors come in bursts of at most 3: the bot backs off 2, 4, 8 s, and a fourth error in a row
    # (16 s more) would let a job's compressed 30 s deadline run out, which is not what is being tested.

    async def _fault_poll_5xx(self, step: Fault) -> bool:
        self.wavespeed.fail_next_polls(min(step.n, 3), step.code)
        return True

    async def _fault_poll_429(self, step: Fault) -> bool:
        self.wavespeed.fail_next_polls(min(step.n, 3), 429, retry_after=0.5)
        return True

    async def _fault_malformed_json(self, step: Fault) -> bool:
        self.wavespeed.malformed_next_polls(min(step.n, 2))
        self.seaart.malformed_next_polls(1)
        return True

    async def _fault_seaart_poll_5xx(self, step: Fault) -> bool:
        self.seaart.fail_next_polls(min(step.n, 3), step.code)
        return True

    async def _fault_submit_outage(self, step: Fault) -> bool:
        for _ in range(min(step.n, 3)):
            self.wavespeed.fail_next_submit(step.code, "Service temporarily unavailable")
        return True

    async def _fault_submit_429(self, step: Fault) -> bool:
        self.wavespeed.fail_next_submit(429, "Too many requests", retry_after=1)
        return True

    async def _fault_ambiguous_drop(self, step: Fault) -> bool:
        self.wavespeed.drop_next_submit_after_create()
        return True

    async def _fault_ambiguous_timeout(self, step: Fault) -> bool:
        self.wavespeed.slow_next_submit(6.0)  # past the bot's 5 s timeout, with the task already created
        return True

    async def _fault_discord_429(self, step: Fault) -> bool:
        prefix = "/webhooks/" if step.pick < 0.5 else "/channels/"
        self.discord.inject_error("*", prefix, 429, 0, "You are being rate limited.", times=step.n + 1)
        return True

    async def _fault_discord_5xx(self, step: Fault) -> bool:
        """discord.py retries 5xx on interaction webhooks (5 tries) and 500/502/504 on bot-token routes; a 503
        there fails the request at once, so the bot's own fallbacks are exercised too."""
        prefix = "/webhooks/" if step.pick < 0.5 else "/channels/"
        self.discord.inject_error("*", prefix, step.code, 0, "Service Unavailable", times=step.n)
        return True

    async def _fault_card_deleted(self, step: Fault) -> bool:
        cards = [m for m in self.discord.messages.values() if (c := card_of(m)) and c[0] not in ("Done", "Failed",
                 "Cancelled")]  # fmt: skip
        if not cards:
            return False
        self.discord.delete_message(cards[int(step.pick * len(cards))].id)
        return True

    async def _fault_token_expired(self, step: Fault) -> bool:
        running = [row for row in self.db.unfinished() if row["interaction_id"] and row["message_id"]]
        tokens = [i.token for row in running if (i := self.discord.interactions.get(int(row["interaction_id"])))]
        if not tokens:
            return False
        self.discord.expire_token(tokens[int(step.pick * len(tokens))])
        return True

    async def _fault_gateway_reconnect(self, step: Fault) -> bool:
        before = (self.discord.ready_count, self.discord.resume_count)
        await self.discord.reconnect_gateway()
        await self.discord.wait_until(lambda: (self.discord.ready_count, self.discord.resume_count) != before, 30)
        await self.discord.wait_ready(timeout=30)
        return True

    async def _fault_receipt_outage(self, step: Fault) -> bool:
        """Discord answers 503 to every try (discord.py makes 5, over about 25 s) of the edit that turns the
        command's private "thinking…" into its receipt; the job has been reserved just before that edit."""
        assert step.request is not None
        interaction = await self._send(step.request)
        if interaction is None:
            return False
        # Injected before the bot can get there: it first acknowledges, checks and reserves.
        path = f"/webhooks/{self.discord.application_id}/{interaction.token}/messages/@original"
        self.discord.inject_error("PATCH", path, 503, 0, "Service Unavailable", times=5)
        return True

    async def _fault_upload_413(self, step: Fault) -> bool:
        """The next clip upload is refused: once (the bot re-encodes and uploads again) or twice (after the
        re-encoded one is refused too, it posts the provider's link)."""
        self.discord.refuse_next_uploads(1 if step.n <= 2 else 2)
        return True

    # ----- storage faults --------------------------------------------------------------------------------

    async def _fault_db_locked(self, step: Fault) -> bool:
        """Another process (a backup, a second copy of the bot) holds the database's write lock for longer
        than the bot's busy timeout: running jobs must wait and carry on, commands be told, nothing lost."""
        self._spawn(self._hold_write_lock(step.seconds))
        return True

    async def _hold_write_lock(self, seconds: float) -> None:
        async with self._sick_database:
            holder = sqlite3.connect(self.db.path, isolation_level=None, timeout=30, check_same_thread=False)
            try:
                await asyncio.to_thread(holder.execute, "BEGIN IMMEDIATE")
                self.note(f"database write lock held for {seconds} s")
                await asyncio.sleep(seconds)
                holder.execute("ROLLBACK")
            finally:
                holder.close()
                self.note("database write lock released")

    async def _fault_disk_full(self, step: Fault) -> bool:
        """The data directory's disk fills up for a few seconds, then space is freed."""
        if self.data_tmpfs is None:
            return False
        self._spawn(self._fill_disk(self.data_tmpfs / "filler", step.seconds))
        return True

    async def _fill_disk(self, filler: Path, seconds: float) -> None:
        async with self._sick_database:
            try:
                await asyncio.to_thread(fill_until_full, filler)
                self.note(f"disk full for {seconds} s")
                await asyncio.sleep(seconds)
            finally:
                filler.unlink(missing_ok=True)
                self.note("disk space freed")

    async def _fault_read_only_start(self, step: Fault) -> bool:
        """The bot stops (SIGTERM) and is started on a read-only file system: it must say so in one line
        and exit with code 2 at once, not hang; once the file system is writable again it resumes its jobs."""
        if self.data_tmpfs is None:
            return False
        async with self._sick_database:
            await self._start_read_only(self.data_tmpfs)
        await self._start_bot()
        return True

    async def _start_read_only(self, data: Path) -> None:
        self.bot.terminate()
        if (code := await self.bot.wait_exit(timeout=TERM_LIMIT_S + 20)) != 0:
            self.figures.start_failures.append(f"SIGTERM before a read-only start: exit code {code}")
        remount(data, "ro")
        try:
            started = time.monotonic()
            await self.bot.start()
            code = await self.bot.wait_exit(timeout=30)
            took = time.monotonic() - started
            said = [line for line in self.bot.log_lines()[-5:] if "could not open the database" in line]
            if code != 2 or took > START_FAILURE_LIMIT_S or not said:
                self.figures.start_failures.append(
                    f"read-only start: exit code {code} after {took:.1f} s, said {said or 'nothing'}"
                )
            self.note(f"read-only start ended with exit code {code} after {took:.1f} s")
        finally:
            remount(data, "rw")

    # ----- ending ----------------------------------------------------------------------------------------

    async def _wait_until_all_ended(self) -> None:
        """Every job terminal, then every user shown the outcome (a failure card follows the refund row)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.size.deadline_s + 45  # a job still running then is stuck
        while self.db.unfinished() and loop.time() < give_up:
            if not self.bot.running:
                raise RuntimeError(f"the bot died on its own:\n{self.bot.log_tail()}")
            await asyncio.sleep(0.25)
        settle_by = loop.time() + 20
        while self._unseen() and loop.time() < settle_by:  # noqa: ASYNC110 (a bounded look at another process)
            await asyncio.sleep(0.25)

    async def _final_stop(self) -> None:
        self.bot.terminate()
        code = await self.bot.wait_exit(timeout=TERM_LIMIT_S + 20)
        if code != 0:
            self.figures.term_failures.append(f"final SIGTERM: exit code {code}")

    def _unseen(self) -> list[int]:
        jobs = self.db.rows("SELECT id, status, interaction_id FROM jobs")
        return [int(job["id"]) for job in jobs if not self._user_saw_outcome(job)]

    def _user_saw_outcome(self, job: sqlite3.Row) -> bool:
        job_id, messages = int(job["id"]), self.discord.messages.values()
        if job["status"] == "delivered":
            return any(shows_result(m, job_id) for m in messages)
        if job["status"] in ("failed", "cancelled"):
            interaction = self.discord.interactions.get(int(job["interaction_id"] or 0))
            return any(shows_failure(m, job_id) for m in messages) or told_privately(interaction)
        return False

    def _read_figures(self) -> None:
        f = self.figures
        jobs = self.db.jobs()
        f.started = len(jobs)
        unseen = set(self._unseen())
        for job in jobs:
            self._check_job(job, unseen)
        f.settled_micros = sum(int(job["settled"]) for job in jobs)
        f.delivered_cost_micros = sum(int(job["cost_micros"]) for job in jobs if job["status"] == "delivered")
        f.temp_files = sorted(p.name for p in (self.workdir / "data" / "tmp").iterdir())
        self._read_provider_tasks(jobs)
        self._read_commands()
        for line in self.bot.log_lines():
            if " ERROR " in line:  # "<date> <time> ERROR   <logger>: <message>", numbers stripped to group them
                f.errors_logged[re.sub(r"\d+", "N", line.split(" ERROR ", 1)[1].strip())[:80]] += 1
        for task in self.wavespeed.tasks.values():
            if (name := self.task_faults.get(id(task.scenario), "ok")) != "ok":
                f.faults[f"task {name}"] += 1
        if self.discord.refused:
            f.faults["upload refused (413)"] = self.discord.refused

    def _check_job(self, job: sqlite3.Row, unseen: set[int]) -> None:
        f, job_id, status = self.figures, int(job["id"]), str(job["status"])
        if status not in TERMINAL:
            f.lost.append(f"#{job_id} never ended ({status})")
        elif job_id in unseen:
            f.lost.append(f"#{job_id} {status} but its user was never shown it")
        elif status == "delivered":
            f.delivered[str(job["delivered_as"])] += 1
            f.served_by[str(job["provider"])] += 1
        else:
            f.refunded[str(job["error_kind"] or status)] += 1
        self._check_money(job)
        interaction = self.discord.interactions.get(int(job["interaction_id"] or 0))
        self._check_posts(job, interaction)
        if job_id in unseen or job_id in {*f.posted_twice, *f.given_away, *f.misled}:
            f.trails[job_id] = self._trail(job_id, interaction)

    def _check_money(self, job: sqlite3.Row) -> None:
        """One reservation, then exactly the outcome row the status calls for, and nothing left reserved."""
        f, job_id, status = self.figures, int(job["id"]), str(job["status"])
        if job["settles"] + job["refunds"] > 1:
            f.charged_twice.append(job_id)
        expected = {"delivered": (1, 1, 0), "failed": (1, 0, 1), "cancelled": (1, 0, 1)}.get(status, (1, 0, 0))
        if (job["reserves"], job["settles"], job["refunds"]) != expected:
            f.outcome_mismatch.append(f"#{job_id} {status}: {job['reserves']} reserve, {job['settles']} settle, "
                                      f"{job['refunds']} refund")  # fmt: skip
        if job["reserved"] - job["settled"] - job["refunded"] - job["released"] != 0:
            f.unbalanced.append(job_id)

    def _check_posts(self, job: sqlite3.Row, interaction: FakeInteraction | None) -> None:
        """The clip is in the channel once, only for a delivered job, and never after "Nothing was charged"."""
        f, job_id, delivered = self.figures, int(job["id"]), job["status"] == "delivered"
        posts = sum(1 for m in self.discord.messages.values() if carries_clip(m, job_id))
        if posts > 1:
            f.posted_twice.append(job_id)
        if posts and not delivered:
            f.given_away.append(job_id)
        if delivered and told_privately(interaction):
            f.misled.append(job_id)

    def _trail(self, job_id: int, interaction: FakeInteraction | None) -> list[str]:
        receipt = interaction.original() if interaction is not None else None
        lines = [f"receipt: {receipt.content!r}"] if receipt is not None else []
        return lines + [summary(m) for m in self.discord.messages.values() if _about(m, job_id)]

    def _read_provider_tasks(self, jobs: list[sqlite3.Row]) -> None:
        """Every task created at a provider must belong to a job, except those of submits whose outcome the
        bot could not know (dropped, timed out, cut by a crash), and those jobs were refunded."""
        owned = {str(job["provider_task_id"]).rsplit(":", 1)[-1] for job in jobs if job["provider_task_id"]}
        created = {**{t: "wavespeed" for t in self.wavespeed.tasks}, **{t: "seaart" for t in self.seaart.tasks}}
        self.figures.provider_tasks = dict(Counter(created.values()))
        self.figures.orphan_tasks = sum(1 for task_id in created if task_id not in owned)
        self.figures.unknown_submits = sum(
            1 for job in jobs if job["tried_submit"] and not job["provider_task_id"] and job["status"] != "delivered"
        )

    def _read_commands(self) -> None:
        f = self.figures
        f.commands = len(self.interactions)
        for interaction in self.interactions:
            original = interaction.original()
            content = original.content if original is not None else ""
            if "accepted" in content:
                f.accepted += 1
            elif "restarting" in content:
                f.turned_away += 1
            elif "Nothing was charged" in content:
                f.apologised += 1
            elif not content:
                f.unacknowledged += 1


FAULTS: dict[str, Callable[[FaultRun, Fault], Awaitable[bool]]] = {
    name: getattr(FaultRun, f"_fault_{name}") for name in (*STEP_FAULTS, *STORAGE_FAULTS)
}


# ----- a data directory on its own file system ---------------------------------------------------------------


def mount_tmpfs(folder: Path, size: str) -> Path | None:
    """Mount a small tmpfs on `folder`, or None where this machine does not let the tests mount one (the
    disk and read-only faults are then reported as having had no target)."""
    folder.mkdir(parents=True, exist_ok=True)
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    return folder if made.returncode == 0 else None


def remount(folder: Path, mode: Literal["ro", "rw"]) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(folder)], check=True, capture_output=True)


def unmount(folder: Path) -> None:
    subprocess.run(["umount", "--lazy", str(folder)], check=False, capture_output=True)


def fill_until_full(filler: Path) -> None:
    """Write zeros until the file system refuses more (ENOSPC)."""
    chunk = bytes(1024 * 1024)
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(chunk)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        while chunk := chunk[: len(chunk) // 2]:  # and the last crumbs, so not even a page is left
            with contextlib.suppress(OSError):
                handle.write(chunk)
