"""Getting a finished clip to the user: download, check it is a video, fit it to the upload limit,
post it, settle. Discord-free: the reporter says what the platform allows and how a post failed.

What is tried, in order: the clip as it is (when it fits), re-encoded to fit, and — only when the
provider's output is a web link (http or https) — that link. A local file's path is never posted: when
nothing fits, the job ends undeliverable and is refunded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from urllib.parse import urlsplit

from core.jobs import JobStatus
from core.provider import ProviderError
from core.tasks import FailureKind
from core.text import Text, tr
from media import ffmpeg
from services.endings import fail, record_status, settle
from services.outputs import LINK_LIFETIME
from services.progress import JobCard
from services.reporter import DeliveryFailed, JobReporter, UploadTooLarge
from services.run import Crew, JobRun

log = logging.getLogger(__name__)

# How long a clip waits for room on a full disk before the job gives up on it (outputs live >= 1 hour).
DISK_PATIENCE_S = 600.0


async def deliver(crew: Crew, run: JobRun, url: str) -> None:
    """Download the output at `url`, post it, and settle (or refund when that fails)."""
    async with crew.delivery_slots:
        await _deliver_now(crew, run, url)


async def _deliver_now(crew: Crew, run: JobRun, url: str) -> None:
    job, tmp = run.job, crew.settings.tmp_dir
    tmp.mkdir(parents=True, exist_ok=True)  # a sweep by a process sharing the data directory may have taken it
    await record_status(crew.store, run, JobStatus.DOWNLOADING)
    await run.updater.update(run.card)
    raw = tmp / f"job-{job.id}-output.mp4"
    fitted = tmp / f"job-{job.id}-fitted.mp4"
    kept: Path | None = None
    try:
        try:
            size = await _download(crew, run, url, raw)
            await ffmpeg.probe(raw)
        except (ProviderError, ffmpeg.MediaError) as exc:
            await fail(crew.store, run, FailureKind.OUTPUT_INVALID, str(exc))
            return
        await record_status(crew.store, run, JobStatus.POSTING, f"{size} bytes", output_bytes=size)
        await run.updater.update(run.card.with_stage("posting"))
        await run.updater.flush()
        done = run.card.with_stage("done", took_seconds=round(time.monotonic() - run.began))
        delivered_as = await post_clip(
            job.id, job.provider, raw, fitted, done, url, run.reporter, reencode_slots=crew.reencode_slots
        )
        # Keep the clip as it was delivered (for /show) before its temporary file goes: a failure to
        # is a warning, never the job's.
        if delivered_as is not None and crew.outputs is not None:
            kept = await crew.outputs.stash(job.id, fitted if delivered_as == "reencoded" else raw)
    finally:
        for path in (raw, fitted):
            path.unlink(missing_ok=True)
    if delivered_as is None:
        await fail(crew.store, run, FailureKind.UNDELIVERABLE, "no way to post the clip")
        return
    await settle(crew.store, job, delivered_as)
    if kept is not None and crew.outputs is not None:
        await crew.outputs.record(job.id, kept)


async def _download(crew: Crew, run: JobRun, url: str, raw: Path) -> int:
    """Download the clip; when the local disk cannot take it (full, read-only), wait for room with backoff
    rather than refund a clip that was made and paid for, within DISK_PATIENCE_S (the provider keeps
    its output at least that long)."""
    provider = crew.router.providers[run.job.provider]
    delay, waited = crew.settings.storage_retry_seconds, 0.0
    while True:
        try:
            return await provider.download(url, raw, crew.settings.max_output_bytes)
        except OSError as exc:
            if waited >= DISK_PATIENCE_S:
                raise ProviderError(
                    FailureKind.OUTPUT_INVALID, f"no room on disk for the clip ({exc.strerror})"
                ) from exc
            log.warning("job %d: cannot write the clip to disk (%s); trying again in %.1f s", run.job.id, exc, delay)
        await asyncio.sleep(delay)
        waited += delay
        delay = min(delay * 2, crew.settings.storage_retry_max_seconds)


def link_note(provider: str) -> Text:
    """The card's note beside the provider's link (the server's language)."""
    _, lifetime = LINK_LIFETIME.get(provider, (None, ""))
    if lifetime:
        return tr(
            "The clip is too large to upload here, so here is the provider's link (it expires in {lifetime}: "
            "save it soon).",
            lifetime=tr(lifetime),
        )
    return tr(
        "The clip is too large to upload here, so here is the provider's link (the provider keeps it for a "
        "limited time: save it soon)."
    )


def is_web_link(url: str) -> bool:
    return urlsplit(url).scheme in ("http", "https")


async def post_clip(
    job_id: int,
    provider: str,
    raw: Path,
    fitted: Path,
    card: JobCard,
    url: str,
    reporter: JobReporter,
    *,
    reencode_slots: asyncio.Semaphore | None = None,
) -> str | None:
    """Upload the clip as it is, else re-encoded to fit, else post the link. Returns how, or None.

    `reencode_slots` bounds how many ffmpeg re-encodes (a core each, for seconds) run at once."""
    limit = reporter.upload_limit
    size = raw.stat().st_size
    plan = [
        how
        for how, wanted in (
            ("file", limit is None or size <= limit),
            ("reencoded", limit is not None),
            ("link", is_web_link(url)),  # a local render's file:// URL means nothing to anyone else
        )
        if wanted
    ]
    for how in plan:
        clip: Path | None = raw if how == "file" else None
        if how == "reencoded":
            assert limit is not None
            async with reencode_slots or contextlib.nullcontext():
                log.info("job %d: re-encoding %d bytes to fit %d", job_id, size, limit)
                clip = await ffmpeg.fit_to_size(raw, fitted, limit)
            if clip is None:
                continue
        shown = card if clip is not None else card.with_stage("done", link=url, message=link_note(provider))
        try:
            await reporter.deliver(shown, clip)
            return how
        except UploadTooLarge:
            log.info("job %d: upload as %s refused as too large", job_id, how)
        except DeliveryFailed as exc:
            log.warning("job %d: delivery as %s failed: %s", job_id, how, exc)
            if how == "link":
                return None
    if "link" not in plan:
        log.warning("job %d: the clip does not fit the upload limit and has no web link to post", job_id)
    return None
