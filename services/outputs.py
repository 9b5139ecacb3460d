"""Delivered clips kept on disk for /show: `data_dir/outputs/<job id>.mp4` and its first frame as
`<job id>.jpg`, listed in the store (`core.history.OutputRecords`), for `keep_days` and within
`max_bytes` (the oldest go first when over).

Keeping is a courtesy, never part of delivering: the clip is linked (or copied) in before its
temporary file is removed, the thumbnail made and the row written after the job is settled, and any
failure on the way is a warning. The sweep (at start and hourly) deletes what is past its time or over
the cap, and files a crash left without a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from core.clock import iso, utcnow
from core.errors import StorageError
from core.history import OutputRecords, StoredOutput
from core.jobs import JobRecord, JobStatus
from core.text import N_
from media import ffmpeg

log = logging.getLogger(__name__)

THUMBNAIL_WIDTH = 320
THUMBNAIL_TIMEOUT_S = 30.0
# A kept file with no row this old is a leftover (a stop between keeping a clip and listing it).
ORPHAN_AGE_S = 3600.0
_KEPT_NAME = re.compile(r"(?P<job>[0-9]+)\.(?:mp4|jpg)(?:\.part)?")
# How long providers keep an output at its link (docs/providers/), with a margin: /show offers a
# job's link again only within this time of its delivery; other providers' links are never offered.
# How long providers keep an output link valid (docs/providers/): seconds, and as the card says it.
# Providers not listed document no lifetime: their links are never offered again.
# The wording is a catalogue template (N_): render it with `tr`.
LINK_LIFETIME: dict[str, tuple[float, str]] = {
    "minimax": (3600.0, N_("about 1 hour")),
    "toapis": (86_400.0, N_("24 hours")),
}
LINK_MARGIN_S = 300.0


async def make_thumbnail(clip: Path, dest: Path, width: int = THUMBNAIL_WIDTH) -> None:
    """The clip's first frame as a JPEG `width` pixels wide. Raises MediaError (or OSError)."""
    partial = dest.with_name(dest.name + ".part")
    try:
        await ffmpeg.run_ffmpeg(
            ["-loglevel", "error", "-y", "-i", str(clip), "-frames:v", "1", "-vf", f"scale={width}:-2",
             "-q:v", "4", "-f", "image2", "-c:v", "mjpeg", str(partial)],
            time_limit_s=THUMBNAIL_TIMEOUT_S,
        )  # fmt: skip
        if not partial.is_file() or partial.stat().st_size == 0:
            raise ffmpeg.MediaError("ffmpeg wrote no thumbnail")
        partial.replace(dest)
    finally:
        partial.unlink(missing_ok=True)


def fresh_link(job: JobRecord, now: datetime | None = None) -> str | None:
    """The provider's link to a delivered job's clip while it is surely still valid, else None."""
    lifetime, _ = LINK_LIFETIME.get(job.provider, (None, ""))
    if lifetime is None or job.status != JobStatus.DELIVERED or not job.output_url or not job.finished_at:
        return None
    if not job.output_url.startswith(("https://", "http://")):
        return None
    age = ((now or utcnow()) - datetime.fromisoformat(job.finished_at)).total_seconds()
    return job.output_url if age < lifetime - LINK_MARGIN_S else None


