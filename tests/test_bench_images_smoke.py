"""A tiny run of the image benchmark (bench/images.py) so it cannot rot: every corpus file gets an old and a
new row, and the four "6 bombs at once" rows are printed. Speed is measured there, never asserted here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests import hostile_images as hostile

ROOT = Path(__file__).resolve().parents[1]


def test_the_image_benchmark_prints_every_row() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.images", "--scale", "0.01"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    for item in hostile.corpus():
        [row] = [line for line in lines if line.startswith(item.name + " ")]
        for column in row.split(" | ")[1:]:  # old, new (at this scale some attacks are small enough to pass)
            assert column.split()[0] in ("accepted", "refused:"), row
    for phase in ("(no bombs: baseline)", "old: asyncio.to_thread", "new: worker pool", "new, structure budget off"):
        assert any(line.startswith(phase) for line in lines), phase
