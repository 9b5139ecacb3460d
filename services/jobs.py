"""The job API adapters use (the Discord cogs, the terminal): create, start, attach the card, get,
the spec for a re-roll, cancel, and what is on offer. Nothing else of the lifecycle leaks out: the
store, the router and the running tasks stay behind it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

from core.admin import AdminStore
from core.errors import UserError
from core.handoff import JobHandoff
from core.history import OutputRecords
from core.jobs import JobRecord, JobStatus, ParentKind
from core.metrics import NO_METRICS, Metrics
from core.spec import DURATIONS, QUALITIES_BY_MODEL, GenerationSpec, Quality
from core.store import JobStore
from core.tasks import FailureKind
from core.text import N_, tr
from services.cancelling import CancelOutcome, cancel_running
from services.endings import refund
from services.images import inspect_image
from services.inputs import InputImages
from services.intake import Checked, JobIntake, Requester, Reservation
from services.moderation import ModerationService
from services.notices import LogChannel
from services.observed import ObservedStore
from services.patience import PatientStore
from services.pricing import PriceTable
from services.progress import JobCard
from services.prompts import validate_combination
from services.quotas import QuotaPolicy
from services.reporter import JobReporter
from services.review import ReviewService
from services.routing import ProviderRouter
from services.run import Crew, JobSettings
from services.runner import JobRunner, ReporterFor

log = logging.getLogger(__name__)

STORED_IMAGE_GONE = N_("The original image is no longer stored; start anew.")


@dataclass(frozen=True)
class Quote:
    price_micros: int  # one clip
    left_today_micros: int | None  # None: no daily dollar limit
    needs_confirmation: bool = False  # at or above the server's quote threshold
    count: int = 1  # clips asked for at once (variants)
    # The member's limits and the server's state as the quote read them: a reservation made at once (no
    # question asked) uses them instead of reading them again; after a Confirm they are read afresh.
    checked: Checked | None = field(default=None, repr=False, compare=False)

    @property
    def total_micros(self) -> int:
        return self.price_micros * self.count


@dataclass(frozen=True)
class Offer:
    """What the configured providers can make: the commands offer exactly this."""

    models: tuple[str, ...]  # served models, e.g. ("hailuo-02", "hailuo-2.3")
    end_frames: bool  # some provider takes a last frame


def build_job_services(
    store: JobStore,
    router: ProviderRouter,
    prices: PriceTable,
    quotas: QuotaPolicy,
    settings: JobSettings,
    *,
    callbacks_live: Callable[[str], bool] = lambda provider: False,
    admin: AdminStore | None = None,
    notices: LogChannel | None = None,
    output_records: OutputRecords | None = None,
    moderation: ModerationService | None = None,
    review: ReviewService | None = None,
    metrics: Metrics = NO_METRICS,
    handoff: JobHandoff | None = None,
) -> tuple[JobService, JobRunner]:
    """The job API and the runner behind it, sharing one store, router and price table. Running jobs
    see the store through `PatientStore`: they wait out a sick database instead of ending on it. Every
    state change, reservation and ending is reported to `metrics` on its way into the store."""
    if metrics is not NO_METRICS:  # off means off: not even the ledger read each ending reports
        store = ObservedStore(store, metrics)
    patient = PatientStore(
        store, first_delay=settings.storage_retry_seconds, max_delay=settings.storage_retry_max_seconds
    )
    verdicts = None
    if moderation is not None:
        mod = moderation

        async def verdicts(job: JobRecord) -> None:
            await mod.provider_verdict(job.guild_id, job.user_id, job.id, job.error_detail or "")

    crew = Crew(
        patient,
        router,
        prices,
        settings,
        callbacks_live=callbacks_live,
        output_records=output_records,
        verdicts=verdicts,
        metrics=metrics,
    )
    inputs = InputImages(settings.inputs_dir)
    runner = JobRunner(crew, inputs)
    intake = JobIntake(store, router, prices, quotas, inputs, admin, notices, moderation, review)
    return JobService(intake, runner, patient, handoff), runner


class JobService:
    def __init__(
        self, intake: JobIntake, runner: JobRunner, patient: PatientStore, handoff: JobHandoff | None = None
    ) -> None:
        self._intake = intake
        self._runner = runner
        # With workers (workers.separate), jobs are handed to them instead of run here.
        self._handoff = handoff
        self._handing: set[asyncio.Task[None]] = set()
        # Lookups for a member who is waiting fail fast (StorageError); writes for a job whose card is
        # already out wait out a sick database, like the job's own steps.
        self._store = intake.store
        self._patient = patient

    # ----- asking -------------------------------------------------------------------------------------

    def offer(self) -> Offer:
        router = self._intake.router
        return Offer(tuple(router.offered_models()), router.end_frames_possible())

    def models_for(self, guild_id: int | None) -> tuple[str, ...]:
        """The models this server's providers can make (a member's default model must be one of them)."""
        return tuple(self._intake.router.models_for(guild_id))

    @property
    def max_variants(self) -> int:
        """The most `variants:` one command may ask for (config.toml `quotas.max_variants`)."""
        return self._intake.quotas.max_variants

    @property
    def accepting(self) -> bool:
        """False while the bot stops: new commands are turned away (nothing is reserved)."""
        return self._runner.accepting

    async def get(self, job_id: int) -> JobRecord | None:
        return await self._store.get(job_id)

    async def input_thumbnail(self, job: JobRecord) -> bytes | None:
        """A small JPEG of the job's input image (first frame), for its finished card; None when it has none
        or it is no longer stored (the card is then shown without it)."""
        try:
            return await asyncio.to_thread(self._runner.inputs.thumbnail, job.input_image)
        except Exception as exc:  # a courtesy: a damaged or vanished file only leaves it out
            log.info("job %d: no thumbnail of its input image: %s", job.id, exc)
            return None

    def card_for(self, job: JobRecord) -> JobCard:
        return self._runner.card_for(job)

    async def reroll_spec(self, job: JobRecord) -> GenerationSpec:
        """The request a job was made from, to make it again. UserError when its image is gone."""
        try:
            return await asyncio.to_thread(self._runner.inputs.spec_for, job)
        except (OSError, UserError):
            raise UserError(tr(STORED_IMAGE_GONE)) from None

    async def continue_spec(self, job: JobRecord, prompt: str, frame: bytes) -> GenerationSpec:
        """An image → video request whose first frame is `frame` (the last of `job`'s clip), with the
        job's model, quality and duration where image → video offers them. The frame is checked like an
        upload: UserError when it does not pass."""
        image = await asyncio.to_thread(inspect_image, frame)
        quality = job.quality if job.quality in QUALITIES_BY_MODEL.get(job.model, {}).get("i2v", ()) else "standard"
        duration = job.duration
        try:
            validate_combination("i2v", quality, duration, job.model)
        except UserError:
            duration = DURATIONS[0]
        return GenerationSpec(
            mode="i2v",
            quality=cast(Quality, quality),
            duration=duration,
            prompt=prompt,
            optimize_prompt=job.optimize_prompt,
            model=job.model,
            image=image,
        )

    # ----- doing --------------------------------------------------------------------------------------

    async def create(
        self,
        spec: GenerationSpec,
        requester: Requester,
        *,
        command: str,
        parent_job_id: int | None = None,
        parent_kind: ParentKind | None = None,
    ) -> JobRecord:
        """Reserve the cost and record the job. Raises QuotaExceeded or UserError (nothing charged),
        StorageError when the store cannot record it (nothing charged either)."""
        return (
            await self.reserve(spec, requester, command=command, parent_job_id=parent_job_id, parent_kind=parent_kind)
        ).job

    async def reserve(
        self,
        spec: GenerationSpec,
        requester: Requester,
        *,
        command: str,
        parent_job_id: int | None = None,
        parent_kind: ParentKind | None = None,
        quote: Quote | None = None,
        count: int = 1,
    ) -> Reservation:
        """`create`, and how the job is paid for (a note for the member when their pool was empty). A
        `quote` just made (and not waited on) spares reading the member's limits again. `count` > 1:
        that many variants, all reserved in one transaction or none (QuotaExceeded says how many fit)."""
        return await self._intake.create(
            spec,
            requester,
            command=command,
            parent_job_id=parent_job_id,
            parent_kind=parent_kind,
            checked=quote.checked if quote and not quote.needs_confirmation else None,
            count=count,
        )

    async def quote(self, spec: GenerationSpec, requester: Requester, count: int = 1) -> Quote:
        """What the job (or `count` variants of it) would cost and what the member has left today,
        reserving nothing (a quote shown before big jobs). Raises UserError for a paused server or a
        frozen member."""
        await self._intake.screen(spec, requester)
        _, price = self._intake.quote(spec, requester.guild_id)
        limits, state = checked = await self._intake.limits_for(requester)
        threshold = state.controls.quote_threshold_micros if state else None
        if threshold is None or price * count < threshold:
            return Quote(price, None, count=count, checked=checked)  # no question to ask: spare the usage read
        usage = await self._store.usage(requester.user_id, requester.guild_id)
        left = None if limits.user_daily_usd is None else max(limits.user_daily_usd - usage.user_day_micros, 0)
        return Quote(price, left, needs_confirmation=True, count=count)

    async def attach_card(self, job_id: int, message_id: int) -> None:
        """The public card of the job is this message (posted, or posted anew after a deletion)."""
        await self._patient.update(job_id, message_id=message_id)

    async def attach_set_card(self, job_ids: Sequence[int], message_id: int) -> None:
        """These variants are listed on this card (posted, or posted anew after a deletion)."""
        for job_id in job_ids:
            await self._patient.update(job_id, set_card_id=message_id)

    async def set_members(self, set_card_id: int) -> list[JobRecord]:
        """The variants listed on one card (to show them again after a restart)."""
        return await self._patient.set_members(set_card_id)

    @property
    def hands_over(self) -> bool:
        """True when worker processes run the jobs (this process only takes commands)."""
        return self._handoff is not None

    def start(self, job: JobRecord, reporter: JobReporter) -> None:
        """Run the job in the background (or hand it to a worker); it can be cancelled from the moment this
        returns."""
        if self._handoff is None:
            self._runner.start(job, reporter)
            return
        task = asyncio.create_task(self._hand_over(self._handoff, job.id), name=f"hand-over-{job.id}")
        self._handing.add(task)
        task.add_done_callback(self._handing.discard)

    async def _hand_over(self, handoff: JobHandoff, job_id: int) -> None:
        try:
            await handoff.hand_over(job_id)
        except Exception:  # the job stays reserved: a worker's start-up sweep hands it over
            log.exception("job %d: could not hand it to a worker; a worker will pick it up at its next start", job_id)

    async def run(self, job: JobRecord, reporter: JobReporter) -> JobRecord | None:
        """Run the job to its end here and return how it ended (the terminal runner)."""
        return await self._runner.run(job, reporter)

    async def abandon(self, job: JobRecord, reason: str) -> None:
        """End a reserved job that never reached a provider (its card could not be posted), refunding it."""
        await refund(self._patient, job, JobStatus.FAILED, FailureKind.INTERNAL, reason)

    async def cancel(self, job_id: int, reporter_for: ReporterFor | None = None) -> CancelOutcome:
        """The member pressed Cancel. Returns what happened, to tell them. `reporter_for` shows the card of a
        job this process ends without running it (one still waiting for a worker)."""
        run = self._runner.running(job_id)
        if run is not None:
            return await cancel_running(self._runner.crew, run)
        job = await self._store.get(job_id)
        if job is None or job.terminal:
            return CancelOutcome.UNKNOWN if job is None else CancelOutcome.TOO_LATE
        if self._handoff is None:
            return CancelOutcome.UNKNOWN
        # Still waiting for a worker, and never at a provider: take it out of the queue, then refund it.
        # (A task put back in the queue after its worker died may have reached a provider: its state says.)
        if job.status == JobStatus.RESERVED and await self._handoff.withdraw(job_id):
            await self.end_withdrawn(job, reporter_for)
            return CancelOutcome.STOPPED
        answer = await self._handoff.cancel(job_id)  # it runs on a worker: ask whichever one has it
        return CancelOutcome.NO_ANSWER if answer is None else CancelOutcome(answer)

    async def end_withdrawn(self, job: JobRecord, reporter_for: ReporterFor | None) -> None:
        """End, refunded, a job whose task was taken out of the queue before a worker started it. No
        process can run it any more, so this is safe from any process, and doing it twice does nothing."""
        if await refund(self._patient, job, JobStatus.CANCELLED, None, "cancelled while waiting for a worker"):
            ended = await self._store.get(job.id)
            reporter = reporter_for(job) if reporter_for is not None else None
            if ended is not None and reporter is not None:
                await self._runner.announce(ended, reporter)

    async def cancel_here(self, job_id: int) -> CancelOutcome | None:
        """A gateway asked this worker to cancel a job: what happened, or None when it does not run here."""
        run = self._runner.running(job_id)
        return None if run is None else await cancel_running(self._runner.crew, run)
