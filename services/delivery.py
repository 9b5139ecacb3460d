"""Getting a finished clip to the user: download, check, fit to the upload limit, post.

Discord-free: the reporter says what the chat platform allows (`upload_limit`) and raises
UploadTooLarge / DeliveryFailed; this module decides what to try next (as it is, re-encoded, link).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from pathlib import Path
from typing import Protocol

from services import media
from services.progress import JobCard

log = logging.getLogger(__name__)

# How long providers keep outputs (providers.md); unknown ones get a cautious wording.
LINK_LIFETIME = {"minimax": "about 1 hour", "toapis": "24 hours"}


class UploadTooLarge(Exception):
    """The chat platform refused the upload as too large (Discord 413 / 40005)."""


class DeliveryFailed(Exception):
    """The clip could not be shown to the user at all; the message is safe to log."""


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

    async def delivered_before(self, card: JobCard) -> bool:
        """Whether this finished card was already posted (the bot may have stopped mid-posting)."""
        ...


def link_note(provider: str) -> str:
    lifetime = LINK_LIFETIME.get(provider)
    when = f"it expires in {lifetime}" if lifetime else "the provider keeps it for a limited time"
    return f"The clip is too large to upload here, so here is the provider's link ({when}: save it soon)."


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
        how for how, wanted in (("file", limit is None or size <= limit), ("reencoded", limit is not None)) if wanted
    ]
    for how in [*plan, "link"]:
        clip: Path | None = raw if how == "file" else None
        if how == "reencoded":
            assert limit is not None
            async with reencode_slots or contextlib.nullcontext():
                log.info("job %d: re-encoding %d bytes to fit %d", job_id, size, limit)
                clip = await media.fit_to_size(raw, fitted, limit)
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
    return None


class SavedClipReporter:
    """For jobs with no chat to report to (started from the terminal, resumed after a restart):
    the finished clip is kept under `folder` and the log says where."""

    upload_limit: int | None = None

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def show(self, card: JobCard) -> None:
        log.debug("job %d: %s", card.job_id, card.stage)

    async def deliver(self, card: JobCard, clip: Path | None) -> None:
        if clip is None:
            log.info("job %d: finished; the provider's link: %s", card.job_id, card.link)
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        dest = self.folder / f"hailuo-{card.job_id}.mp4"
        shutil.copyfile(clip, dest)
        log.info("job %d: finished; saved as %s", card.job_id, dest)

    async def delivered_before(self, card: JobCard) -> bool:
        return (self.folder / f"hailuo-{card.job_id}.mp4").exists()
