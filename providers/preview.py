"""The free local provider: renders a real, clearly marked mp4 with ffmpeg instead of calling an API.

/video gets a title card of the prompt with a slow zoom; /animate moves a virtual camera over the input
image following the prompt's camera directives (see `providers.preview_render`). Nothing leaves the
machine and nothing is billed, so the whole bot (quotas, progress cards, delivery) can be tried without an
API key. Every clip carries a red "PREVIEW" badge so it is never mistaken for a generation.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from pydantic import Field

from core.provider import Capabilities, ProviderError, offers
from core.spec import DURATIONS_BY_RESOLUTION, MODEL_HAILUO_02, MODEL_HAILUO_23, GenerationSpec
from core.tasks import FailureKind, TaskState, TaskStatus
from media import ffmpeg
from providers.kit.entry import Count, FiniteFloat, ProviderEntry, ProviderSection, TypicalSeconds, Wiring
from providers.preview_render import plan_render, render_args, write_stills

log = logging.getLogger(__name__)

VARIANTS = ("t2v-standard", "t2v-pro", "i2v-standard", "i2v-pro", "i2v-fast", "i2v-fast-pro")
OUTPUT_NAME = "output.mp4"
_TASK_ID = re.compile(r"^preview-[0-9a-f]{32}$")
# Finished tasks nobody downloaded are forgotten (and their files removed) after this long.
RETENTION_S = 3600.0


# --- the provider -------------------------------------------------------------------------------------


@dataclass
class _Render:
    task_id: str
    spec: GenerationSpec
    folder: Path
    submitted: float  # monotonic
    state: TaskState = "queued"
    rendered: float = 0.0  # fraction of the clip ffmpeg has written
    detail: str = ""
    ended: float | None = None
    task: asyncio.Task[None] | None = None

    @property
    def output(self) -> Path:
        return self.folder / OUTPUT_NAME


class PreviewProvider:
    """Free local renders behind the `Provider` interface. One render at a time by default: a preview
    must never starve the bot on a small machine, and queueing also exercises the queued stage."""

    name = "preview"
    capabilities = Capabilities(
        offers=offers(MODEL_HAILUO_23, VARIANTS)
        | offers(MODEL_HAILUO_02, ("t2v-standard", "t2v-pro", "i2v-standard", "i2v-pro")),
        end_frame_models=frozenset({MODEL_HAILUO_02}),
        can_cancel=True,
        free=True,
        tasks_survive_restart=False,  # renders live in this process: after a restart they are redone
    )

    def __init__(self, work_dir: Path, *, fps: int = 24, min_runtime_s: float = 0.0, parallel: int = 1) -> None:
        self.work_dir = Path(work_dir).absolute()
        self.fps = fps
        self.min_runtime_s = min_runtime_s
        self._slots = asyncio.Semaphore(parallel)
        self._renders: dict[str, _Render] = {}
        self._closed = False

    async def submit(self, spec: GenerationSpec) -> str:
        if self._closed:
            raise ProviderError(FailureKind.UNAVAILABLE, "preview provider is closed")
        _check(spec)
        self._forget_old()
        task_id = f"preview-{uuid.uuid4().hex}"
        render = _Render(task_id, spec, self.work_dir / task_id, time.monotonic())
        self._renders[task_id] = render
        render.task = asyncio.create_task(self._run(render), name=f"render {task_id}")
        render.task.add_done_callback(_log_crash)
        log.info("preview %s: %s %s %ss queued", task_id, spec.variant, spec.resolution, spec.duration)
        return task_id

    async def poll(self, task_id: str) -> TaskStatus:
        render = self._renders.get(_valid(task_id))
        if render is None:
            # Not ours in this process: a render that finished before a restart is still on disk.
            output = self.work_dir / task_id / OUTPUT_NAME
            if output.is_file():
                return TaskStatus("succeeded", progress=1.0, output_url=output.as_uri(), raw_status="succeeded")
            log.warning("preview %s: unknown task (its render did not outlive the process that ran it)", task_id)
            return TaskStatus(
                "failed", failure=FailureKind.INTERNAL, failure_detail="unknown preview task", raw_status="unknown"
            )
        if render.state == "queued":
            waiting = [r for r in self._renders.values() if r.state == "queued"]
            return TaskStatus("queued", queue_position=waiting.index(render) + 1, raw_status="queued")
        if render.state == "running":
            return TaskStatus("running", progress=self._progress(render), raw_status="running")
        if render.state == "succeeded":
            return TaskStatus("succeeded", progress=1.0, output_url=render.output.as_uri(), raw_status="succeeded")
        if render.state == "failed":
            return TaskStatus("failed", failure=FailureKind.INTERNAL, failure_detail=render.detail, raw_status="failed")
        return TaskStatus("cancelled", raw_status="cancelled")

    async def download(self, url: str, dest: Path, max_bytes: int) -> int:
        source = self._local_output(url)
        try:
            if not source.is_file():
                raise ProviderError(FailureKind.OUTPUT_INVALID, "preview output missing")
            size = source.stat().st_size
            if size > max_bytes:
                raise ProviderError(FailureKind.OUTPUT_INVALID, f"preview output is {size} bytes > {max_bytes}")
            try:
                await asyncio.to_thread(shutil.copyfile, source, dest)
            except OSError as exc:
                dest.unlink(missing_ok=True)
                raise ProviderError(FailureKind.OUTPUT_INVALID, f"copy failed: {type(exc).__name__}") from exc
            return size
        finally:
            # The copy is the caller's now (or the output is unusable): the provider keeps nothing.
            self._renders.pop(source.parent.name, None)
            await asyncio.to_thread(shutil.rmtree, source.parent, ignore_errors=True)

    async def cancel(self, task_id: str) -> bool:
        render = self._renders.get(_valid(task_id))
        if render is None or render.state in ("succeeded", "failed"):
            return False
        await self._stop(render)
        return True

    async def aclose(self) -> None:
        self._closed = True
        for render in list(self._renders.values()):
            await self._stop(render)
        # Also whatever an earlier process left behind (a crash, or outputs nobody downloaded).
        if self.work_dir.is_dir():
            for folder in self.work_dir.iterdir():
                if _TASK_ID.match(folder.name):
                    await asyncio.to_thread(shutil.rmtree, folder, ignore_errors=True)

    # --- internals

    async def _run(self, render: _Render) -> None:
        try:
            async with self._slots:
                render.state = "running"
                await self._render(render)
            # Outside the slot: an admin's minimum runtime must not hold up the next render.
            await asyncio.sleep(max(0.0, render.submitted + self.min_runtime_s - time.monotonic()))
        except asyncio.CancelledError:
            render.state, render.ended = "cancelled", time.monotonic()
            raise
        except ffmpeg.MediaError as exc:
            self._fail(render, str(exc))
            return
        except Exception as exc:  # a bad image, a full disk: the job fails, the bot carries on
            log.exception("preview %s: render crashed", render.task_id)
            self._fail(render, f"render crashed: {type(exc).__name__}")
            return
        render.state, render.ended = "succeeded", time.monotonic()
        log.info("preview %s: done in %.1fs", render.task_id, render.ended - render.submitted)

    async def _render(self, render: _Render) -> None:
        plan = plan_render(render.spec, self.fps)
        render.folder.mkdir(parents=True, exist_ok=True)
        still, label = await asyncio.to_thread(write_stills, render.spec, plan, render.folder)
        part = render.folder / f"part-{OUTPUT_NAME}"

        def on_progress(seconds: float) -> None:
            render.rendered = min(seconds / plan.duration, 1.0)

        try:
            await ffmpeg.run_ffmpeg(
                render_args(plan, still, label, part), time_limit_s=60 + 20 * plan.duration, on_progress=on_progress
            )
            part.replace(render.output)  # the output appears whole or not at all
        finally:
            for path in (part, still, label):
                path.unlink(missing_ok=True)
        render.rendered = 1.0

    def _progress(self, render: _Render) -> float:
        if self.min_runtime_s <= 0:
            return render.rendered
        # With a minimum runtime the bar follows the clock too, so it does not sit at 100% while waiting.
        return min(render.rendered, (time.monotonic() - render.submitted) / self.min_runtime_s)

    def _fail(self, render: _Render, detail: str) -> None:
        log.warning("preview %s: failed: %s", render.task_id, detail)
        render.state, render.detail, render.ended = "failed", detail, time.monotonic()
        shutil.rmtree(render.folder, ignore_errors=True)

    async def _stop(self, render: _Render) -> None:
        """Cancel the render (its ffmpeg is killed by run_ffmpeg) and remove its files."""
        if render.task is not None and not render.task.done():
            render.task.cancel()
            await asyncio.gather(render.task, return_exceptions=True)
        if render.state not in ("succeeded", "failed"):
            render.state, render.ended = "cancelled", time.monotonic()
        await asyncio.to_thread(shutil.rmtree, render.folder, ignore_errors=True)

    def _forget_old(self) -> None:
        now = time.monotonic()
        for task_id, render in list(self._renders.items()):
            if render.ended is not None and now - render.ended > RETENTION_S:
                del self._renders[task_id]
                shutil.rmtree(render.folder, ignore_errors=True)

    def _local_output(self, url: str) -> Path:
        """The file behind one of our own output URLs; anything else is refused (never read other files)."""
        parsed = urlparse(url)
        path = Path(url2pathname(parsed.path)) if parsed.scheme == "file" else None
        if (
            path is None
            or path.name != OUTPUT_NAME
            or path.parent.parent != self.work_dir
            or not _TASK_ID.match(path.parent.name)  # also rules out `..`
        ):
            raise ProviderError(FailureKind.OUTPUT_INVALID, "not a preview output URL")
        return path


def _check(spec: GenerationSpec) -> None:
    """Refuse what a real provider would refuse, so previews behave like the paid path."""
    if spec.variant not in VARIANTS:
        raise ProviderError(FailureKind.BAD_REQUEST, f"unsupported variant {spec.variant}")
    if spec.duration not in DURATIONS_BY_RESOLUTION.get(spec.resolution, ()):
        raise ProviderError(FailureKind.BAD_REQUEST, f"{spec.duration}s is not offered at {spec.resolution}")
    if spec.mode == "i2v" and spec.image is None:
        raise ProviderError(FailureKind.BAD_REQUEST, "image-to-video needs an image")


def _valid(task_id: str) -> str:
    if not _TASK_ID.match(task_id):  # the id becomes a folder name: nothing else may get through
        raise ProviderError(FailureKind.BAD_REQUEST, "not a preview task id")
    return task_id


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("preview render task crashed", exc_info=task.exception())


class PreviewSection(ProviderSection):
    typical_seconds: TypicalSeconds = 8
    fps: Count = Field(24, ge=1, le=60)
    # Each preview takes at least this long (to try the progress card); 0 = as fast as ffmpeg renders.
    min_runtime_seconds: FiniteFloat = Field(0, ge=0, le=3600)


def _build(section: PreviewSection, wiring: Wiring) -> PreviewProvider:
    folder = wiring.data_dir / "preview" / wiring.process_tag  # renders live in the process that makes them
    return PreviewProvider(folder, fps=section.fps, min_runtime_s=section.min_runtime_seconds)


ENTRY = ProviderEntry(name="preview", section=PreviewSection, key_variable=None, factory=_build)
