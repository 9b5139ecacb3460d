"""`python bot.py generate`: jobs from the terminal, through the same checks, provider and delivery.

Useful to test a provider key or a config without Discord. Each job is recorded and charged like any
other (user id 0, no server), so quotas and the ledger stay truthful.

Parity with /video and /animate: `--model` (the models the configured providers serve), `--end-image`
(Hailuo 02 only), `--camera` (moves that become a bracket at the start of the prompt) and `--variants N`
(N jobs with the same settings, each reserved and charged on its own, run at once).

stderr carries the progress: one line rewritten in place on a terminal, one line per stage change
otherwise. The console log handler writes through the same `Progress`, so a log line first clears the
progress line and never lands in the middle of one; during a run only warnings are logged unless
`--verbose`. Clips go to `--out`, or by default to `<data_dir>/clips/<time>-<job id>.mp4`: the data folder
is the bot's own (ignored by git when it is the default `data/`), so a run from the repository leaves no
file in the work tree.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TextIO, cast

from core.errors import QuotaExceeded, UserError
from core.jobs import JobRecord
from core.spec import END_FRAME_MODELS, MODEL_HAILUO_23, MODEL_LABELS, GenerationSpec, ImageInput, Mode, Quality
from services.image_pool import ImageChecker
from services.images import check_declared
from services.intake import Requester
from services.jobs import JobService
from services.pricing import format_usd
from services.progress import JobCard
from services.prompts import validate_combination, validate_prompt, with_camera

TERMINAL_USER_ID = 0
MAX_VARIANTS = 4
# The same rule and words as /animate (cogs/generate.py).
END_FRAME_NEEDS_02 = "An end frame needs the Hailuo 02 model. Choose `model: Hailuo 02`."
END_FRAME_NEEDS_IMAGE = "--end-image needs --image: the clip moves from the first frame to the last."
CLEAR_LINE = "\r\x1b[K"
IN_FLIGHT_LIMIT = "user_max_in_flight"  # QuotaExceeded.limit of "too many at a time"


# ----- stderr: progress and log lines -----------------------------------------------------------------


class Progress:
    """The jobs' stages on stderr, and the stream the console log handler writes through.

    On a terminal (`tty`) one line shows every job and is rewritten in place; anything else written
    (a log record, a message) first clears that line, then the line is drawn again below it. Elsewhere
    (a pipe, a file) each stage change is a line of its own. Every write holds one lock, so lines from
    the log handler and from the jobs never interleave."""

    def __init__(self, stream: TextIO, *, tty: bool) -> None:
        self._stream = stream
        self._tty = tty
        self._lock = threading.RLock()
        self._states: dict[int, str] = {}  # job id -> what the line says about it
        self._stages: dict[int, str] = {}  # job id -> the last stage printed (not a tty)
        self._shown = False  # the progress line is on screen (tty)

    def update(self, card: JobCard) -> None:
        with self._lock:
            self._states[card.job_id] = _state(card)
            if self._tty:
                self._draw()
            elif self._stages.get(card.job_id) != card.stage:
                self._stages[card.job_id] = card.stage
                self._stream.write(f"job #{card.job_id}: {self._states[card.job_id]}\n")
                self._stream.flush()

    def line(self, text: str) -> None:
        """A message of its own, above the progress line."""
        self.write(text + "\n")

    def finish(self) -> None:
        """Clear the progress line: what follows is the summary."""
        with self._lock:
            self._clear()
            self._states.clear()
            self._stream.flush()

    # The file-like side, for logging.StreamHandler.
    def write(self, text: str) -> int:
        with self._lock:
            self._clear()
            written = self._stream.write(text)
            if text.endswith("\n"):
                self._draw()
            self._stream.flush()
            return written

    def flush(self) -> None:
        with self._lock:
            self._stream.flush()

    def _clear(self) -> None:
        if self._shown:
            self._stream.write(CLEAR_LINE)
            self._shown = False

    def _draw(self) -> None:
        if not self._tty or not self._states:
            return
        width = max(shutil.get_terminal_size().columns - 1, 20)
        text = " · ".join(f"#{job_id} {state}" for job_id, state in sorted(self._states.items()))
        if len(text) > width:
            text = text[: width - 1] + "…"
        self._stream.write(CLEAR_LINE + text)
        self._stream.flush()
        self._shown = True


def _state(card: JobCard) -> str:
    if card.stage == "queued" and card.queue_position:
        return f"queued (position {card.queue_position})"
    if card.stage == "generating" and card.percent is not None:
        return f"generating ~{card.percent}%"
    if card.message and card.final:
        return f"{card.stage}: {card.message}"
    return card.stage


@contextmanager
def terminal_console(*, verbose: bool, stream: TextIO | None = None) -> Iterator[Progress]:
    """A `Progress` on stderr for the length of a run, with the console log handlers writing through it
    (and showing warnings only, unless `verbose`). Puts the handlers back as they were afterwards."""
    target = stream or sys.stderr
    progress = Progress(target, tty=target.isatty())
    handlers = [
        handler
        for handler in logging.getLogger().handlers
        if isinstance(handler, logging.StreamHandler) and handler.stream is target
    ]
    before = [(handler, handler.level) for handler in handlers]
    for handler in handlers:
        handler.setStream(cast(TextIO, progress))
        if not verbose:
            handler.setLevel(max(handler.level, logging.WARNING))
    try:
        yield progress
    finally:
        progress.finish()
        for handler, level in before:
            handler.setStream(target)
            handler.setLevel(level)


# ----- the jobs --------------------------------------------------------------------------------------


class TerminalReporter:
    def __init__(self, out: Path, upload_limit: int | None, progress: Progress) -> None:
        self.out = out
        self.upload_limit = upload_limit
        self.progress = progress
        self.delivered: JobCard | None = None

    async def show(self, card: JobCard) -> None:
        self.progress.update(card)

    async def deliver(self, card: JobCard, clip: Path | None) -> None:
        self.delivered = card
        if clip is None:
            self.progress.line(f"job #{card.job_id}: {card.message} {card.link}")
            return
        await asyncio.to_thread(shutil.copyfile, clip, self.out)
        self.progress.line(f"job #{card.job_id}: saved {self.out} ({clip.stat().st_size} bytes)")

    async def delivered_before(self, card: JobCard) -> bool:
        return False  # a terminal run is never resumed: the bot resumes it with a SavedClipReporter


@dataclass(frozen=True)
class Outputs:
    """Where each variant's clip goes: `--out` (with `-1`, `-2`… when there are several), or
    `<clips>/<time>-<job id>.mp4`."""

    out: Path | None
    clips: Path
    count: int
    stamp: str

    def path(self, job_id: int, number: int) -> Path:
        if self.out is None:
            return self.clips / f"{self.stamp}-{job_id}.mp4"
        if self.count == 1:
            return self.out
        return self.out.with_name(f"{self.out.stem}-{number}{self.out.suffix or '.mp4'}")

    def prepare(self) -> None:
        """Refuse an --out that cannot be written, before anything is reserved; create the clips folder."""
        if self.out is None:
            try:
                self.clips.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"cannot create {self.clips} for the clips ({exc.strerror}); choose --out.") from None
            return
        if self.out.is_dir():
            raise UserError(f"--out: {self.out} is a folder; give a file name, e.g. {self.out / 'clip.mp4'}")
        if not self.out.parent.is_dir():
            raise UserError(f"--out: no such folder: {self.out.parent}")


def _read_image(path: Path, flag: str) -> bytes:
    try:
        check_declared(path.stat().st_size, path.name)
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{flag}: no such file: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{flag}: {path} is a folder, not an image file") from None
    except PermissionError:
        raise UserError(f"{flag}: {path} cannot be read (permission denied)") from None
    except UserError as exc:
        raise UserError(f"{flag} {path}: {exc.message}") from None
    except OSError as exc:
        raise UserError(f"{flag}: {path} cannot be read ({exc.strerror or exc})") from None


async def _check_images(image: Path | None, end_image: Path | None) -> tuple[ImageInput | None, ImageInput | None]:
    """Read and check the images in the worker pool the bot uses (a hostile file cannot hang the run)."""
    if image is None:
        return None, None
    checker = ImageChecker()
    try:
        checked: list[ImageInput | None] = []
        for path, flag in ((image, "--image"), (end_image, "--end-image")):
            if path is None:
                checked.append(None)
                continue
            data = _read_image(path, flag)
            try:
                checked.append(await checker.check(data))
            except UserError as exc:
                raise UserError(f"{flag} {path}: {exc.message}") from None
        return checked[0], checked[1]
    finally:
        await checker.close()


def build_spec(args: argparse.Namespace, models: tuple[str, ...]) -> GenerationSpec:
    """The checks that need no file, in the commands' order: model, combination, end frame, prompt."""
    mode: Mode = "i2v" if args.image else "t2v"
    model = args.model or MODEL_HAILUO_23
    if models and model not in models:
        served = ", ".join(f"{name} ({MODEL_LABELS.get(name, name)})" for name in models)
        raise UserError(f"--model {model}: the configured providers do not serve it; choose {served}.")
    validate_combination(mode, args.quality, args.duration, model)
    if args.end_image is not None:
        if args.image is None:
            raise UserError(END_FRAME_NEEDS_IMAGE)
        if model not in END_FRAME_MODELS:
            raise UserError(END_FRAME_NEEDS_02)
    prompt = validate_prompt(with_camera(args.prompt, args.camera), required=mode == "t2v")
    return GenerationSpec(
        mode=mode,
        quality=cast(Quality, args.quality),
        duration=args.duration,
        prompt=prompt,
        optimize_prompt=not args.no_optimize,
        model=model,
    )


