"""ffmpeg utilities: find the binary, probe a clip, re-encode a clip to fit an upload limit.

Everything runs ffmpeg as a subprocess with an argument list (never a shell), under a timeout, and
kills the process when the caller is cancelled or the timeout passes, so no encode outlives its job.
There is no ffprobe in the bundled imageio-ffmpeg build, so `probe` reads `ffmpeg -i`'s stderr.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 30.0
# Room left under the limit for what bitrate control cannot promise (x264 ABR overshoots a little).
SIZE_SAFETY = 0.93
# mp4 index and headers: a fixed part plus a per-second part (sample tables grow with length).
CONTAINER_OVERHEAD_BYTES = 16_384
CONTAINER_OVERHEAD_BPS = 2_000
AUDIO_KBPS = 96
# Below this a clip is a smear of blocks, not worth posting: report that it cannot fit instead.
MIN_VIDEO_KBPS = 48
# Bits per pixel per frame under which a smaller frame looks better than a starved bigger one.
MIN_BITS_PER_PIXEL = 0.05
SCALE_HEIGHTS = (1080, 720, 540, 360)
MAX_RETRIES = 2
# Each retry aims this much lower than the overshoot alone says, so one retry usually suffices.
RETRY_MARGIN = 0.92

# Demuxers that read still images: ffmpeg opens them "as video" but they are not clips.
_IMAGE_DEMUXERS = re.compile(r"^(image2|.*_pipe)$")
_INPUT_RE = re.compile(r"^Input #0, (?P<format>[^,]+(?:,[^,\s]+)*), from ", re.MULTILINE)
_DURATION_RE = re.compile(r"Duration: (?P<h>\d+):(?P<m>\d{2}):(?P<s>\d{2}(?:\.\d+)?)")
_STREAM_RE = re.compile(r"^\s*Stream #0:\d+\S*: (?P<kind>Video|Audio): (?P<rest>.*)$", re.MULTILINE)
_SIZE_RE = re.compile(r"\b(?P<w>\d{2,5})x(?P<h>\d{2,5})\b")
_FPS_RE = re.compile(r"(?P<fps>\d+(?:\.\d+)?) fps")


class MediaError(Exception):
    """A file is not a usable video, or ffmpeg failed or timed out. The message is log-safe."""


@dataclass(frozen=True)
class VideoInfo:
    duration_s: float
    width: int
    height: int
    has_video: bool
    size_bytes: int
    has_audio: bool = False
    fps: float | None = None


@functools.cache
def ffmpeg_path() -> str:
    """A system ffmpeg when installed (usually newer, may have hardware codecs), else the bundled one."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg  # imported lazily: it is only needed when there is no system ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


ProgressCallback = Callable[[float], None]


