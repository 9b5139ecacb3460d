"""The bot's processes in a fault-injection run, and how a stop is played on them.

A run's *cast* is the set of processes it starts, signals and starts again: `SingleBot` here (SQLite: one
`bot.py` answers commands and runs every job), `GatewayAndWorkers` in tests/faults/pg_mode.py
(PostgreSQL: a gateway hands jobs to `bot.py worker` processes). The run talks to either through `Cast`,
and the cast talks back through `Stage` (the run's stand-ins, database view, figures and commands).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Collection
from pathlib import Path
from typing import Protocol

from tests.fakes.discord_server import FakeDiscord, FakeInteraction
from tests.faults.database import DatabaseView
from tests.faults.figures import Figures
from tests.faults.plan import JobRequest, Stop
from tests.faults.seen import card_of

ROOT = Path(__file__).resolve().parents[2]
TERM_LIMIT_S = 10.0  # the bot promises to exit within this after SIGTERM
START_LIMIT_S = 60.0  # a start on this loaded machine: imports, migrations, a gateway session


class BotProcess:
    """`python bot.py [args]` in the repository, its output in one log file per start (a file, not a pipe: a
    full pipe would stall the bot), named `<name>-<start>.log`."""

    def __init__(self, env: dict[str, str], logs: Path, name: str = "bot", args: tuple[str, ...] = ()) -> None:
        self.env = env
        self.logs = logs
        self.name = name
        self.args = args
        self.starts = 0
        self.proc: asyncio.subprocess.Process | None = None
        self.killed: list[int] = []  # the pids this ended with SIGKILL

    @property
    def log_path(self) -> Path:
        return self.logs / f"{self.name}-{self.starts}.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        self.starts += 1
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "bot.py", *self.args, cwd=ROOT, env=self.env, stdin=asyncio.subprocess.DEVNULL,
                stdout=log, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip

    async def kill(self) -> None:
        if self.proc is not None and self.running:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.killed.append(self.proc.pid)
            await self.proc.wait()

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    async def wait_exit(self, timeout: float) -> int | None:
        """The exit code, or None (and a SIGKILL) when the process did not exit in time."""
        assert self.proc is not None
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            await self.kill()
            return None

    def log_lines(self) -> list[str]:
        lines: list[str] = []
        for path in sorted(self.logs.glob(f"{self.name}-*.log"), key=lambda p: int(p.stem.rsplit("-", 1)[1])):
            lines += path.read_text(errors="replace").splitlines()
        return lines

    def log_tail(self, count: int = 40) -> str:
        return "\n".join(self.log_lines()[-count:])


class Stage(Protocol):
    """What a cast needs from the run."""

    @property
    def discord(self) -> FakeDiscord: ...

    @property
    def db(self) -> DatabaseView: ...

    @property
    def figures(self) -> Figures: ...

    def note(self, event: str) -> None: ...

    async def send(self, request: JobRequest) -> FakeInteraction | None: ...

    async def catch(self, step: Stop) -> bool: ...

    def spawn(self, work: Awaitable[None]) -> None: ...


class Cast(Protocol):
    """The processes of a run, as the run plays its plan on them."""

    processes: list[BotProcess]

    async def start(self) -> None:
        """Start every process and wait until each can take its part."""

    def check_alive(self) -> None:
        """Raise RuntimeError, with its log, when a process that should be running has exited on its own."""

    async def stop(self, step: Stop) -> None:
        """Catch a job in the step's state (`Stage.catch`), signal the step's target, and start it again after
        the step's downtime (in the background, through `Stage.spawn`, when the run can go on meanwhile)."""

    async def final_stop(self) -> None:
        """SIGTERM every process at the end of the run; a bad exit is a term failure."""


def check_alive(processes: list[BotProcess], down: Collection[str] = ()) -> None:
    """RuntimeError when a process exited on its own (those named in `down` were stopped on purpose)."""
    for process in processes:
        if process.name not in down and not process.running:
            raise RuntimeError(f"{process.name} exited on its own:\n{process.log_tail()}")


