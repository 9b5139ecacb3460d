"""From a request to a reserved job, and from a stored job back to the request (re-roll, resume).

The reservation covers the dearest provider the job may fail over to; input images are kept,
content-addressed, so a re-roll or a restart can send them again.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from services.pricing import PriceTable
from services.quotas import check_fits, effective_limits
from services.routing import ProviderRouter
from services.spec import GenerationSpec, ImageInput
from settings import QuotasSection
from storage.jobs import JobRecord, JobRepository, NewJob

log = logging.getLogger("services.jobs")  # one log for a job's whole life


@dataclass(frozen=True)
class Requester:
    user_id: int
    guild_id: int | None
    channel_id: int | None
    role_ids: tuple[int, ...] = ()
    interaction_id: int | None = None
    upload_limit: int | None = None


class JobIntake:
    def __init__(
        self, repo: JobRepository, router: ProviderRouter, prices: PriceTable, quotas: QuotasSection, inputs_dir: Path
    ) -> None:
        self.repo = repo
        self.router = router
        self.prices = prices
        self.quotas = quotas
        self.inputs_dir = inputs_dir

    def quote(self, spec: GenerationSpec, guild_id: int | None) -> tuple[str, int]:
        """The preferred provider, and the amount to reserve: the highest price among the providers
        the job may fail over to, so a failover can never take anyone over a limit."""
        candidates = self.router.candidates(spec, guild_id)
        return candidates[0], max(self.prices.price_micros(name, spec) for name in candidates)

    async def create(
        self, spec: GenerationSpec, requester: Requester, *, command: str, parent_job_id: int | None = None
    ) -> JobRecord:
        """Reserve the cost and record the job. Raises QuotaExceeded or UserError (nothing charged)."""
        provider, reserve = self.quote(spec, requester.guild_id)
        limits = effective_limits(self.quotas, requester.role_ids)
        now = datetime.now(UTC)
        job = await self.repo.reserve(
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
                input_image=self._store_input(spec.image) if spec.image else None,
                end_image=self._store_input(spec.end_image) if spec.end_image else None,
                provider=provider,
                cost_micros=reserve,
                parent_job_id=parent_job_id,
                upload_limit=requester.upload_limit,
            ),
            check_fits(limits, reserve, now),
            now=now,
        )
        log.info("job %d: reserved %d micros (%s first) for user %d", job.id, reserve, provider, requester.user_id)
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

    def _load_input(self, name: str | None) -> ImageInput | None:
        if not name:
            return None
        from services.images import inspect_image  # checked again: the file is ours but may be damaged

        return inspect_image((self.inputs_dir / name).read_bytes())

    def spec_for(self, job: JobRecord) -> GenerationSpec:
        """Rebuild what the user asked for from the stored job (for re-roll and resume)."""
        return GenerationSpec(
            mode=job.mode,  # type: ignore[arg-type]
            quality=job.quality,  # type: ignore[arg-type]
            duration=job.duration,
            prompt=job.prompt,
            optimize_prompt=job.optimize_prompt,
            model=job.model,
            image=self._load_input(job.input_image),
            end_image=self._load_input(job.end_image),
        )