async def _reserve(
    jobs: JobService,
    spec: GenerationSpec,
    command: str,
    running: set[asyncio.Task[JobRecord | None]],
    progress: Progress,
    label: str,
    refused: list[str],
) -> JobRecord | None:
    """Reserve one variant like any job. Refused for the in-flight limit while other variants run, it
    waits for one of them to end and asks again (the limit holds); any other refusal is final for this
    variant only, noted in `refused`."""
    while True:
        try:
            return await jobs.create(spec, Requester(TERMINAL_USER_ID, None, None), command=command)
        except QuotaExceeded as exc:
            if exc.limit != IN_FLIGHT_LIMIT or not running:
                refused.append(f"{label}{exc.message}")
                progress.line(refused[-1])
                return None
            progress.line(f"{label}waits for another to finish ({exc.message})")
            await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        except UserError as exc:
            refused.append(f"{label}{exc.message}")
            progress.line(refused[-1])
            return None


def _short(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


async def run_generate(jobs: JobService, args: argparse.Namespace, *, clips: Path, progress: Progress) -> int:
    """Check everything, reserve `--variants` jobs one by one, run them at once. 0 when every clip was
    delivered; 1 when any job was refused or failed (each is named)."""
    spec = build_spec(args, jobs.offer().models)
    count = args.variants
    outputs = Outputs(args.out, clips, count, datetime.now().strftime("%Y%m%d-%H%M%S"))
    outputs.prepare()
    first, last = await _check_images(args.image, args.end_image)
    spec = replace(spec, image=first, end_image=last)
    if spec.prompt:
        progress.line(f"prompt: {_short(spec.prompt)}")
    limit = int(args.upload_limit_mib * 1024 * 1024) if args.upload_limit_mib else None
    command = "animate" if first else "video"
    started: list[tuple[JobRecord, asyncio.Task[JobRecord | None]]] = []
    running: set[asyncio.Task[JobRecord | None]] = set()
    refused: list[str] = []
    for number in range(1, count + 1):
        label = f"variant {number}: " if count > 1 else ""
        job = await _reserve(jobs, spec, command, running, progress, label, refused)
        if job is None:
            continue
        progress.line(f"job #{job.id}: {job.provider}, {format_usd(job.cost_micros)}")
        reporter = TerminalReporter(outputs.path(job.id, number), limit, progress)
        task = asyncio.create_task(jobs.run(job, reporter), name=f"job-{job.id}")
        running.add(task)
        task.add_done_callback(running.discard)
        started.append((job, task))
    finals = await asyncio.gather(*(task for _, task in started))
    progress.finish()
    failed = [
        f"job #{job.id} ({final.status.value if final is not None else 'not finished'})"
        for (job, _), final in zip(started, finals, strict=True)
        if final is None or final.status != "delivered"
    ]
    if count > 1 and (failed or refused):
        parts = [*failed, *(f"{why.split(':', 1)[0]} (not started)" for why in refused)]
        progress.line(f"{len(failed) + len(refused)} of {count} variants did not finish: {', '.join(parts)}.")
    return 1 if failed or refused else 0
