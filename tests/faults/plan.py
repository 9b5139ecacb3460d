"""The plan of a fault-injection run: bursts of jobs, with faults and process stops scattered between them.

Every random choice is made here, from one seeded `random.Random`, so the seed alone fixes the plan (the
jobs, the faults and their order); the exact interleaving still depends on timing, so a replay repeats the
same run, not the same microsecond.
"""

from __future__ import annotations

import itertools
import os
import random
from dataclasses import dataclass, field, replace
from typing import Literal

SEED_ENV = "HAILUO_FAULT_SEED"
USERS = (5001, 5002, 5003, 5004, 5005)
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
MAX_OUTPUT_MIB = 1  # bot.max_output_mib: the stand-in's clips are ~7 KB, "output_too_big" is just over
CRASH_STATES = ("reserved", "submitting", "running", "downloading", "posting")
# The states in which a worker holds a job (a reserved job waits in the engine's queue, held by no one).
HELD_STATES = ("submitting", "running", "downloading", "posting")
# How long a stopped process stays down in worker mode. A worker longer than `stalled_after_seconds` (2 s in
# these runs) often, so that both ways back are taken: the other worker takes its jobs over, or it comes
# back first and takes them itself.
DOWNTIME_S = {"gateway": (0.5, 3.0), "worker": (0.5, 5.0)}

Signal = Literal["KILL", "TERM"]
Target = Literal["bot", "gateway", "worker"]  # "bot": the one process of SQLite mode


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
    # Worker mode: 0 runs one bot process on SQLite; N runs a gateway and N workers on PostgreSQL, where
    # `kills` and `terms` stop the gateway and these stop a worker.
    workers: int = 0
    worker_kills: int = 0
    worker_terms: int = 0


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
    target: Target = "bot"


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
    front: Target = "gateway" if size.workers else "bot"
    kill: Signal = "KILL"
    term: Signal = "TERM"
    worker: Target = "worker"
    stops = [(kill, front)] * size.kills + [(term, front)] * size.terms
    stops += [(kill, worker)] * size.worker_kills + [(term, worker)] * size.worker_terms
    rng.shuffle(stops)
    for sig, target in stops:
        slots[rng.randrange(1, size.bursts + 1)].append(_stop(sig, rng, target))
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


def _stop(sig: Signal, rng: random.Random, target: Target = "bot") -> Stop:
    state = rng.choice(HELD_STATES if target == "worker" else CRASH_STATES)
    # Widen the window of the state to catch: a slow download, or an upload that must be re-encoded.
    extra: dict[str, object] = {"output_delay": 3.0} if state == "downloading" else {}
    trigger = _job_request(rng, **extra)
    if state == "posting":
        trigger = replace(trigger, upload_limit=SMALL_UPLOAD_LIMIT)
    late = _job_request(rng) if sig == "TERM" and rng.random() < 0.7 else None
    downtime = rng.uniform(0.2, 2.0) if target == "bot" else rng.uniform(*DOWNTIME_S[target])
    return Stop(sig, state, trigger, round(downtime, 2), late, target)


def describe(step: Step) -> str:
    if isinstance(step, Burst):
        jobs = ", ".join(f"/{r.command}({r.task}{', small upload' if r.upload_limit else ''})" for r in step.requests)
        return f"burst of {len(step.requests)}: {jobs}"
    if isinstance(step, Fault):
        return f"fault {step.name} (n={step.n}, {step.seconds} s, code {step.code}, pick {step.pick:.2f})"
    if isinstance(step, Stop):
        late = ", one command right after" if step.late else ""
        whom = "" if step.target == "bot" else f" {step.target}"
        return f"SIG{step.signal}{whom} at '{step.at_state}', down {step.downtime} s{late}"
    return f"pause {step.seconds} s"


def seed_from_environment(default: int | None = None) -> int:
    """The seed to replay (HAILUO_FAULT_SEED), else `default`, else a fresh random one."""
    value = os.environ.get(SEED_ENV, "").strip()
    if value:
        return int(value)
    return default if default is not None else random.SystemRandom().randrange(1, 2**31)
