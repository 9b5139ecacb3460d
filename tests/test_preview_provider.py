"""The free local preview provider: real clips, camera moves, the PREVIEW badge, cancel and download."""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

from core.provider import ProviderError
from core.spec import GenerationSpec, ImageInput
from core.tasks import FailureKind, TaskStatus
from media import ffmpeg
from providers.preview import PreviewProvider
from providers.preview_render import MAX_ZOOM_LEVELS, label_box, motion_paths

FPS = 8  # few frames keep the whole file fast on 2 cores; size and duration are the real ones


def jpeg(image: Image.Image) -> ImageInput:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return ImageInput(buffer.getvalue(), "image/jpeg", image.width, image.height)


def photo(width: int = 640, height: int = 480) -> ImageInput:
    """Smooth gradients plus two shapes (no repeating pattern, so "looks like a zoom of" is measurable)
    and no red anywhere (so the badge test means something)."""
    blue = Image.linear_gradient("L").rotate(90).resize((width, height))
    green = Image.linear_gradient("L").resize((width, height))
    image = Image.merge("RGB", (Image.new("L", (width, height), 30), green, blue))
    draw = ImageDraw.Draw(image)
    draw.ellipse((0.2 * width, 0.25 * height, 0.45 * width, 0.58 * height), fill=(235, 235, 235))
    draw.rectangle((0.6 * width, 0.55 * height, 0.8 * width, 0.8 * height), fill=(20, 20, 40))
    return jpeg(image)