class OutputKeeper:
    def __init__(
        self,
        folder: Path,
        records: OutputRecords,
        *,
        keep_days: float = 30,
        max_bytes: int = 5 * 1024**3,
        slots: asyncio.Semaphore | None = None,
    ) -> None:
        self.folder = folder
        self.records = records
        self.keep_days = keep_days
        self.max_bytes = max_bytes
        # ffmpeg is CPU work: thumbnails share the re-encodes' slots (services.run.Crew).
        self.slots = slots or asyncio.Semaphore(1)

    @property
    def enabled(self) -> bool:
        return self.keep_days > 0 and self.max_bytes > 0

    async def stash(self, job_id: int, clip: Path) -> Path | None:
        """Link (or copy) the delivered clip in as `<job id>.mp4`, before its temporary file goes.
        None when keeping is off or the disk refused (a warning: the delivery goes on)."""
        if not self.enabled:
            return None
        dest = self.folder / f"{job_id}.mp4"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            dest.unlink(missing_ok=True)
            try:
                os.link(clip, dest)  # the same disk as tmp/: no bytes move
            except OSError:
                await asyncio.to_thread(_copy, clip, dest)
        except OSError as exc:
            log.warning("job %d: could not keep a copy of the clip: %s", job_id, exc)
            return None
        return dest

    async def record(self, job_id: int, clip: Path, now: datetime | None = None) -> StoredOutput | None:
        """Make the stashed clip's thumbnail and list it. Never raises but on cancellation."""
        thumb: Path | None = self.folder / f"{job_id}.jpg"
        assert thumb is not None
        try:
            async with self.slots:
                await make_thumbnail(clip, thumb)
        except (ffmpeg.MediaError, OSError) as exc:
            log.warning("job %d: no thumbnail for the kept clip: %s", job_id, exc)
            with contextlib.suppress(OSError):
                thumb.unlink(missing_ok=True)
            thumb = None
        try:
            size = clip.stat().st_size + (thumb.stat().st_size if thumb else 0)
            output = StoredOutput(job_id, clip.name, thumb.name if thumb else None, size, iso(now or utcnow()))
            await self.records.record_output(output)
        except (OSError, StorageError) as exc:
            log.warning("job %d: could not list the kept clip (%s); removing it", job_id, exc)
            self._remove(job_id)
            return None
        log.info("job %d: kept the clip (%d bytes with its thumbnail)", job_id, size)
        return output

    async def stored(self, job_id: int) -> tuple[StoredOutput, Path, Path | None] | None:
        """A job's kept clip and thumbnail, when both the row and the clip's file are there."""
        output = await self.records.output(job_id)
        if output is None or not (self.folder / output.clip).is_file():
            return None
        thumb = self.folder / output.thumbnail if output.thumbnail else None
        return output, self.folder / output.clip, thumb if thumb is not None and thumb.is_file() else None

    async def last_frame(self, job_id: int) -> bytes | None:
        """The kept clip's last frame as PNG bytes (for Continue), or None when the clip is no longer
        kept. Raises MediaError (or OSError) when ffmpeg cannot read it."""
        stored = await self.stored(job_id)
        if stored is None:
            return None
        with tempfile.TemporaryDirectory(prefix="hailuo-frame-") as tmp:
            dest = Path(tmp) / "last.png"
            async with self.slots:
                await ffmpeg.last_frame(stored[1], dest)
            return await asyncio.to_thread(dest.read_bytes)

    async def sweep(self, now: datetime | None = None) -> int:
        """Delete kept clips older than `keep_days`, then the oldest while the rest take more than
        `max_bytes`, and leftovers with no row; returns how many listed clips went. Never raises
        StorageError (a warning: the next sweep tries again)."""
        now = now or utcnow()
        try:
            listed = await self.records.outputs()
            cutoff = now - timedelta(days=self.keep_days)
            doomed = [o for o in listed if datetime.fromisoformat(o.stored_at) < cutoff]
            kept = [o for o in listed if o not in doomed]
            total = sum(o.bytes for o in kept)
            for output in kept:  # oldest first
                if total <= self.max_bytes:
                    break
                doomed.append(output)
                total -= output.bytes
            for output in doomed:
                self._remove(output.job_id, output)
            await self.records.forget_outputs([o.job_id for o in doomed])
        except StorageError as exc:
            log.warning("could not sweep the kept clips: %s", exc)
            return 0
        known = {o.job_id for o in listed} - {o.job_id for o in doomed}
        orphans = self._sweep_orphans(known, now.timestamp() - ORPHAN_AGE_S)
        if doomed or orphans:
            log.info(
                "removed %d kept clip(s) (past %g days or over %d bytes) and %d leftover file(s); %d bytes kept",
                len(doomed), self.keep_days, self.max_bytes, orphans, total,
            )  # fmt: skip
        return len(doomed)

    def _sweep_orphans(self, known: set[int], cutoff: float) -> int:
        removed = 0
        with contextlib.suppress(OSError):
            for path in self.folder.iterdir():
                match = _KEPT_NAME.fullmatch(path.name)
                if match is None or int(match["job"]) in known:
                    continue
                with contextlib.suppress(OSError):
                    if path.stat().st_mtime <= cutoff:
                        path.unlink()
                        removed += 1
        return removed

    def _remove(self, job_id: int, output: StoredOutput | None = None) -> None:
        names = [output.clip, output.thumbnail] if output else [f"{job_id}.mp4", f"{job_id}.jpg"]
        for name in names:
            if name:
                try:
                    (self.folder / name).unlink(missing_ok=True)
                except OSError as exc:
                    log.warning("job %d: could not delete the kept %s: %s", job_id, name, exc)


def _copy(src: Path, dest: Path) -> None:
    partial = dest.with_name(dest.name + ".part")
    try:
        shutil.copyfile(src, partial)
        partial.replace(dest)
    finally:
        partial.unlink(missing_ok=True)
