"""ffmpeg utilities: probing clips, fitting a clip under an upload limit, killing runaway processes."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from media import ffmpeg
from media.ffmpeg import MediaError, VideoInfo


def make_clip(dest: Path, *, size: str, seconds: int, kbps: int, audio: bool) -> Path:
    """A noisy test pattern (noise does not compress, so the bitrate really is `kbps`)."""
    args = [ffmpeg.ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-y"]
    args += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=24,noise=alls=30:allf=t"]
    if audio:
        args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-c:a", "aac", "-b:a", "128k"]
    args += ["-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast"]
    args += ["-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{2 * kbps}k", str(dest)]
    subprocess.run(args, check=True, timeout=60)
    return dest


@pytest.fixture(scope="module")
def big_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 s of 720p with audio, about 3.4 MB."""
    return make_clip(tmp_path_factory.mktemp("clips") / "big.mp4", size="1280x720", seconds=6, kbps=4300, audio=True)


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s of 320×240 without audio, about 500 KB."""
    return make_clip(tmp_path_factory.mktemp("clips") / "small.mp4", size="320x240", seconds=2, kbps=2000, audio=False)


async def test_probe_reads_duration_frame_size_and_streams(big_clip: Path) -> None:
    info = await ffmpeg.probe(big_clip)
    assert info.duration_s == pytest.approx(6.0, abs=0.1)
    assert (info.width, info.height) == (1280, 720)
    assert info.has_video and info.has_audio
    assert info.fps == 24
    assert info.size_bytes == big_clip.stat().st_size
    assert 2_800_000 < info.size_bytes < 4_000_000  # the premise of the fit test below


async def test_probe_sees_a_clip_without_audio(small_clip: Path) -> None:
    info = await ffmpeg.probe(small_clip)
    assert (info.width, info.height, info.has_audio) == (320, 240, False)


async def test_probe_refuses_still_images_text_and_missing_files(tmp_path: Path) -> None:
    png = tmp_path / "still.png"
    Image.new("RGB", (64, 64), "red").save(png)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all")
    for path in (png, text, tmp_path / "missing.mp4"):
        with pytest.raises(MediaError):
            await ffmpeg.probe(path)


def test_parse_probe_ignores_cover_art_and_needs_a_video_stream() -> None:
    audio_with_cover = (
        "Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'song.m4a':\n"
        "  Duration: 00:03:10.00, start: 0.000000, bitrate: 130 kb/s\n"
        "  Stream #0:0[0x1](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, stereo, fltp, 128 kb/s\n"
        "  Stream #0:1[0x0]: Video: mjpeg (Baseline), yuvj420p(pc), 600x600 [SAR 1:1 DAR 1:1], 90k tbn (attached pic)\n"
    )
    with pytest.raises(MediaError, match="no video stream"):
        ffmpeg.parse_probe(audio_with_cover, 1000)
    clip = audio_with_cover.replace(" (attached pic)", "")
    assert ffmpeg.parse_probe(clip, 1000).width == 600


def test_plan_keeps_full_size_when_the_limit_is_generous_and_shrinks_when_it_is_tight() -> None:
    info = VideoInfo(duration_s=6.0, width=1920, height=1080, has_video=True, size_bytes=20_000_000, fps=24.0)
    roomy = ffmpeg.plan_encode(info, 10_000_000)
    assert roomy is not None and roomy.height == 1080
    assert 11_000 < roomy.video_kbps < 12_400  # 0.93 × 10 MB over 6 s, minus the overheads
    tight = ffmpeg.plan_encode(info, 1_000_000)
    assert tight is not None and tight.height < 1080
    assert ffmpeg.plan_encode(info, 30_000) is None


async def test_fit_to_size_brings_a_3mb_clip_under_1mb_and_keeps_it_playable(big_clip: Path, tmp_path: Path) -> None:
    dest = tmp_path / "fitted.mp4"
    result = await ffmpeg.fit_to_size(big_clip, dest, 1_000_000)
    assert result == dest
    info = await ffmpeg.probe(dest)
    assert info.size_bytes <= 1_000_000
    assert info.size_bytes > 500_000  # "as much quality as fits": the budget is used, not wasted
    assert info.duration_s == pytest.approx(6.0, abs=0.15)
    assert info.has_audio
    assert list(tmp_path.iterdir()) == [dest]  # no intermediate tries left behind


async def test_fit_to_size_returns_none_when_the_limit_is_absurd(big_clip: Path, tmp_path: Path) -> None:
    dest = tmp_path / "fitted.mp4"
    assert await ffmpeg.fit_to_size(big_clip, dest, 50_000) is None
    assert list(tmp_path.iterdir()) == []


async def test_fit_to_size_gives_up_after_two_retries_and_cleans_up(
    small_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Aim at three times the limit: every try overshoots, so the retry cap and the cleanup are exercised.
    monkeypatch.setattr(ffmpeg, "SIZE_SAFETY", 3.0)
    encodes: list[list[str]] = []
    real_run = ffmpeg.run_ffmpeg

    async def counting(args: list[str], **kwargs: Any) -> str:
        if "libx264" in args:
            encodes.append(args)
        return await real_run(args, **kwargs)

    monkeypatch.setattr(ffmpeg, "run_ffmpeg", counting)
    dest = tmp_path / "fitted.mp4"
    assert await ffmpeg.fit_to_size(small_clip, dest, 150_000) is None
    assert len(encodes) == 1 + ffmpeg.MAX_RETRIES
    rates = [int(args[args.index("-b:v") + 1].rstrip("k")) for args in encodes]
    assert rates == sorted(rates, reverse=True) and rates[0] > rates[-1]  # each retry asks for less
    assert "-an" in encodes[0]  # no audio stream to keep
    assert list(tmp_path.iterdir()) == []


async def test_fit_to_size_copies_a_clip_that_already_fits(small_clip: Path, tmp_path: Path) -> None:
    dest = tmp_path / "fitted.mp4"
    assert await ffmpeg.fit_to_size(small_clip, dest, 10_000_000) == dest
    assert dest.read_bytes() == small_clip.read_bytes()


class Spawned:
    """Records the processes asyncio starts (so a test can check they were killed)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.processes: list[asyncio.subprocess.Process] = []
        self.first = asyncio.Event()
        real_exec = asyncio.create_subprocess_exec

        async def recording(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
            proc = await real_exec(*args, **kwargs)
            self.processes.append(proc)
            self.first.set()
            return proc

        monkeypatch.setattr(asyncio, "create_subprocess_exec", recording)


ENDLESS = ["-re", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=10", "-t", "600", "-f", "null", "-"]


async def test_cancelling_run_ffmpeg_kills_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    spawned = Spawned(monkeypatch)
    task = asyncio.create_task(ffmpeg.run_ffmpeg(ENDLESS, time_limit_s=60))
    await asyncio.wait_for(spawned.first.wait(), 10)
    await asyncio.sleep(0.2)
    assert spawned.processes[0].returncode is None  # really running when cancelled
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert spawned.processes[0].returncode is not None  # killed and reaped, not left running


async def test_run_ffmpeg_times_out_and_kills_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    spawned = Spawned(monkeypatch)
    with pytest.raises(MediaError, match="timed out"):
        await ffmpeg.run_ffmpeg(ENDLESS, time_limit_s=0.5)
    assert spawned.processes[0].returncode is not None


async def test_run_ffmpeg_reports_progress_and_failures(tmp_path: Path) -> None:
    seen: list[float] = []
    args = ["-f", "lavfi", "-i", "testsrc=size=64x64:rate=10", "-t", "2", "-progress", "pipe:1", "-f", "null", "-"]
    await ffmpeg.run_ffmpeg(args, time_limit_s=30, on_progress=seen.append)
    assert seen and seen[-1] == pytest.approx(2.0, abs=0.2)
    with pytest.raises(MediaError, match="exited with"):
        await ffmpeg.run_ffmpeg(["-i", str(tmp_path / "missing.mp4"), "-f", "null", "-"], time_limit_s=30)
