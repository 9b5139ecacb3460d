"""From a request to a reserved job: the quote, the quota check and the reservation, in one step.

The reservation covers the dearest provider the job may fail over to; input images are kept
(`services.inputs`), so a re-roll or a restart can send them again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from core.errors import StorageError
from core.jobs import JobRecord, NewJob
from core.spec import GenerationSpec, ImageInput
from core.store import JobStore
from services.inputs import InputImages
from services.pricing import PriceTable
from services.quotas import QuotaPolicy, check_fits
from services.routing import ProviderRouter

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
        self, store: JobStore, router: ProviderRouter, prices: PriceTable, quotas: QuotaPolicy, inputs: InputImages
    ) -> None:
        self.store = store
        self.router = router
        self.prices = prices
        self.quotas = quotas
        self.inputs = inputs

    def quote(self, spec: GenerationSpec, guild_id: int | None) -> tuple[str, int]:
        """The preferred provider, and the amount to reserve: the highest price among the providers
        the job may fail over to, so a failover can never take anyone over a limit."""
        candidates = self.router.candidates(spec, guild_id)
        return candidates[0], max(self.prices.price_micros(name, spec) for name in candidates)

    async def create(
        self, spec: GenerationSpec, requester: Requester, *, command: str, parent_job_id: int | None = None
    ) -> JobRecord:
        """Reserve the cost and record the job. Raises QuotaExceeded or UserError (nothing charged), and
        StorageError when the database or the disk cannot record it (nothing charged either)."""
        provider, reserve = self.quote(spec, requester.guild_id)
        limits = self.quotas.for_member(requester.role_ids)
        now = datetime.now(UTC)
        job = await self.store.reserve(
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
                input_image=self._keep(spec.image),
                end_image=self._keep(spec.end_image),
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

    def _keep(self, image: ImageInput | None) -> str | None:
        """Store an input image for re-rolls and restarts. A full or read-only disk is a storage fault
        like a sick database: the member is told nothing could be recorded, and nothing is charged."""
        if image is None:
            return None
        try:
            return self.inputs.keep(image)
        except OSError as exc:
            raise StorageError(f"could not keep the input image: {exc.strerror or exc}") from exc
