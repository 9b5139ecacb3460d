"""The benchmark's workload: who asks for what, when, and how long the provider takes.

Commands arrive in bursts (`burst_size` within one second, a burst every `burst_period` seconds);
provider durations are uniform in 30–90 s divided by the compression factor; 60 % /video and 40 %
/animate with a realistic mix of qualities and lengths; each clip's size follows its resolution
and length (768P 6 s: 2 or 5 MiB, 768P 10 s: 5 or 10 MiB, 1080P: 10 or 20 MiB). Every job comes
from a different member, as in a busy server. Seeded, so two runs draw the same jobs.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

MIB = 1024 * 1024
DURATION_RANGE_S = (30.0, 90.0)  # real provider time for one Hailuo clip (the range)
TYPICAL_S = sum(DURATION_RANGE_S) / 2  # the median of that distribution
FIRST_USER_ID = 10_000
TAG = re.compile(r"\(bench (\d+)\)")


@dataclass(frozen=True)
class Job:
    index: int
    at: float  # seconds after the level starts when the command is sent
    command: str  # video | animate
    options: dict[str, object]  # slash-command options (the image is added when sent)
    user_id: int
    provider_seconds: float  # compressed
    clip_bytes: int


@dataclass(frozen=True)
class Shape:
    compression: float
    burst_size: int = 200
    burst_period: float = 1.5
    animate_share: float = 0.4
    clip_scale: float = 1.0  # the smoke test shrinks clips to keep itself fast
    seed: int = 5


# (quality, duration, weight, clip sizes in MiB with their weights)
VIDEO_MIX = [("standard", 6, 0.55, (2, 5)), ("standard", 10, 0.2, (5, 10)), ("pro", 6, 0.25, (10, 20))]
ANIMATE_MIX = [
    ("standard", 6, 0.3, (2, 5)),
    ("fast", 6, 0.3, (2, 5)),
    ("fast", 10, 0.1, (5, 10)),
    ("pro", 6, 0.15, (10, 20)),
    ("fast-pro", 6, 0.15, (10, 20)),
]
SMALLER_CLIP_WEIGHT = 0.7
PROMPTS = [
    "A lighthouse in a storm [Push in]",
    "A paper boat drifting down a rainy street",
    "A fox running through fresh snow at dawn [Truck left]",
    "Neon city at night, light rain, reflections",
]


def clip_sizes(shape: Shape) -> list[int]:
    """Every clip size the workload can draw, in bytes."""
    mibs = {m for mix in (VIDEO_MIX, ANIMATE_MIX) for *_, sizes in mix for m in sizes}
    return sorted(max(int(m * MIB * shape.clip_scale), 64 * 1024) for m in mibs)


def draw(count: int, shape: Shape) -> list[Job]:
    rng = random.Random(shape.seed * 1_000_003 + count)
    low, high = (d / shape.compression for d in DURATION_RANGE_S)
    jobs = []
    for index in range(count):
        burst = index // shape.burst_size
        at = burst * shape.burst_period + rng.random() * min(1.0, shape.burst_period)
        animate = rng.random() < shape.animate_share
        mix = ANIMATE_MIX if animate else VIDEO_MIX
        quality, duration, _, sizes = rng.choices(mix, weights=[m[2] for m in mix])[0]
        mib = sizes[0] if rng.random() < SMALLER_CLIP_WEIGHT else sizes[1]
        # The tag travels in the prompt to the provider stand-in, which picks this job's scenario by it.
        prompt = f"{rng.choice(PROMPTS)} (bench {index})"
        options: dict[str, object] = {"prompt": prompt, "quality": quality, "duration": duration}
        jobs.append(
            Job(
                index=index,
                at=at,
                command="animate" if animate else "video",
                options=options,
                user_id=FIRST_USER_ID + index,
                provider_seconds=rng.uniform(low, high),
                clip_bytes=max(int(mib * MIB * shape.clip_scale), 64 * 1024),
            )
        )
    return sorted(jobs, key=lambda job: job.at)