async def run_ffmpeg(
    args: Sequence[str], *, time_limit_s: float, on_progress: ProgressCallback | None = None, check: bool = True
) -> str:
    """Run ffmpeg with `args`; return its stderr. Raises MediaError on failure (when `check`) or timeout.

    With `on_progress`, pass `-progress pipe:1` in `args`: each `out_time_us` is reported in seconds.
    The process is killed if this coroutine is cancelled or times out.
    """
    proc = await asyncio.create_subprocess_exec(
        ffmpeg_path(),
        "-hide_banner",
        "-nostdin",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(time_limit_s):
            _, stderr = await asyncio.gather(_read_progress(proc, on_progress), _read_tail(proc))
            await proc.wait()
    except TimeoutError:
        raise MediaError(f"ffmpeg timed out after {time_limit_s:.0f}s") from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if check and proc.returncode != 0:
        last = stderr.strip().splitlines()[-1:] or ["no output"]
        raise MediaError(f"ffmpeg exited with {proc.returncode}: {last[0][:200]}")
    return stderr


async def _read_progress(proc: asyncio.subprocess.Process, on_progress: ProgressCallback | None) -> None:
    assert proc.stdout is not None
    async for raw in proc.stdout:
        key, _, value = raw.decode(errors="replace").strip().partition("=")
        if on_progress is not None and key == "out_time_us" and value.lstrip("-").isdigit():
            on_progress(max(int(value), 0) / 1_000_000)


async def _read_tail(proc: asyncio.subprocess.Process, keep: int = 65_536) -> str:
    """Read stderr to the end (so ffmpeg never blocks on a full pipe) and keep only the tail."""
    assert proc.stderr is not None
    tail = b""
    while chunk := await proc.stderr.read(16_384):
        tail = (tail + chunk)[-keep:]
    return tail.decode(errors="replace")


async def probe(path: Path) -> VideoInfo:
    """Duration, frame size and streams of a video file. Raises MediaError when it is not a video."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path.name}: no such file")
    size = path.stat().st_size
    stderr = await run_ffmpeg(["-i", str(path)], time_limit_s=PROBE_TIMEOUT_S, check=False)
    return parse_probe(stderr, size, path.name)


def parse_probe(stderr: str, size_bytes: int, name: str = "file") -> VideoInfo:
    """Parse `ffmpeg -i` output (split out of `probe` so odd outputs can be tested without files)."""
    container = _INPUT_RE.search(stderr)
    if container is None:
        raise MediaError(f"{name}: not a media file ffmpeg can read")
    if _IMAGE_DEMUXERS.match(container["format"]):
        raise MediaError(f"{name}: a still image, not a video")
    duration = _DURATION_RE.search(stderr)
    if duration is None:
        raise MediaError(f"{name}: no duration")
    seconds = int(duration["h"]) * 3600 + int(duration["m"]) * 60 + float(duration["s"])
    streams = [(m["kind"], m["rest"]) for m in _STREAM_RE.finditer(stderr)]
    # Cover art in an mp4/m4a shows up as a Video stream marked "(attached pic)": not motion.
    videos = [rest for kind, rest in streams if kind == "Video" and "(attached pic)" not in rest]
    dims = _SIZE_RE.search(videos[0]) if videos else None
    if dims is None or seconds <= 0:
        raise MediaError(f"{name}: no video stream")
    fps = _FPS_RE.search(videos[0])
    return VideoInfo(
        duration_s=seconds,
        width=int(dims["w"]),
        height=int(dims["h"]),
        has_video=True,
        size_bytes=size_bytes,
        has_audio=any(kind == "Audio" for kind, _ in streams),
        fps=float(fps["fps"]) if fps else None,
    )


@dataclass(frozen=True)
class EncodePlan:
    video_kbps: int
    height: int  # output frame height (the width follows the aspect ratio)


def plan_encode(info: VideoInfo, max_bytes: int, video_kbps: float | None = None) -> EncodePlan | None:
    """Bitrate and frame height for a first try (or, given `video_kbps`, a retry). None: cannot fit."""
    if video_kbps is None:
        budget_bits = (max_bytes * SIZE_SAFETY - CONTAINER_OVERHEAD_BYTES) * 8
        total_kbps = budget_bits / info.duration_s / 1000 - CONTAINER_OVERHEAD_BPS * 8 / 1000
        video_kbps = total_kbps - (AUDIO_KBPS if info.has_audio else 0)
    if video_kbps < MIN_VIDEO_KBPS:
        return None
    fps = info.fps or 24.0
    # Largest height from the ladder (never upscaling) that still gets enough bits per pixel.
    heights = [info.height] + [h for h in SCALE_HEIGHTS if h < info.height]
    height = heights[-1]
    for candidate in heights:
        width = candidate * info.width / info.height
        if video_kbps * 1000 / (width * candidate * fps) >= MIN_BITS_PER_PIXEL:
            height = candidate
            break
    return EncodePlan(video_kbps=int(video_kbps), height=height)


async def fit_to_size(src: Path, dest: Path, max_bytes: int) -> Path | None:
    """Re-encode `src` (H.264/AAC mp4) into `dest` at the best quality that fits under `max_bytes`.

    Returns `dest`, or None when it cannot fit (limit too small, encoder failure, still too big after
    the retries). Never leaves a partial file behind; raises only when cancelled.
    """
    fitted = await _fit(src, dest, max_bytes)
    if fitted is None:
        dest.unlink(missing_ok=True)
    return fitted


async def _fit(src: Path, dest: Path, max_bytes: int) -> Path | None:
    try:
        info = await probe(src)
    except MediaError as exc:
        log.warning("fit_to_size: cannot read %s: %s", src.name, exc)
        return None
    if info.size_bytes <= max_bytes:
        shutil.copyfile(src, dest)  # already fits: a re-encode could only lose quality
        return dest
    plan = plan_encode(info, max_bytes)
    for attempt in range(MAX_RETRIES + 1):
        if plan is None:
            log.info("fit_to_size: %s cannot fit in %d bytes", src.name, max_bytes)
            return None
        size = await _encode_attempt(src, dest, info, plan, attempt)
        if size is None:
            return None
        if size <= max_bytes:
            log.info("fit_to_size: %s → %d bytes (%d kbps, %dp)", src.name, size, plan.video_kbps, plan.height)
            return dest
        log.info("fit_to_size: try %d gave %d bytes > %d, lowering the bitrate", attempt + 1, size, max_bytes)
        plan = plan_encode(info, max_bytes, plan.video_kbps * (max_bytes * SIZE_SAFETY / size) * RETRY_MARGIN)
    return None


async def _encode_attempt(src: Path, dest: Path, info: VideoInfo, plan: EncodePlan, attempt: int) -> int | None:
    """Encode one try into `dest` via a temporary file; return its size, or None when ffmpeg failed."""
    part = dest.with_name(f"{dest.stem}.try{attempt}{dest.suffix}")
    try:
        await run_ffmpeg(encode_args(src, part, info, plan), time_limit_s=60 + 20 * info.duration_s)
        part.replace(dest)
    except MediaError as exc:
        log.warning("fit_to_size: encoding %s failed: %s", src.name, exc)
        return None
    finally:
        part.unlink(missing_ok=True)
    return dest.stat().st_size


def encode_args(src: Path, dest: Path, info: VideoInfo, plan: EncodePlan) -> list[str]:
    kbps = plan.video_kbps
    args = ["-y", "-loglevel", "error", "-i", str(src), "-map", "0:v:0"]
    if plan.height < info.height:
        args += ["-vf", f"scale=-2:{plan.height}"]
    args += [
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        # maxrate = target with a 1 s buffer holds the size near the target without a second pass
        # (a 2 s buffer overshot by ~8% on noisy 720p in tests; the retries absorb the rest).
        "-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{kbps}k",
    ]  # fmt: skip
    if info.has_audio:
        args += ["-map", "0:a:0", "-c:a", "aac", "-b:a", f"{AUDIO_KBPS}k"]
    else:
        args += ["-an"]
    return [*args, "-sn", "-dn", "-movflags", "+faststart", "-f", "mp4", str(dest)]


LAST_FRAME_TIMEOUT_S = 30.0


async def last_frame(clip: Path, dest: Path) -> None:
    """The clip's very last frame, at full size, as a PNG at `dest`. Raises MediaError (or OSError).

    ffmpeg seeks to about a second before the end and writes every frame from there over the same
    file (`-update 1`), so what stays is the last one, whatever the frame rate or the final timestamp."""
    partial = dest.with_name(dest.name + ".part")
    try:
        await run_ffmpeg(
            ["-loglevel", "error", "-y", "-sseof", "-1", "-i", str(clip), "-an", "-update", "1",
             "-f", "image2", "-c:v", "png", str(partial)],
            time_limit_s=LAST_FRAME_TIMEOUT_S,
        )  # fmt: skip
        if not partial.is_file() or partial.stat().st_size == 0:
            raise MediaError("ffmpeg wrote no frame")
        partial.replace(dest)
    finally:
        partial.unlink(missing_ok=True)
