"""`bot.py worker`: a process that carries generation jobs handed over by the gateway processes.

It needs no gateway connection: it logs in to Discord's REST API with the bot token (cards are edited and
clips posted with it, as after a restart) and takes jobs from the job engine (`engine/queue.py`), running
each from its stored state with the same resumable lifecycle a restart uses. Several workers share the
work; the jobs of one that dies are taken up by another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import datetime

import discord

from app import App, open_app
from bot import TOKEN_HELP, WRONG_TOKEN, StartupError, build_bot, point_discord_at
from cogs.client import HailuoBot
from core.clock import utcnow
from core.jobs import JobRecord, JobStatus
from services.poll_share import follow_poll_share
from settings import Settings

log = logging.getLogger("hailuo")

NOT_SEPARATE = "bot.py worker runs jobs handed over by gateway processes: set workers.separate = true (PostgreSQL)."
# A gateway reserves a job, edits the receipt and posts the card (each retried by discord.py for up to about
# 25 s when Discord fails), and only then hands the job over; when the card cannot be posted it refunds the
# job instead. Until its card is posted the job is its gateway's: the sweep for stray jobs leaves it alone
# this long after its last change (a worker running it while its gateway refunds it would leave it running
# forever, paid for at the provider and charged to no one). Then its gateway is taken to have stopped.
LAUNCH_GRACE_SECONDS = 60.0


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    token = settings.secrets.discord_token
    if token is None:
        raise StartupError(TOKEN_HELP)
    if not settings.config.workers.separate:
        raise StartupError(NOT_SEPARATE)
    point_discord_at(settings.secrets.discord_api_base, settings.secrets.discord_gateway_url)
    stop = stop or _signalled()
    async with open_app(settings, worker=True) as app:
        bot = build_bot(app, worker=True)
        try:
            try:
                await bot.login(token.get_secret_value())  # REST only; setup_hook prepares the reporters
            except discord.LoginFailure:
                raise StartupError(WRONG_TOKEN) from None
            app.readiness.up("discord")
            await carry_jobs(app, bot, stop)
        finally:
            await bot.close()


def launching(jobs: list[JobRecord], now: datetime) -> set[int]:
    """The jobs their gateway may still be launching: reserved, changed within LAUNCH_GRACE_SECONDS, and with
    no card yet, or in a set of variants one of which has none yet (a card that fails ends the whole set)."""
    recent = [
        job
        for job in jobs
        if job.status == JobStatus.RESERVED
        and (now - datetime.fromisoformat(job.updated_at)).total_seconds() < LAUNCH_GRACE_SECONDS
    ]
    sets = {job.set_card_id for job in recent if job.message_id is None and job.set_card_id is not None}
    return {job.id for job in recent if job.message_id is None or job.set_card_id in sets}


def _signalled() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def carry_jobs(app: App, bot: HailuoBot, stop: asyncio.Event) -> None:
    queue = app.queue
    assert queue is not None  # open_app opens it with workers.separate

    async def carry(job_id: int) -> None:
        job = await app.jobs.get(job_id)
        if job is None or job.terminal:
            return  # a second copy of a task, or a job that ended meanwhile
        await bot.learn_locale(job.guild_id)  # its card speaks the server's language
        reporter = bot.reporter_for(job)
        if reporter is None:
            log.warning("job %d: has no channel to report to; left for a bot process", job_id)
            return
        await app.jobs.run(job, reporter)

    async def hand_over_strays() -> None:
        """Unfinished jobs with no task waiting or running (reserved while no hand-over could be made: the
        database away for a moment, or by a gateway that stopped before it could) are handed over; those
        whose task a Cancel withdrew are ended. Jobs their gateway may still be launching are left to it."""
        unfinished: dict[int, JobRecord] = {}

        async def read_unfinished() -> list[int]:
            jobs = await app.store.unfinished()
            left_to_gateway = launching(jobs, utcnow())
            unfinished.update((job.id, job) for job in jobs if job.id not in left_to_gateway)
            return list(unfinished)

        strays = await queue.strays(read_unfinished)
        for job_id in strays.handed_over:
            log.info("job %d: found unfinished with no task; handed over", job_id)
        for job_id in strays.withdrawn:
            log.info("job %d: its task was withdrawn by a Cancel; ending it", job_id)
            await app.jobs.end_withdrawn(unfinished[job_id], bot.reporter_for)

    async def sweep_strays() -> None:
        while True:
            try:
                await hand_over_strays()
            except Exception as exc:  # the database away for a moment: the next round finds them
                log.warning("could not look for unfinished jobs without a task: %s", exc)
            await asyncio.sleep(app.settings.config.workers.stalled_after_seconds)

    async def cancel_here(job_id: int) -> str | None:
        outcome = await app.jobs.cancel_here(job_id)
        return None if outcome is None else outcome.value

    work = asyncio.create_task(
        queue.run_worker(carry, concurrency=app.settings.config.workers.concurrency), name="job-engine"
    )
    # Cancels from gateways, and callbacks their webhook receivers forward, for the jobs running here.
    cancels = asyncio.create_task(queue.serve(cancel_here, app.runner.wake), name="cancels-and-callbacks")
    strays = asyncio.create_task(sweep_strays(), name="strays")
    # Each worker polls at its share of every provider's budget, re-counted at each heartbeat round.
    share = asyncio.create_task(follow_poll_share(app.runner.crew, queue, queue.heartbeat_seconds), name="poll-share")
    stopping = asyncio.create_task(stop.wait(), name="stop")
    await asyncio.wait({work, cancels, strays, share, stopping}, return_when=asyncio.FIRST_COMPLETED)
    # The engine finishes the jobs this worker holds before `work` ends: until then their Cancels, callbacks
    # and poll share still reach them.
    for task in (stopping, strays, work, cancels, share):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
