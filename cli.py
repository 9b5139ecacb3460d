"""`python bot.py generate`: one job from the terminal, through the same checks, provider and delivery.

Useful to test a provider key or a config without Discord. The job is recorded and charged like any
other (user id 0, no server), so quotas and the ledger stay truthful.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from core.errors import UserError
from core.spec import GenerationSpec, Mode
from services.images import inspect_image
from services.intake import Requester
from services.jobs import JobService
from services.pricing import format_usd
from services.progress import JobCard
from services.prompts import validate_combination, validate_prompt

TERMINAL_USER_ID = 0


class TerminalReporter:
    def __init__(self, out: Path, upload_limit: int | None) -> None:
        self.out = out
        self.upload_limit = upload_limit
        self.delivered: JobCard | None = None

    async def show(self, card: JobCard) -> None:
        extra = ""
        if card.stage == "queued" and card.queue_position:
            extra = f" (position {card.queue_position})"
        elif card.stage == "generating" and card.percent is not None:
            extra = f" ~{card.percent}%"
        elif card.message:
            extra = f": {card.message}"
        print(f"job #{card.job_id}: {card.stage}{extra}", file=sys.stderr)

    async def deliver(self, card: JobCard, clip: Path | None) -> None:
        self.delivered = card
        if clip is None:
            print(f"job #{card.job_id}: {card.message} {card.link}", file=sys.stderr)
            return
        shutil.copyfile(clip, self.out)
        print(f"job #{card.job_id}: saved {self.out} ({clip.stat().st_size} bytes)", file=sys.stderr)

    async def delivered_before(self, card: JobCard) -> bool:
        return False  # a terminal run is never resumed: the bot resumes it with a SavedClipReporter


def _read_image(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"--image: no such file: {path}") from None
    except IsADirectoryError:
        raise UserError(f"--image: {path} is a folder, not an image file") from None
    except PermissionError:
        raise UserError(f"--image: {path} cannot be read (permission denied)") from None


async def run_generate(jobs: JobService, args: argparse.Namespace) -> int:
    mode: Mode = "i2v" if args.image else "t2v"
    validate_combination(mode, args.quality, args.duration)
    prompt = validate_prompt(args.prompt, required=mode == "t2v")
    image = inspect_image(_read_image(args.image)) if args.image else None
    spec = GenerationSpec(
        mode=mode,
        quality=args.quality,
        duration=args.duration,
        prompt=prompt,
        optimize_prompt=not args.no_optimize,
        image=image,
    )
    job = await jobs.create(spec, Requester(TERMINAL_USER_ID, None, None), command="animate" if image else "video")
    print(f"job #{job.id}: {job.provider}, {format_usd(job.cost_micros)}", file=sys.stderr)
    limit = int(args.upload_limit_mib * 1024 * 1024) if args.upload_limit_mib else None
    reporter = TerminalReporter(args.out, limit)
    final = await jobs.run(job, reporter)
    return 0 if final is not None and final.status == "delivered" else 1
