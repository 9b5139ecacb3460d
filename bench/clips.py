"""Real H.264 mp4 clips of exact sizes (2–20 MiB), made once with ffmpeg and kept in a cache folder.

Noise is encoded at the bitrate the size calls for (noise does not compress, so the encoder spends
what it is given), then an mp4 `free` box pads the file to the exact byte count. The bot downloads,
probes and uploads them like any provider output.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

from media.ffmpeg import ffmpeg_path

CLIP_SECONDS = 6
MIB = 1024 * 1024


def clip_path(cache: Path, size_bytes: int) -> Path:
    return cache / f"clip-{size_bytes}.mp4"


def make_clip(cache: Path, size_bytes: int) -> Path:
    """The cached clip of exactly `size_bytes`, encoding it first if needed."""
    path = clip_path(cache, size_bytes)
    if path.exists() and path.stat().st_size == size_bytes:
        return path
    cache.mkdir(parents=True, exist_ok=True)
    # Smaller clips get a smaller frame so the encoder can stay under the size at a sane bitrate.
    width, height = (1280, 720) if size_bytes >= 4 * MIB else (640, 360) if size_bytes >= MIB else (320, 180)
    kbps = max(int(size_bytes * 8 / CLIP_SECONDS / 1000 * 0.85), 50)
    encoded = path.with_suffix(".encoding.mp4")
    for _ in range(4):
        subprocess.run(
            [ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
             "-i", f"testsrc2=size={width}x{height}:rate=24", "-t", str(CLIP_SECONDS),
             "-vf", "noise=alls=40:allf=t", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
             "-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{kbps // 2}k",
             "-movflags", "+faststart", str(encoded)],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        size = encoded.stat().st_size
        if size <= size_bytes - 8:
            break
        kbps = int(kbps * size_bytes / size * 0.9)  # overshot: aim lower and encode again
    else:
        raise RuntimeError(f"could not encode a clip under {size_bytes} bytes")
    padding = size_bytes - size
    with encoded.open("ab") as out:  # a top-level `free` box: players and probes skip it
        out.write(struct.pack(">I4s", padding, b"free") + bytes(padding - 8))
    encoded.replace(path)
    return path


def load_clips(cache: Path, sizes_bytes: list[int]) -> dict[int, bytes]:
    return {size: make_clip(cache, size).read_bytes() for size in sizes_bytes}