def halves(width: int = 640, height: int = 480) -> ImageInput:
    """Blue on the left, green on the right."""
    image = Image.new("RGB", (width, height), (30, 80, 200))
    ImageDraw.Draw(image).rectangle((width // 2, 0, width, height), fill=(30, 180, 80))
    return jpeg(image)


def t2v(quality: str = "standard", duration: int = 6) -> GenerationSpec:
    return GenerationSpec("t2v", quality, duration, "A lighthouse on a cliff at dusk [Push in]")  # type: ignore[arg-type]


def i2v(prompt: str, image: ImageInput | None = None) -> GenerationSpec:
    return GenerationSpec("i2v", "standard", 6, prompt, image=image or photo())


@pytest.fixture
async def provider(tmp_path: Path) -> Any:
    preview = PreviewProvider(tmp_path / "preview", fps=FPS)
    yield preview
    await preview.aclose()


async def finish(provider: PreviewProvider, task_id: str, seen: list[TaskStatus] | None = None) -> TaskStatus:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = await provider.poll(task_id)
        if seen is not None:
            seen.append(status)
        if status.terminal:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError("render did not finish in 30 s")


async def render(provider: PreviewProvider, spec: GenerationSpec, dest: Path) -> Path:
    status = await finish(provider, await provider.submit(spec))
    assert status.state == "succeeded", status
    assert status.output_url is not None
    await provider.download(status.output_url, dest, 50_000_000)
    return dest


async def frame(clip: Path, index: int) -> Image.Image:
    png = clip.with_name(f"{clip.stem}-{index}.png")
    await ffmpeg.run_ffmpeg(
        ["-y", "-loglevel", "error", "-i", str(clip), "-vf", f"select=eq(n\\,{index})", "-frames:v", "1", str(png)],
        time_limit_s=30,
    )
    with Image.open(png) as image:
        return image.convert("RGB")


def difference(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def redness(image: Image.Image, box: tuple[int, int, int, int]) -> float:
    r, g, b = ImageStat.Stat(image.crop(box)).mean
    return r - (g + b) / 2


def centre_zoom(image: Image.Image, factor: float) -> Image.Image:
    w, h = image.size
    cw, ch = w / factor, h / factor
    return image.crop(((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)).resize(image.size)


async def test_t2v_768p_is_a_6s_16_9_clip(provider: PreviewProvider, tmp_path: Path) -> None:
    seen: list[TaskStatus] = []
    task_id = await provider.submit(t2v())
    assert task_id.startswith("preview-")
    status = await finish(provider, task_id, seen)
    assert status.state == "succeeded"
    assert status.output_url is not None and status.output_url.startswith("file://")
    assert {s.state for s in seen} <= {"queued", "running", "succeeded"}
    clip = tmp_path / "clip.mp4"
    await provider.download(status.output_url, clip, 50_000_000)
    info = await ffmpeg.probe(clip)
    assert (info.width, info.height) == (1366, 768)
    assert info.duration_s == pytest.approx(6.0, abs=0.2)


async def test_t2v_title_card_slowly_zooms(provider: PreviewProvider, tmp_path: Path) -> None:
    clip = await render(provider, t2v(), tmp_path / "clip.mp4")
    first, last = await frame(clip, 0), await frame(clip, 6 * FPS - 1)
    assert difference(first, last) > 1.0  # visibly video, not a frozen card


async def test_i2v_follows_the_image_aspect_and_pushes_in(provider: PreviewProvider, tmp_path: Path) -> None:
    clip = await render(provider, i2v("[Push in] a cat"), tmp_path / "clip.mp4")
    info = await ffmpeg.probe(clip)
    assert (info.width, info.height) == (1024, 768)  # 4:3 like the photo, at 768P's height
    assert info.duration_s == pytest.approx(6.0, abs=0.2)
    first, last = await frame(clip, 0), await frame(clip, 6 * FPS - 1)
    assert difference(first, last) > 8
    # It zoomed *in*: the last frame looks like the middle of the first one blown up.
    assert difference(last, centre_zoom(first, 1.3)) < difference(last, first) / 2


async def test_i2v_pan_left_moves_the_view_to_the_left(provider: PreviewProvider, tmp_path: Path) -> None:
    clip = await render(provider, i2v("[Pan left] a cat", halves()), tmp_path / "clip.mp4")
    first, last = await frame(clip, 0), await frame(clip, 6 * FPS - 1)

    def blue_minus_green(picture: Image.Image) -> float:
        _, g, b = ImageStat.Stat(picture).mean
        return b - g

    assert blue_minus_green(last) > blue_minus_green(first) + 15


async def test_every_clip_carries_the_preview_badge(provider: PreviewProvider, tmp_path: Path) -> None:
    for name, spec in (("t2v", t2v()), ("i2v", i2v("[Pan right,Pedestal down] then [Shake]"))):
        clip = await render(provider, spec, tmp_path / f"{name}.mp4")
        left, top, right, bottom = label_box(768)
        badge = (left + 2, top + 2, right - 2, bottom - 2)
        beside = (right + 10, top, right + 10 + (right - left), bottom)  # same size, just right of it
        for index in (0, 6 * FPS - 1):
            picture = await frame(clip, index)
            assert redness(picture, badge) > 60, (name, index)
            assert redness(picture, beside) < 20, (name, index)  # the red is the badge, not the scene


async def test_cancel_kills_the_running_render(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[asyncio.subprocess.Process] = []
    spawned = asyncio.Event()
    real_exec = asyncio.create_subprocess_exec

    async def recording(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        started.append(await real_exec(*args, **kwargs))
        spawned.set()
        return started[-1]

    monkeypatch.setattr(asyncio, "create_subprocess_exec", recording)
    provider = PreviewProvider(tmp_path / "preview", fps=24)  # a 1080P render at 24 fps takes seconds
    try:
        task_id = await provider.submit(t2v("pro"))
        await asyncio.wait_for(spawned.wait(), 10)
        assert (await provider.poll(task_id)).state == "running"
        assert started[0].returncode is None
        assert await provider.cancel(task_id) is True
        assert started[0].returncode is not None  # ffmpeg was killed, not left to finish
        assert (await provider.poll(task_id)).state == "cancelled"
        assert not (tmp_path / "preview" / task_id).exists()
        assert await provider.cancel(f"preview-{uuid.uuid4().hex}") is False
    finally:
        await provider.aclose()


async def test_download_copies_the_clip_and_removes_the_providers_copy(
    provider: PreviewProvider, tmp_path: Path
) -> None:
    status = await finish(provider, await provider.submit(t2v()))
    assert status.output_url is not None
    source = Path(status.output_url.removeprefix("file://"))
    original = source.read_bytes()
    dest = tmp_path / "copy.mp4"
    assert await provider.download(status.output_url, dest, 50_000_000) == len(original)
    assert dest.read_bytes() == original
    assert not source.parent.exists()
    with pytest.raises(ProviderError) as again:
        await provider.download(status.output_url, tmp_path / "again.mp4", 50_000_000)
    assert again.value.kind is FailureKind.OUTPUT_INVALID


async def test_download_refuses_oversized_outputs_and_foreign_urls(provider: PreviewProvider, tmp_path: Path) -> None:
    status = await finish(provider, await provider.submit(t2v()))
    assert status.output_url is not None
    dest = tmp_path / "copy.mp4"
    for url, limit in (
        (status.output_url, 1_000),
        ((tmp_path / "preview" / "elsewhere.mp4").as_uri(), 50_000_000),
        ("file:///etc/passwd", 50_000_000),
        ("https://example.com/clip.mp4", 50_000_000),
    ):
        with pytest.raises(ProviderError) as refused:
            await provider.download(url, dest, limit)
        assert refused.value.kind is FailureKind.OUTPUT_INVALID, url
        assert not dest.exists()


async def test_submit_refuses_what_hailuo_refuses(provider: PreviewProvider) -> None:
    for spec in (
        GenerationSpec("t2v", "pro", 10, "a cat"),  # 10 s exists only at 768P
        GenerationSpec("i2v", "standard", 6, "a cat"),  # no image
        GenerationSpec("t2v", "fast", 6, "a cat"),  # no fast tier for text
    ):
        with pytest.raises(ProviderError) as refused:
            await provider.submit(spec)
        assert refused.value.kind is FailureKind.BAD_REQUEST
        assert not refused.value.maybe_created
    assert not provider.work_dir.exists()  # nothing was started


async def test_a_second_render_waits_in_the_queue(provider: PreviewProvider) -> None:
    first = await provider.submit(t2v())
    second = await provider.submit(t2v())
    assert (await provider.poll(second)).queue_position == 2  # the first has not started yet
    for _ in range(1000):  # until the first one holds the render slot
        if (await provider.poll(first)).state != "queued":
            break
        await asyncio.sleep(0.01)
    waiting = await provider.poll(second)
    assert (waiting.state, waiting.queue_position) == ("queued", 1)
    assert (await finish(provider, first)).state == "succeeded"
    assert (await finish(provider, second)).state == "succeeded"


async def test_min_runtime_stretches_a_fast_render(tmp_path: Path) -> None:
    provider = PreviewProvider(tmp_path / "preview", fps=FPS, min_runtime_s=2.0)
    try:
        began = time.monotonic()
        seen: list[TaskStatus] = []
        status = await finish(provider, await provider.submit(t2v()), seen)
        assert status.state == "succeeded"
        assert time.monotonic() - began >= 2.0
        progress = [s.progress for s in seen if s.state == "running" and s.progress is not None]
        assert progress == sorted(progress)
    finally:
        await provider.aclose()


async def test_a_failed_render_is_reported_as_internal(
    provider: PreviewProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_args(*_: Any) -> list[str]:
        return ["-y", "-loglevel", "error", "-i", "/nonexistent/still.png", "-f", "mp4", "/nonexistent/out.mp4"]

    monkeypatch.setattr("providers.preview.render_args", broken_args)
    task_id = await provider.submit(t2v())
    status = await finish(provider, task_id)
    assert (status.state, status.failure) == ("failed", FailureKind.INTERNAL)
    assert not (provider.work_dir / task_id).exists()


async def test_aclose_cancels_renders_and_removes_leftovers(tmp_path: Path) -> None:
    work = tmp_path / "preview"
    stale = work / f"preview-{uuid.uuid4().hex}"
    stale.mkdir(parents=True)
    (stale / "output.mp4").write_bytes(b"left by a crash")
    (work / "keep.txt").write_text("not ours")
    provider = PreviewProvider(work, fps=FPS)
    task_id = await provider.submit(t2v())
    await provider.aclose()
    assert (await provider.poll(task_id)).state == "cancelled"
    assert sorted(p.name for p in work.iterdir()) == ["keep.txt"]
    with pytest.raises(ProviderError) as closed:
        await provider.submit(t2v())
    assert closed.value.kind is FailureKind.UNAVAILABLE


async def test_poll_after_a_restart_finds_finished_outputs_only(tmp_path: Path) -> None:
    work = tmp_path / "preview"
    done = f"preview-{uuid.uuid4().hex}"
    (work / done).mkdir(parents=True)
    (work / done / "output.mp4").write_bytes(b"a finished clip")
    provider = PreviewProvider(work, fps=FPS)  # a new process: it never saw these tasks
    assert (await provider.poll(done)).state == "succeeded"
    assert (await provider.poll(f"preview-{uuid.uuid4().hex}")).state == "failed"
    with pytest.raises(ProviderError) as bad:
        await provider.poll("../../etc")
    assert bad.value.kind is FailureKind.BAD_REQUEST


def test_moves_in_one_bracket_happen_together_and_brackets_in_turn() -> None:
    together = motion_paths([["Pan left", "Pedestal up"]])
    assert together.x == (1.0, -1.0) and together.y == (1.0, -1.0)  # the whole margin, at once
    in_turn = motion_paths([["Pan left"], ["Pedestal up"]])
    assert in_turn.x == (1.0, -1.0, -1.0) and in_turn.y == (1.0, 1.0, -1.0)
    assert motion_paths([["Pull out"]]).zoom == (1.0, 0.0)  # starts zoomed in, ends at 1×
    assert max(motion_paths([["Push in"]] * 5).zoom) == MAX_ZOOM_LEVELS
    shaky = motion_paths([["Static shot"], ["Shake"]])
    assert shaky.shake == (False, True) and shaky.travels


def test_no_moves_is_a_barely_moving_static_shot() -> None:
    still = motion_paths([])
    assert still.x == (0.0, 0.0) and still.y == (0.0, 0.0) and not still.travels
    assert 0 < still.zoom[-1] < 0.2
