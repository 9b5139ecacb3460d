"""The job lifecycle: reserve → submit → poll → download → fit → deliver → settle (or refund).

Discord-free: the caller passes a `JobReporter` that knows how to show a card and deliver a clip
(the Discord cog, or the terminal for `bot.py generate`). Every job ends settled or refunded; a
paid submit is never retried; each state change is one log line carrying the job id.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from providers.base import SAFE_MESSAGES, FailureKind, Provider, ProviderError, TaskStatus
from services import media
from services.errors import UserError
from services.pricing import PriceTable
from services.progress import CardUpdater, JobCard, estimate
from services.quotas import check_fits, effective_limits
from services.spec import GenerationSpec, ImageInput
from settings import QuotasSection
from storage.jobs import JobRecord, JobRepository, NewJob, iso

log = logging.getLogger(__name__)

MIME_BY_EXTENSION = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


class UploadTooLarge(Exception):
    """The chat platform refused the upload as too large (Discord 413 / 40005)."""


class DeliveryFailed(Exception):
    """The clip could not be shown to the user at all; `reason` is safe to log."""


class JobReporter(Protocol):
    """Where a job shows itself. Implemented by the Discord cog and by the terminal CLI."""

    upload_limit: int | None  # bytes one attachment may have; None = no limit

    async def show(self, card: JobCard) -> None:
        """Replace the job card with this one (progress, or a failure)."""
        ...

    async def deliver(self, card: JobCard, clip: Path | None) -> None:
        """Post the finished card with the clip (or, when `clip` is None, the card's link).

        Raises UploadTooLarge when the file is refused for its size, DeliveryFailed otherwise."""
        ...


@dataclass(frozen=True)
class Requester:
    user_id: int
    guild_id: int | None
    channel_id: int | None
    role_ids: tuple[int, ...] = ()
    interaction_id: int | None = None


@dataclass(frozen=True)
class PollPolicy:
    """Adaptive polling: quick at first, backing off while nothing changes, resetting on change."""

    first: float = 1.0
    growth: float = 1.5
    ceiling: float = 5.0
    error_ceiling: float = 30.0

    def next_delay(self, previous: float, changed: bool) -> float:
        return self.first if changed else min(previous * self.growth, self.ceiling)


class JobService:
    def __init__(
        self,
        repo: JobRepository,
        providers: dict[str, Provider],
        prices: PriceTable,
        quotas: QuotasSection,
        data_dir: Path,
        *,
        deadline_seconds: float = 900,
        max_output_bytes: int = 200 * 1024 * 1024,
        typical_seconds: dict[str, float] | None = None,
        edit_interval: float = 2.0,
        poll_policy: PollPolicy | None = None,
    ) -> None:
        self.repo = repo
        self.providers = providers  # in order of preference
        self.prices = prices
        self.quotas = quotas
        self.inputs_dir = data_dir / "inputs"
        self.tmp_dir = data_dir / "tmp"
        self.deadline_seconds = deadline_seconds
        self.max_output_bytes = max_output_bytes
        self.typical_seconds = typical_seconds or {}
        self.edit_interval = edit_interval
        self.poll_policy = poll_policy or PollPolicy()
        self._tasks: set[asyncio.Task[JobRecord | None]] = set()
        for folder in (self.inputs_dir, self.tmp_dir):
            folder.mkdir(parents=True, exist_ok=True)

    # ----- creating jobs -------------------------------------------------------------------------

    def choose_provider(self, spec: GenerationSpec) -> str:
        for name, provider in self.providers.items():
            if provider.capabilities.serves(spec):
                return name
        raise UserError(
            f"No configured video service can make `{spec.quality}` {spec.mode} clips. Try another quality."
        )

    def quote(self, spec: GenerationSpec) -> tuple[str, int]:
        provider = self.choose_provider(spec)
        return provider, self.prices.price_micros(provider, spec)

    async def create(
        self, spec: GenerationSpec, requester: Requester, *, command: str, parent_job_id: int | None = None
    ) -> JobRecord:
        """Reserve the cost and record the job. Raises QuotaExceeded (nothing charged)."""
        provider, cost = self.quote(spec)
        input_name = self._store_input(spec.image) if spec.image else None
        limits = effective_limits(self.quotas, requester.role_ids)
        now = datetime.now(UTC)
        job_id = await self.repo.reserve(
            NewJob(
                user_id=requester.user_id,
                guild_id=requester.guild_id,
                channel_id=requester.channel_id,
                interaction_id=requester.interaction_id,
                command=command,
                mode=spec.mode,
                quality=spec.quality,
                duration=spec.duration,
                optimize_prompt=spec.optimize_prompt,
                model=spec.model,
                prompt=spec.prompt,
                input_image=input_name,
                provider=provider,
                cost_micros=cost,
                parent_job_id=parent_job_id,
            ),
            check_fits(limits, cost, now),
            now=now,
        )
        log.info("job %d: reserved %d micros on %s for user %d", job_id, cost, provider, requester.user_id)
        job = await self.repo.get(job_id)
        assert job is not None
        return job

    def _store_input(self, image: ImageInput) -> str:
        """Keep the validated image (content-addressed) so re-rolls and restarts can use it again."""
        name = f"{hashlib.sha256(image.data).hexdigest()}.{image.extension}"
        path = self.inputs_dir / name
        if not path.exists():
            partial = path.with_suffix(".part")
            partial.write_bytes(image.data)
            partial.replace(path)
        return name

    def spec_for(self, job: JobRecord) -> GenerationSpec:
        """Rebuild what the user asked for from the stored job (for re-roll and resume)."""
        image = None
        if job.input_image:
            data = (self.inputs_dir / job.input_image).read_bytes()
            from services.images import inspect_image  # validated again: the file is ours but may be damaged

            image = inspect_image(data)
        return GenerationSpec(
            mode=job.mode,  # type: ignore[arg-type]
            quality=job.quality,  # type: ignore[arg-type]
            duration=job.duration,
            prompt=job.prompt,
            optimize_prompt=job.optimize_prompt,
            model=job.model,
            image=image,
        )

    def card_for(self, job: JobRecord) -> JobCard:
        from services.spec import RESOLUTION_BY_QUALITY

        return JobCard(
            job_id=job.id,
            stage="validating",
            prompt=job.prompt,
            command=job.command,
            model=job.model,
            quality=job.quality,
            resolution=RESOLUTION_BY_QUALITY.get(job.quality, "?"),
            duration=job.duration,
            cost_micros=job.cost_micros,
            provider=job.provider,
            requester_id=job.user_id,
        )

    async def abandon(self, job: JobRecord, reason: str) -> None:
        """End a reserved job that never reached a provider, refunding it."""
        await self._finish_refunded(job, "failed", FailureKind.INTERNAL, reason)

    # ----- running jobs --------------------------------------------------------------------------

    def start(self, job: JobRecord, reporter: JobReporter) -> asyncio.Task[JobRecord | None]:
        """Run the job in the background; the task is held until it ends."""
        task = asyncio.create_task(self.run(job, reporter), name=f"job-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def run(self, job: JobRecord, reporter: JobReporter) -> JobRecord | None:
        """Carry a reserved job to its end. Never raises (except cancellation)."""
        card = self.card_for(job)
        updater = CardUpdater(reporter.show, self.edit_interval)
        began = time.monotonic()
        try:
            await self._run(job, card, updater, reporter, began)
        except asyncio.CancelledError:
            await updater.close()
            raise
        except Exception:
            log.exception("job %d: internal error", job.id)
            await self._fail(job, card, updater, FailureKind.INTERNAL, "internal error")
        finally:
            await updater.close()
        return await self.repo.get(job.id)

    async def _run(
        self, job: JobRecord, card: JobCard, updater: CardUpdater, reporter: JobReporter, began: float
    ) -> None:
        provider = self.providers.get(job.provider)
        if provider is None:
            await self._fail(job, card, updater, FailureKind.UNAVAILABLE, f"provider {job.provider} not configured")
            return
        spec = self.spec_for(job)
        await updater.update(card.with_stage("queued"))
        await self._status(job, "submitting")
        try:
            task_id = await provider.submit(spec)
        except ProviderError as exc:
            if exc.maybe_created:
                # The task may exist and may be billed; we cannot find it again, so we stop here and
                # say so loudly for the admin. The user is refunded either way.
                log.warning("job %d: submit outcome unknown on %s (%s); not retried", job.id, job.provider, exc)
            await self._fail(job, card, updater, exc.kind, str(exc))
            return
        submitted = time.time()
        await self._status(job, "submitted", task_id, provider_task_id=task_id, submitted_at=iso_now())
        status = await self._wait(job, provider, task_id, card, updater, submitted)
        if status is None:
            return
        done_at = time.time()
        await self.repo.update(
            job.id,
            provider_done_at=iso_now(),
            generation_seconds=round(done_at - submitted, 3),
            output_url=status.output_url,
        )
        await self._deliver(
            job, provider, status, card.with_stage("downloading", started_at=submitted), updater, reporter, began
        )

    async def _wait(
        self, job: JobRecord, provider: Provider, task_id: str, card: JobCard, updater: CardUpdater, submitted: float
    ) -> TaskStatus | None:
        typical = await self._typical_seconds(job)
        deadline = submitted + self.deadline_seconds
        delay, previous, errors = self.poll_policy.first, None, 0
        while True:
            if time.time() >= deadline:
                await self._fail(job, card, updater, FailureKind.TIMEOUT, "deadline passed")
                return None
            try:
                status = await provider.poll(task_id)
            except ProviderError as exc:
                if not exc.transient:
                    await self._fail(job, card, updater, exc.kind, str(exc))
                    return None
                errors += 1
                delay = min(
                    max(exc.retry_after or 0, self.poll_policy.first * 2**errors), self.poll_policy.error_ceiling
                )
                log.debug("job %d: poll error %s, next in %.1fs", job.id, exc, delay)
                await asyncio.sleep(min(delay, max(deadline - time.time(), 0)))
                continue
            errors = 0
            if status.state == "succeeded":
                return status
            if status.state in ("failed", "cancelled"):
                kind = status.failure or FailureKind.GENERATION_FAILED
                await self._fail(job, card, updater, kind, status.failure_detail or status.raw_status)
                return None
            changed = (status.state, status.queue_position, status.progress) != previous
            if changed and (previous is None or status.state != previous[0]):
                await self._status(job, status.state, status.raw_status)
            previous = (status.state, status.queue_position, status.progress)
            await updater.update(self._progress_card(card, status, submitted, typical))
            delay = self.poll_policy.next_delay(delay, changed)
            if status.retry_after:
                delay = max(delay, status.retry_after)
            await asyncio.sleep(min(delay, max(deadline - time.time(), 0.05)))

    def _progress_card(self, card: JobCard, status: TaskStatus, submitted: float, typical: float) -> JobCard:
        if status.state == "queued":
            return card.with_stage("queued", queue_position=status.queue_position)
        percent, left = estimate(time.time() - submitted, typical)
        if status.progress is not None:
            percent = int(min(status.progress, 0.99) * 10) * 10
        return card.with_stage("generating", started_at=int(submitted), percent=percent, eta_seconds=left)

    async def _typical_seconds(self, job: JobRecord) -> float:
        median = await self.repo.median_generation_seconds(job.provider, job.model, job.quality, job.duration)
        return median or self.typical_seconds.get(job.provider, 60.0)

    async def _deliver(
        self,
        job: JobRecord,
        provider: Provider,
        status: TaskStatus,
        card: JobCard,
        updater: CardUpdater,
        reporter: JobReporter,
        began: float,
    ) -> None:
        assert status.output_url is not None
        await self._status(job, "downloading")
        await updater.update(card)
        raw = self.tmp_dir / f"job-{job.id}-output.mp4"
        fitted = self.tmp_dir / f"job-{job.id}-fitted.mp4"
        try:
            try:
                size = await provider.download(status.output_url, raw, self.max_output_bytes)
                await media.probe(raw)
            except (ProviderError, media.MediaError) as exc:
                await self._fail(job, card, updater, FailureKind.OUTPUT_INVALID, str(exc))
                return
            await self._status(job, "posting", f"{size} bytes", output_bytes=size)
            await updater.update(card.with_stage("posting"))
            await updater.flush()
            done = card.with_stage("done", took_seconds=round(time.monotonic() - began))
            delivered_as = await self._post(job, raw, fitted, done, status.output_url, reporter)
        finally:
            for path in (raw, fitted):
                path.unlink(missing_ok=True)
        if delivered_as is None:
            await self._finish_refunded(job, "failed", FailureKind.INTERNAL, "delivery failed")
            return
        await self.repo.finish(job.id, "delivered", "settle", delivered_as, delivered_as=delivered_as)
        log.info("job %d: delivered (%s), settled %d micros", job.id, delivered_as, job.cost_micros)

    async def _post(
        self, job: JobRecord, raw: Path, fitted: Path, card: JobCard, url: str, reporter: JobReporter
    ) -> str | None:
        """Upload the clip as it is, else re-encoded to fit, else post the link. Returns how."""
        limit = reporter.upload_limit
        attempts: list[tuple[str, Path | None]] = []
        if limit is None or raw.stat().st_size <= limit:
            attempts.append(("file", raw))
        if limit is not None:
            attempts.append(("reencoded", None))  # produced on demand below
        attempts.append(("link", None))
        for how, clip in attempts:
            if how == "reencoded":
                assert limit is not None
                log.info("job %d: re-encoding %d bytes to fit %d", job.id, raw.stat().st_size, limit)
                clip = await media.fit_to_size(raw, fitted, limit)
                if clip is None:
                    continue
            shown = card if clip is not None else card.with_stage("done", link=url, message=link_note(job.provider))
            try:
                await reporter.deliver(shown, clip)
                return how
            except UploadTooLarge:
                log.info("job %d: upload as %s refused as too large", job.id, how)
            except DeliveryFailed as exc:
                log.warning("job %d: delivery as %s failed: %s", job.id, how, exc)
                if how == "link":
                    return None
        return None

    async def _status(self, job: JobRecord, status: str, detail: str = "", **columns: object) -> None:
        """Persist a state change with its history row, and log it (one line per change, with the job id)."""
        await self.repo.set_status(job.id, status, detail, **columns)
        log.info("job %d: %s%s (%s)", job.id, status, f" {detail}" if detail else "", job.provider)

    async def _fail(self, job: JobRecord, card: JobCard, updater: CardUpdater, kind: FailureKind, detail: str) -> None:
        if await self._finish_refunded(job, "failed", kind, detail):
            message = f"{SAFE_MESSAGES[kind]} You were not charged."
            await updater.update(card.with_stage("failed", message=message))

    async def _finish_refunded(self, job: JobRecord, status: str, kind: FailureKind, detail: str) -> bool:
        ended = await self.repo.finish(
            job.id, status, "refund", f"{kind.value}: {detail}"[:500], error_kind=kind.value, error_detail=detail[:500]
        )
        if ended:
            log.info("job %d: %s (%s), refunded %d micros", job.id, status, kind.value, job.cost_micros)
        return ended


# How long providers keep outputs (providers.md); unknown ones get a cautious wording.
LINK_LIFETIME = {"minimax": "about 1 hour", "toapis": "24 hours"}


def link_note(provider: str) -> str:
    lifetime = LINK_LIFETIME.get(provider)
    when = f"it expires in {lifetime}" if lifetime else "the provider keeps it for a limited time"
    return f"The clip is too large to upload here, so here is the provider's link ({when}: save it soon)."


def iso_now() -> str:
    return iso(datetime.now(UTC))
