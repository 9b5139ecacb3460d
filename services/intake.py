"""From a request to a reserved job: the quote, the quota check and the reservation, in one step.

The reservation covers the dearest provider the job may fail over to; input images are kept
(`services.inputs`), so a re-roll or a restart can send them again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from core.admin import POOL_ALERT_PERCENTS, AdminStore, Pool, PoolDraw, ServerState
from core.errors import QuotaExceeded, StorageError, UserError
from core.jobs import JobRecord, NewJob, ParentKind, Usage
from core.spec import GenerationSpec, ImageInput
from core.store import JobStore, ReservationCheck
from core.text import N_, tr
from services.inputs import InputImages
from services.moderation import ModerationService
from services.notices import LogChannel
from services.pricing import PriceTable, format_usd
from services.quotas import (
    Funding,
    Limits,
    QuotaPolicy,
    check_fits,
    effective_limits,
    period_key,
    pick_pool,
    this_period,
)
from services.review import ReviewService
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


# A member's limits and the server's state, read once per command (None outside a server or without admins).
Checked = tuple[Limits, ServerState | None]

FROZEN = N_("An admin has paused your access: {reason}")
PAUSED = N_("An admin has paused new videos on this server: {reason}")
NO_REASON = N_("no reason given")


# Variants that do not all fit: nothing is reserved, and the member hears how many would have.
SOME_VARIANTS_FIT = N_("Only {fit} of these {n} variants fit your limits right now, so none was made. {reason}")
NO_VARIANT_FITS = N_("None of these {n} variants fits your limits right now. {reason}")
IN_FLIGHT_CAP = N_("You may have {limit} videos generating at a time, and each variant is one.")


@dataclass(frozen=True)
class Reservation:
    jobs: tuple[JobRecord, ...]  # one, or the variants of one request (same settings)
    note: str = ""  # what the member should know about how it is paid (e.g. their pool was empty)

    @property
    def job(self) -> JobRecord:
        return self.jobs[0]


class JobIntake:
    def __init__(
        self,
        store: JobStore,
        router: ProviderRouter,
        prices: PriceTable,
        quotas: QuotaPolicy,
        inputs: InputImages,
        admin: AdminStore | None = None,
        notices: LogChannel | None = None,
        moderation: ModerationService | None = None,
        review: ReviewService | None = None,
    ) -> None:
        self.store = store
        self.moderation = moderation
        self.review = review
        self.router = router
        self.prices = prices
        self.quotas = quotas
        self.inputs = inputs
        self.admin = admin
        self.notices = notices or LogChannel()

    def quote(self, spec: GenerationSpec, guild_id: int | None) -> tuple[str, int]:
        """The preferred provider, and the amount to reserve: the highest price among the providers
        the job may fail over to, so a failover can never take anyone over a limit."""
        candidates = self.router.candidates(spec, guild_id)
        return candidates[0], max(self.prices.price_micros(name, spec) for name in candidates)

    async def screen(self, spec: GenerationSpec, requester: Requester) -> None:
        """Refuse (UserError) a prompt the server's blocklist matches, before anything is quoted or reserved:
        every way to a new job (a command, Re-roll, Remix, Continue, Retry) passes here."""
        if self.moderation is not None:
            await self.moderation.check_prompt(spec.prompt, requester.guild_id, requester.user_id)

    async def limits_for(self, requester: Requester) -> Checked:
        """The member's limits as config.toml and this server's admins set them, and the server's state.
        A paused server or a frozen member is refused here (UserError), before anything is reserved."""
        state = None
        if self.admin is not None and requester.guild_id is not None:
            state = await self.admin.server_state(requester.guild_id, requester.user_id)
            if state.frozen_reason is not None:
                raise UserError(tr(FROZEN, reason=state.frozen_reason or tr(NO_REASON)))
            if state.controls.paused:
                raise UserError(tr(PAUSED, reason=state.controls.pause_reason or tr(NO_REASON)))
        overrides = state.overrides if state else ()
        limits, _ = effective_limits(self.quotas, overrides, requester.role_ids, requester.user_id)
        return limits, state

    async def create(
        self,
        spec: GenerationSpec,
        requester: Requester,
        *,
        command: str,
        parent_job_id: int | None = None,
        parent_kind: ParentKind | None = None,
        checked: Checked | None = None,
        count: int = 1,
    ) -> Reservation:
        """Reserve the cost and record the job (with `checked`: the limits and server state just read for
        this request, else read now). Raises QuotaExceeded or UserError (nothing charged), and
        StorageError when the database or the disk cannot record it (nothing charged either).

        `count` > 1: that many jobs with the same settings (variants), reserved in one transaction — all
        of them, each checked against the limits with the ones before it counted, or none."""
        await self.screen(spec, requester)
        provider, reserve = self.quote(spec, requester.guild_id)
        limits, state = checked or await self.limits_for(requester)
        now = datetime.now(UTC)
        pool = pick_pool(state.pools, requester.channel_id, requester.role_ids) if state else None
        funding = Funding()
        new = NewJob(
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
            parent_kind=parent_kind,
            upload_limit=requester.upload_limit,
            pool=PoolDraw(pool.id, period_key(pool.period, now)) if pool else None,
        )
        check = check_fits(limits, reserve, now, pool, funding)
        if count == 1:
            jobs = [await self.store.reserve(new, check, now=now)]
        else:
            jobs = await self._reserve_variants(new, check, count, now, limits)
        if self.review is not None:  # before a job can start: a clip made under review is held
            for job in jobs:
                await self.review.hold(job.id, requester.guild_id, requester.channel_id, requester.user_id)
        paid_by = f"pool {funding.pool.name}" if funding.pool else "own allowance"
        for job in jobs:
            log.info(
                "job %d: reserved %d micros (%s first, %s) for user %d%s",
                job.id,
                reserve,
                provider,
                paid_by,
                requester.user_id,
                f", variant of #{jobs[0].id}" if count > 1 else "",
            )
        if funding.pool is not None and state is not None:
            await self._pool_alerts(funding.pool, state.controls.log_channel_id, now)
        return Reservation(tuple(jobs), funding.note)

    async def _reserve_variants(
        self, new: NewJob, check: ReservationCheck, count: int, now: datetime, limits: Limits
    ) -> list[JobRecord]:
        """`count` copies of `new`, all or none; a refusal says how many would have fitted."""
        fitted = 0

        def counting(usage: Usage) -> PoolDraw | None:
            nonlocal fitted
            draw = check(usage)
            fitted += 1
            return draw

        try:
            return await self.store.reserve_many([new] * count, counting, now=now)
        except QuotaExceeded as exc:
            reason: str = exc.message
            if fitted and exc.limit == "user_max_in_flight":  # "you already have N generating" would count these
                reason = tr(IN_FLIGHT_CAP, limit=limits.user_max_in_flight)
            template = SOME_VARIANTS_FIT if fitted else NO_VARIANT_FITS
            raise QuotaExceeded(
                tr(template, fit=fitted, n=count, reason=reason), limit=exc.limit, resets_at=exc.resets_at
            ) from exc

    async def _pool_alerts(self, pool: Pool, log_channel: int | None, now: datetime) -> None:
        """Tell the log channel, once per period, when a pool passes 50, 80 and 100 % of its budget."""
        assert self.admin is not None
        key = period_key(pool.period, now)
        try:
            spent = await self.admin.pool_spent(pool.id, key)
            for percent in POOL_ALERT_PERCENTS:
                if spent * 100 >= percent * pool.amount_micros and await self.admin.mark_pool_alert(
                    pool.id, key, percent
                ):
                    await self.notices.post(
                        log_channel,
                        tr(
                            "Budget pool **{pool}** has used {percent} % of its {amount} {this_period} "
                            "({spent} spent).",
                            pool=pool.name,
                            percent=percent,
                            amount=format_usd(pool.amount_micros),
                            this_period=this_period(pool.period),
                            spent=format_usd(spent),
                        ),
                    )
        except StorageError as exc:  # the job is reserved; an alert can wait for the next draw
            log.warning("pool %d: could not check its alerts: %s", pool.id, exc)

    def _keep(self, image: ImageInput | None) -> str | None:
        """Store an input image for re-rolls and restarts. A full or read-only disk is a storage fault
        like a sick database: the member is told nothing could be recorded, and nothing is charged."""
        if image is None:
            return None
        try:
            return self.inputs.keep(image)
        except OSError as exc:
            raise StorageError(f"could not keep the input image: {exc.strerror or exc}") from exc
