"""Fault injection against the real bot: `bot.py` as child processes, real sockets, a real database and ffmpeg.

`FaultRun` starts the bot pointed at stand-ins that run in the caller's event loop (FakeDiscord, and
FakeWaveSpeed and FakeSeaArt each behind a TCP gate), sends it jobs from several users in bursts, and
injects faults at points chosen by a seeded `random.Random` (tests/faults/plan.py): providers refusing
connections, failing, rate-limiting or answering garbage, tasks that never finish, outputs that 404, crawl,
are too large or are not videos, ambiguous submits, failover, Discord rate limits and 5xx, deleted job
cards, refused uploads, expired tokens, gateway reconnects, a failed receipt, and the bot's processes
stopped with SIGTERM or killed with SIGKILL and started again.

Two casts of processes (tests/faults/processes.py): on SQLite one `bot.py` does everything; in worker mode
(`RunSize.workers`, tests/faults/pg_mode.py) a gateway and `bot.py worker` processes share the test's
PostgreSQL, and a stop hits the gateway or one worker. In storage-fault mode (SQLite,
`RunSize.storage_faults`, tests/faults/storage_faults.py) the database is sick too.

Then it waits for every job to end and checks the promise (tests/faults/audit.py, the same queries on
either database): each job delivered or refunded and the user shown which, nothing charged or posted
twice, no one charged after being told otherwise, the ledger balanced, no provider task without its job,
no temporary file left.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path

from tests.e2e.harness import write_config
from tests.fakes.discord_server import FakeInteraction
from tests.fakes.seaart_server import FakeSeaArt
from tests.fakes.wavespeed_server import FakeWaveSpeed
from tests.faults.audit import Audit
from tests.faults.database import DatabaseView, PostgresView, SqliteView
from tests.faults.figures import Figures
from tests.faults.pg_mode import WORKERS_CONFIG, GatewayAndWorkers
from tests.faults.plan import (
    MAX_OUTPUT_MIB,
    STEP_FAULTS,
    STORAGE_FAULTS,
    Burst,
    Fault,
    JobRequest,
    RunSize,
    Step,
    Stop,
    describe,
    make_plan,
)
from tests.faults.processes import Cast, SingleBot, bot_environment, tune_bot_section
from tests.faults.seen import card_of
from tests.faults.standins import ProviderGate, UploadRefusingDiscord, jpeg
from tests.faults.storage_faults import DATA_TMPFS_SIZE, StorageFaults, mount_tmpfs, unmount

ROLE_ID = 777_000_000_000_000_001  # the role whose quota override lets every job through
SETTLE_S = 20.0  # after every job ended, how long the last cards may take to land


class FaultRun(StorageFaults):
    """One run: stand-ins up, the bot's processes started, the plan played, every job waited for, the
    promise checked. `database_url` (PostgreSQL) is required in worker mode and used only there."""

    def __init__(
        self, workdir: Path, size: RunSize, seed: int, *, plan: list[Step] | None = None, database_url: str = ""
    ) -> None:
        assert not size.workers or database_url, "worker mode runs on PostgreSQL: pass database_url"
        assert not (size.workers and size.storage_faults), "storage faults are SQLite's"
        self.workdir = workdir
        self.size = size
        self.seed = seed
        self.database_url = database_url if size.workers else ""
        self.plan = plan if plan is not None else make_plan(size, random.Random(seed))
        self.figures = Figures(seed, size, workdir=workdir)
        self.discord = UploadRefusingDiscord(ack_deadline=10.0)  # a loaded machine must not miss the 3 s
        self.wavespeed = FakeWaveSpeed(duration_s=1.0)
        self.seaart = FakeSeaArt(duration_s=1.0)
        self.db: DatabaseView = (
            PostgresView(self.database_url) if self.database_url else SqliteView(workdir / "data" / "hailuo.db")
        )
        self.audit = Audit(self.figures, self.db, self.discord)
        self.interactions: list[FakeInteraction] = []
        self.task_faults: dict[int, str] = {}  # id(Scenario) -> its TASK_FAULTS name
        self._background: set[asyncio.Task[None]] = set()
        self._image = jpeg()
        self.trace: list[str] = []
        self.cast: Cast
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
                await self.cast.final_stop()
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
            stack.callback(self.db.close)
            self.cast = self._cast(self._environment())
            for process in self.cast.processes:
                stack.push_async_callback(process.kill)
            # First on the way out: a worker's stop in the background could otherwise start it after its kill.
            stack.push_async_callback(self._cancel_background)
            await self.cast.start()
            yield

    def _cast(self, env: dict[str, str]) -> Cast:
        if not self.size.workers:
            return SingleBot(self, env, self.workdir)
        env = env | {"DATABASE_URL": self.database_url}
        return GatewayAndWorkers(self, env, self.workdir, count=self.size.workers, deadline_s=self.size.deadline_s)

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
        if self.size.workers:
            unlimited += "\n" + WORKERS_CONFIG
        config = write_config(
            self.workdir, deadline=self.size.deadline_s, order=order, wavespeed_url=self.wavespeed_gate.url,
            provider_sections=seaart, daily_videos=1000000, daily_usd="100000.00", extra=unlimited,
        )  # fmt: skip
        tune_bot_section(config, log_level="INFO", max_output_mib=MAX_OUTPUT_MIB)
        keys = {"WAVESPEED_API_KEY": self.wavespeed.api_key, "SEAART_API_KEY": self.seaart.api_key}
        return bot_environment(config, self.discord, keys)

    def spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _cancel_background(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    # ----- playing the plan ------------------------------------------------------------------------------

    async def _play(self, step: Step) -> None:
        self.cast.check_alive()
        if isinstance(step, Burst):
            for gap, request in zip(step.gaps, step.requests, strict=True):
                await asyncio.sleep(gap)
                await self.send(request)
        elif isinstance(step, Fault):
            applied = await FAULTS[step.name](self, step)
            self.figures.faults[step.name if applied else f"{step.name} (no target)"] += 1
        elif isinstance(step, Stop):
            await self.cast.stop(step)
        else:
            await asyncio.sleep(step.seconds)

    async def send(self, request: JobRequest) -> FakeInteraction | None:
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

    async def catch(self, step: Stop) -> bool:
        """Start the stop's trigger job and wait (briefly) until some job is in the stop's state; whether one
        was seen. The cast calls this when it is about to signal."""
        if step.at_state == "submitting":  # a submit that takes 2.5 s (within the 5 s timeout) to catch
            self.wavespeed.slow_next_submit(2.5)
            self.seaart.slow_next_submit(2.5)
        newest = self.db.newest_job()
        await self.send(step.trigger)
        if step.at_state == "reserved":  # passed through in milliseconds: catch the trigger's job as it appears
            caught = await self._wait_for(lambda: self.db.newest_job() > newest, timeout=8.0)
        else:
            caught = await self._wait_for(lambda: self.db.any_in(step.at_state), timeout=8.0)
        whom = "" if step.target == "bot" else f" {step.target}"
        self.figures.faults[f"SIG{step.signal}{whom} at {step.at_state}{'' if caught else ' (not seen in 8 s)'}"] += 1
        self.note(f"SIG{step.signal}{whom} ({step.at_state} {'seen' if caught else 'not seen'})")
        return caught

    @staticmethod
    async def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        while loop.time() < give_up:
            if condition():
                return True
            await asyncio.sleep(0.01)
        return False

    # ----- faults ----------------------------------------------------------------------------------------

    async def _fault_wavespeed_refused(self, step: Fault) -> bool:
        self.spawn(self.wavespeed_gate.outage(step.seconds))
        return True

    async def _fault_seaart_refused(self, step: Fault) -> bool:
        self.spawn(self.seaart_gate.outage(step.seconds))
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
        interaction = await self.send(step.request)
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

    # ----- ending ----------------------------------------------------------------------------------------

    async def _wait_until_all_ended(self) -> None:
        """Every job terminal, then every user shown the outcome (a failure card follows the refund row)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.size.deadline_s + 45  # a job still running then is stuck
        while self.db.unfinished() and loop.time() < give_up:
            self.cast.check_alive()
            await asyncio.sleep(0.25)
        settle_by = loop.time() + SETTLE_S
        while self.audit.unseen() and loop.time() < settle_by:  # noqa: ASYNC110 (a bounded look at another process)
            await asyncio.sleep(0.25)

    def _read_figures(self) -> None:
        self.audit.read(
            interactions=self.interactions,
            tmp_root=self.workdir / "data" / "tmp",
            killed_tags={f"{socket.gethostname()}-{pid}" for process in self.cast.processes for pid in process.killed},
            log_lines=[line for process in self.cast.processes for line in process.log_lines()],
            providers=(self.wavespeed, self.seaart),
            task_faults=self.task_faults,
        )


FAULTS: dict[str, Callable[[FaultRun, Fault], Awaitable[bool]]] = {
    name: getattr(FaultRun, f"_fault_{name}") for name in (*STEP_FAULTS, *STORAGE_FAULTS)
}
