"""A worker process for tests/test_engine.py: carries jobs by writing a file per job it starts and one per
job it finishes, taking TASK_SECONDS for each."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from engine.queue import JobQueue


async def main(url: str, folder: Path, seconds: float) -> None:
    async def carry(job_id: int) -> None:
        (folder / f"started-{job_id}-{os.getpid()}").touch()
        await asyncio.sleep(seconds)
        (folder / f"finished-{job_id}-{os.getpid()}").touch()

    async with JobQueue(url, heartbeat_seconds=0.5, stalled_after=2) as queue:
        await queue.run_worker(carry, concurrency=10)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])))
