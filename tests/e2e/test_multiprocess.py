"""Several processes, end to end, as compose.yaml runs them: two gateway processes (`bot.py run --shard-ids 0`
and `--shard-ids 1`, shard_count 2) and two `bot.py worker` processes, all on one config.toml and the test
session's PostgreSQL, against the Discord stand-in (which sends each server's commands to its shard's
connection only, as Discord does) and the WaveSpeed and SeaArt stand-ins. A /video from a server on each
shard is answered by the gateway holding that shard and delivered by a worker; Cancel pressed on a card
in shard 0's server is answered by gateway 0 and stops the job on whichever worker runs it, refunded.
Every process is a real `python bot.py`, stopped with SIGTERM at the end (killed if it does not stop)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from psycopg.rows import dict_row

from settings import Secrets
from tests.e2e.harness import free_port, write_config
from tests.e2e.test_generation_flows import cards, finished
from tests.e2e.test_ops import healthz
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.seaart_server import FakeSeaArt
from tests.fakes.wavespeed_server import FakeWaveSpeed

ROOT = Path(__file__).resolve().parents[2]
WORKERS = "[workers]\nseparate = true\nheartbeat_seconds = 0.5\nstalled_after_seconds = 2\n"
# Generous: four Python processes start at once on a busy 2-core machine.
START_TIMEOUT = 60
JOB_TIMEOUT = 60
# Each job's money: reserved, and how it ended (settled, refunded).
LEDGER = """SELECT j.id, j.guild_id, j.status, j.cost_micros, j.provider, j.provider_task_id,
                   COALESCE(SUM(l.amount_micros) FILTER (WHERE l.kind = 'reserve'), 0) AS reserved,
                   COALESCE(SUM(l.amount_micros) FILTER (WHERE l.kind = 'settle'), 0) AS settled,
                   COALESCE(SUM(l.amount_micros) FILTER (WHERE l.kind = 'refund'), 0) AS refunded
            FROM jobs j LEFT JOIN ledger l ON l.job_id = j.id GROUP BY j.id ORDER BY j.id"""


@dataclass
class BotProcess:
    name: str
    process: asyncio.subprocess.Process
    log: Path
    ops_port: int

    def said(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    async def wait_healthy(self, timeout: float) -> None:
        """Until its /healthz says ready (a state); fails at once, with its log, if the process ends."""
        async with asyncio.timeout(timeout):
            while True:
                if self.process.returncode is not None:
                    raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.said()[-3000:]}")
                with contextlib.suppress(aiohttp.ClientError):  # not listening yet
                    if (await healthz(self.ops_port))[0] == 200:
                        return
                await asyncio.sleep(0.1)


async def jobs(database_url: str) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row) as conn:
        return await (await conn.execute(LEDGER)).fetchall()


async def wait_for_jobs(database_url: str, condition: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    """The jobs table (with each job's money), once it meets `condition`: a state, never a time."""
    async with asyncio.timeout(JOB_TIMEOUT):
        while True:
            rows = await jobs(database_url)
            if condition(rows):
                return rows
            await asyncio.sleep(0.1)


def process_env(fake: FakeDiscord, database_url: str, config: Path) -> dict[str, str]:
    """This environment without any of the bot's secrets, then the stand-ins' (as compose's .env would)."""
    env = {key: value for key, value in os.environ.items() if key.lower() not in Secrets.model_fields}
    return env | {
        "HAILUO_CONFIG": str(config),
        "DATABASE_URL": database_url,
        "DISCORD_TOKEN": fake.bot_token,
        "DISCORD_API_BASE": fake.base_url,
        "DISCORD_GATEWAY_URL": fake.gateway_url,
        "WAVESPEED_API_KEY": "ws-test-key",
        "SEAART_API_KEY": "sa-test-key",
    }


@contextlib.asynccontextmanager
async def deployment(tmp_path: Path, env: dict[str, str]) -> AsyncIterator[dict[str, BotProcess]]:
    """compose.yaml's four bot processes on this machine (each its own --ops-port); all stopped on the way out,
    whatever happened: SIGTERM, then SIGKILL for one still running after 30 s."""
    commands = {
        "gateway-0": ["run", "--shard-ids", "0", "--edits-per-second", "5"],
        "gateway-1": ["run", "--shard-ids", "1", "--edits-per-second", "5"],
        "worker-1": ["worker", "--edits-per-second", "20"],
        "worker-2": ["worker", "--edits-per-second", "20"],
    }
    running: dict[str, BotProcess] = {}
    try:
        for name, args in commands.items():
            port = free_port()
            log = tmp_path / f"{name}.log"
            with log.open("wb") as out:  # the child keeps its own copy of the descriptor
                process = await asyncio.create_subprocess_exec(
                    sys.executable, str(ROOT / "bot.py"), *args, "--ops-port", str(port),
                    env=env, cwd=tmp_path, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                )  # fmt: skip
            running[name] = BotProcess(name, process, log, port)
        yield running
    finally:
        for bot in running.values():
            if bot.process.returncode is None:
                bot.process.send_signal(signal.SIGTERM)
        for bot in running.values():
            try:
                await asyncio.wait_for(bot.process.wait(), 30)
            except TimeoutError:
                bot.process.kill()
                await bot.process.wait()


async def test_two_gateways_on_two_shards_and_two_workers(
    tmp_path: Path, discord_fake: FakeDiscord, pg_url: str
) -> None:
    fake = discord_fake
    on_zero, on_one = fake.guild_on_shard(0, 2), fake.guild_on_shard(1, 2)
    pinned = fake.guild_on_shard(0, 2)  # its jobs go to SeaArt, which can cancel a started task
    async with FakeWaveSpeed("ws-test-key", duration_s=0.6) as wavespeed, FakeSeaArt(duration_s=600) as seaart:
        seaart_section = f'\n[providers.seaart]\nbase_url = "{seaart.base_url}"\ntimeout = 5\ntypical_seconds = 2\n'
        config = write_config(
            tmp_path,
            order='["wavespeed", "seaart"]',
            wavespeed_url=wavespeed.base_url,
            provider_sections=seaart_section,
            bot_extra="shard_count = 2",
            extra=f'{WORKERS}\n[guilds."{pinned}"]\nproviders = ["seaart"]\n',
        )
        async with deployment(tmp_path, process_env(fake, pg_url, config)) as bots:
            await asyncio.gather(*(bot.wait_healthy(START_TIMEOUT) for bot in bots.values()))
            await fake.wait_shards([0, 1], timeout=START_TIMEOUT)
            assert sorted(tuple(identify["shard"]) for identify in fake.identifies) == [(0, 2), (1, 2)]
            said = f"this process: --shard-ids 0 --edits-per-second 5 --ops-port {bots['gateway-0'].ops_port}"
            assert said in bots["gateway-0"].said(), "the flags set this process's shard, share and port"

            await a_video_from_each_shard_is_delivered(fake, pg_url, bots, {0: on_zero, 1: on_one})
            await cancel_on_shard_0_stops_the_job_on_its_worker(fake, pg_url, bots, seaart, pinned)

            # The ledger balances: every job settled at its cost or refunded whole, nothing left reserved.
            for row in await jobs(pg_url):
                assert row["reserved"] == row["settled"] + row["refunded"], row
                assert row["settled"] == (row["cost_micros"] if row["status"] == "delivered" else 0), row
        # SIGTERM: each process stopped by itself, gracefully.
        assert {name: bot.process.returncode for name, bot in bots.items()} == dict.fromkeys(bots, 0)


async def a_video_from_each_shard_is_delivered(
    fake: FakeDiscord, pg_url: str, bots: dict[str, BotProcess], guilds: dict[int, int]
) -> None:
    """A /video from a server on each shard: reserved by the gateway holding that shard (the stand-in sends
    it there only), run and delivered by one worker, settled at its price."""
    for user, guild in ((2001, guilds[0]), (2002, guilds[1])):
        command = await fake.invoke("video", {"prompt": f"a lighthouse for {guild}"}, guild_id=guild, user_id=user)
        await command.wait_acked(timeout=30)
    rows = await wait_for_jobs(pg_url, lambda rows: len(rows) == 2 and all(r["status"] == "delivered" for r in rows))
    await fake.wait_until(lambda: len(finished(fake)) == 2, timeout=JOB_TIMEOUT)
    job_of = {row["guild_id"]: row["id"] for row in rows}
    gateways, workers = [bots["gateway-0"], bots["gateway-1"]], [bots["worker-1"], bots["worker-2"]]
    for shard, gateway in enumerate(gateways):
        mine, other = job_of[guilds[shard]], job_of[guilds[1 - shard]]
        assert f"job {mine}: reserved" in gateway.said(), gateway.name
        assert f"job {other}: reserved" not in gateway.said(), f"{gateway.name} took the other shard's command"
    for job_id in job_of.values():
        assert not any(f"job {job_id}: delivered" in gateway.said() for gateway in gateways), "a gateway runs none"
        assert sum(f"job {job_id}: delivered" in worker.said() for worker in workers) == 1, "one worker delivered it"
    assert all(r["settled"] == r["reserved"] == r["cost_micros"] == 280_000 and not r["refunded"] for r in rows)


async def cancel_on_shard_0_stops_the_job_on_its_worker(
    fake: FakeDiscord, pg_url: str, bots: dict[str, BotProcess], seaart: FakeSeaArt, guild: int
) -> None:
    """A long SeaArt job from shard 0's server, running on a worker: Cancel pressed on its card (the
    stand-in sends the press to shard 0) is answered by gateway 0, and the worker running the job cancels it
    at SeaArt and refunds it once SeaArt confirms."""
    command = await fake.invoke("video", {"prompt": "a slow tide"}, guild_id=guild, user_id=2003)
    await command.wait_acked(timeout=30)
    rows = await wait_for_jobs(pg_url, lambda rows: len(rows) == 3 and rows[2]["provider_task_id"] is not None)
    job_id, button = rows[2]["id"], f"hailuo:cancel:{rows[2]['id']}"
    await fake.wait_until(lambda: any(button in m.custom_ids() for m in cards(fake)), timeout=JOB_TIMEOUT)
    card = next(m for m in cards(fake) if button in m.custom_ids())
    click = await fake.click(card.id, button, user_id=2003)
    await click.wait_acked(timeout=30)
    await fake.wait_until(lambda: (reply := click.original()) is not None and reply.content != "", timeout=30)
    assert click.original().content.startswith("Cancel requested."), click.original().content
    cancelled = (await wait_for_jobs(pg_url, lambda rows: rows[2]["status"] == "cancelled"))[2]
    [asked] = seaart.cancel_requests  # once, for this task (stored as "endpoint:request id")
    assert cancelled["provider"] == "seaart" and cancelled["provider_task_id"].endswith(f":{asked}")
    assert (cancelled["reserved"], cancelled["refunded"], cancelled["settled"]) == (280_000, 280_000, 0)
    assert f"job {job_id}: cancel by user 2003: requested" in bots["gateway-0"].said()
    assert f"job {job_id}: cancel by user" not in bots["gateway-1"].said()
    workers = [bots["worker-1"], bots["worker-2"]]
    assert sum(f"job {job_id}: cancel accepted by seaart" in worker.said() for worker in workers) == 1
