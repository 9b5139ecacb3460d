"""What one running job carries between its steps (`JobRun`), and what every step shares (`Crew`).

The steps live in their own modules — `submitting` (submit with failover), `watching` (poll until the
task ends), `delivery` (download, fit, post, settle), `endings` (refunds and settles) — and
`lifecycle` runs them in order from whatever state a job is in. `runner` holds the running jobs.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from core.history import OutputRecords
from core.jobs import JobRecord
from core.metrics import NO_METRICS, Metrics
from core.store import JobStore
from services.outputs import OutputKeeper
from services.polling import PollPacer, PollPolicy
from services.pricing import PriceTable
from services.progress import CardUpdater, JobCard
from services.reporter import JobReporter
from services.routing import ProviderRouter


@dataclass(frozen=True)
class JobSettings:
    """The job lifecycle's settings, as plain values (the composition root reads them from config)."""

    data_dir: Path
    deadline_seconds: float = 900  # a job not finished this long after submit is abandoned and refunded
    max_output_bytes: int = 200 * 1024 * 1024
    typical_seconds: Mapping[str, float] = field(default_factory=dict)  # per provider, until there is history
    edit_interval: float = 2.0
    edits_per_second: float = 50.0
    poll_policy: PollPolicy = field(default_factory=PollPolicy)
    # Per provider, all jobs of the deployment together (each process that runs jobs paces its share).
    polls_per_second: Mapping[str, float] = field(default_factory=dict)
    # Moving 2–20 MB clips (download, probe, upload) mostly waits on sockets, and clips stream through
    # disk, so many can move at once: at 1,000 jobs in flight about 15 finish per second, and 8 slots
    # held ~0.6 s each made finished clips queue for 15 s (bench). Re-encodes are what burns CPU,
    # so they get their own, much smaller, limit.
    max_concurrent_deliveries: int = 32
    max_concurrent_reencodes: int = 2
    # A running job whose database write failed (locked, full, read-only) retries it after this many
    # seconds, doubling up to the maximum (services.patience).
    storage_retry_seconds: float = 0.25
    storage_retry_max_seconds: float = 15.0
    # Delivered clips (and their thumbnails) kept under outputs/ for /show: this many days, within this
    # many bytes, the oldest deleted first when over (services.outputs). 0 keeps none.
    keep_outputs_days: float = 30
    max_outputs_bytes: int = 5 * 1024**3
    # With workers, several processes share the data directory: each keeps its temporary files apart.
    process_tag: str = ""

    @property
    def inputs_dir(self) -> Path:
        return self.data_dir / "inputs"

    @property
    def tmp_root(self) -> Path:
        return self.data_dir / "tmp"

    @property
    def tmp_dir(self) -> Path:
        """This process's temporary files: its own folder when several processes share the data directory."""
        return self.tmp_root / self.process_tag

    @property
    def outputs_dir(self) -> Path:
        return self.data_dir / "outputs"


@dataclass
class JobRun:
    """One running job: its record, where it shows itself, and the flags other tasks read."""

    job: JobRecord
    reporter: JobReporter
    card: JobCard
    updater: CardUpdater
    began: float = field(default_factory=time.monotonic)
    task_id: str | None = None
    submitting: bool = False
    ending: bool = False  # refunded or cancelled, its final card on its way
    cancel_requested: bool = False
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    # When a verified callback last woke the job (time.monotonic()): the notice delay is measured from it.
    woken_by_callback_at: float | None = None

    async def sleep(self, seconds: float) -> None:
        """Sleep until the next poll, or until a webhook or a cancel wakes the job up.

        A timer that sets the event, not `wait_for`: that spawned a task and raised (and dropped) a
        TimeoutError at every poll, and those cycles of frames and tracebacks were most of what the
        garbage collector had to chase with 1,000 jobs in flight."""
        timer = asyncio.get_running_loop().call_later(seconds, self.wakeup.set)
        try:
            await self.wakeup.wait()
        finally:
            timer.cancel()
        self.wakeup.clear()


class Crew:
    """What every step of every job shares: the store, the providers, prices, settings, and the budgets
    that all jobs draw on (poll pacing per provider, delivery and re-encode slots)."""

    def __init__(
        self,
        store: JobStore,
        router: ProviderRouter,
        prices: PriceTable,
        settings: JobSettings,
        *,
        callbacks_live: Callable[[str], bool] = lambda provider: False,
        output_records: OutputRecords | None = None,
        verdicts: Callable[[JobRecord], Awaitable[None]] | None = None,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.store = store
        self.metrics = metrics  # what an operator's dashboard hears (notice delays, from `watching`)
        # Told of each job a provider's moderation blocked (services.moderation counts the strikes).
        self.verdicts = verdicts
        self.router = router
        self.prices = prices
        self.settings = settings
        # Whether a provider's callbacks reach the bot now (a public URL, a provider that can verify
        # them, and its secret loaded): only then is polling just the slow safety net.
        self.callbacks_live = callbacks_live
        # One pacer per provider with a poll budget: shared by all its jobs (see PollPacer), and pacing the
        # whole budget until told of other processes running jobs (`share_poll_budget`).
        self.pacers = {name: PollPacer(rate) for name, rate in settings.polls_per_second.items()}
        for name, rate in settings.polls_per_second.items():
            metrics.poll_budget(name, rate)
        self.delivery_slots = asyncio.Semaphore(settings.max_concurrent_deliveries)
        self.reencode_slots = asyncio.Semaphore(settings.max_concurrent_reencodes)
        # Where delivered clips are kept for /show (None: nowhere to list them, so none are kept).
        self.outputs = (
            OutputKeeper(
                settings.outputs_dir,
                output_records,
                keep_days=settings.keep_outputs_days,
                max_bytes=settings.max_outputs_bytes,
                slots=self.reencode_slots,
            )
            if output_records is not None
            else None
        )

    def share_poll_budget(self, processes: int) -> None:
        """Pace this process to an equal share of each provider's budget, `processes` processes running jobs
        (at least this one). The budget is the provider's limit for the whole deployment."""
        processes = max(processes, 1)
        for name, pacer in self.pacers.items():
            share = self.settings.polls_per_second[name] / processes
            if not math.isclose(share, pacer.per_second):
                pacer.set_rate(share)
                self.metrics.poll_budget(name, share)

    async def wait_for_poll_budget(self, provider: str, until: float) -> None:
        """Wait for the provider's next free poll slot, but never past `until` (wall clock: the job's
        deadline), so a budget far behind cannot keep a job polling past its deadline."""
        pacer = self.pacers.get(provider)
        if pacer is not None and (delay := pacer.reserve(time.monotonic())) > 0:
            await asyncio.sleep(min(delay, max(until - time.time(), 0.0)))
