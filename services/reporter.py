"""Where a job shows itself: the `JobReporter` protocol (Discord, the terminal) and its failures.

Discord-free: the reporter says what the chat platform allows (`upload_limit`) and raises
UploadTooLarge / DeliveryFailed; `services.delivery` decides what to try next.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Protocol

from services.progress import JobCard

log = logging.getLogger(__name__)


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