async def start_gateway(discord: FakeDiscord, process: BotProcess) -> None:
    """Start a process that holds the gateway and wait for its new session (jobs found unfinished resume
    before that)."""
    before = discord.ready_count
    await process.start()
    loop = asyncio.get_running_loop()
    give_up = loop.time() + START_LIMIT_S
    while discord.ready_count <= before:
        if not process.running:
            raise RuntimeError(f"{process.name} exited while starting:\n{process.log_tail()}")
        if loop.time() > give_up:
            raise TimeoutError(f"{process.name} did not connect within {START_LIMIT_S:.0f} s:\n{process.log_tail()}")
        await asyncio.sleep(0.05)
    await discord.wait_ready(timeout=30)


async def terminate_in_time(stage: Stage, process: BotProcess, late: JobRequest | None) -> None:
    """SIGTERM a process that answers commands: it must turn new ones away and exit (0) within TERM_LIMIT_S."""
    signalled = time.monotonic()
    process.terminate()
    if late is not None:  # at once: it races the process's handling of the signal
        await stage.send(late)
    code = await process.wait_exit(timeout=TERM_LIMIT_S + 20)
    took = time.monotonic() - signalled
    stage.figures.terms.append(took)
    if code is None or took > TERM_LIMIT_S or code != 0:
        stage.figures.term_failures.append(
            f"SIGTERM {process.name}: exit code {code} after {took:.1f} s (limit {TERM_LIMIT_S} s)"
        )


async def final_stop(figures: Figures, processes: list[BotProcess], limit_s: float = TERM_LIMIT_S + 20) -> None:
    """SIGTERM each running process together; each must exit with code 0."""
    running = [process for process in processes if process.running]
    for process in running:
        process.terminate()
    codes = await asyncio.gather(*(process.wait_exit(timeout=limit_s) for process in running))
    for process, code in zip(running, codes, strict=True):
        if code != 0:
            figures.term_failures.append(f"final SIGTERM of {process.name}: exit code {code}")


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


def tune_bot_section(config: Path, *, log_level: str, max_output_mib: int) -> None:
    """Settings the harness template has no slot for, set on its `[bot]` log_level line. INFO: one line per
    job state change is what a failed run needs; DEBUG (every SQL statement and gateway frame) would cost
    this loaded machine more than the bot's own work."""
    text = config.read_text(encoding="utf-8")
    line = 'log_level = "DEBUG"'
    assert line in text, "the harness config template changed: update tune_bot_section"
    tuned = f'log_level = "{log_level}"\nmax_output_mib = {max_output_mib}'
    config.write_text(text.replace(line, tuned), encoding="utf-8")


class SingleBot:
    """SQLite mode: one `bot.py` answers commands and runs every job, so a stop takes all of it down and the
    next start resumes every unfinished job."""

    def __init__(self, stage: Stage, env: dict[str, str], logs: Path) -> None:
        self.stage = stage
        self.bot = BotProcess(env, logs)
        self.processes = [self.bot]

    async def start(self) -> None:
        await start_gateway(self.stage.discord, self.bot)

    def check_alive(self) -> None:
        check_alive(self.processes)

    async def stop(self, step: Stop) -> None:
        await self.stage.catch(step)
        if step.signal == "KILL":
            await self.bot.kill()
            self.stage.figures.kills += 1
        else:
            await self._terminate(step.late)
        await asyncio.sleep(step.downtime)
        await self.start()
        self.stage.note("bot connected again")

    async def _terminate(self, late: JobRequest | None) -> None:
        """SIGTERM: the bot must tell the users of running jobs, turn new commands away and exit in 10 s."""
        in_flight = self.stage.db.statuses()
        await terminate_in_time(self.stage, self.bot, late)
        figures = self.stage.figures
        told, total = figures.restart_notices
        still = sorted(set(self.stage.db.statuses()) & set(in_flight))
        untold = [job_id for job_id in still if not self._card_mentions(job_id, "restarting")]
        figures.untold += [f"#{job_id} ({in_flight[job_id]})" for job_id in untold]
        figures.restart_notices = (told + len(still) - len(untold), total + len(still))

    def _card_mentions(self, job_id: int, text: str) -> bool:
        return any(
            (card := card_of(m)) is not None and card[1] == job_id and text in str(m.embeds[0].get("description"))
            for m in self.stage.discord.messages.values()
        )

    async def final_stop(self) -> None:
        await final_stop(self.stage.figures, self.processes)
