"""The same jobs polled the way the official `wavespeed` Python SDK polls (docs/providers/wavespeed.md §13).

`Client.run()` submits, then `_wait()` fetches the result at once and, while it is not terminal,
sleeps `poll_interval` (1.0 s by default) and fetches again: no backoff, no Retry-After. Each twin
runs against its own WaveSpeed stand-in with the same provider duration as its bot job, so the two
are compared on identical work in the same run. The SDK returns output URLs and leaves the download
to the caller: one request, counted here but not made (it is the same for both sides).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from bench.workload import Job

SDK_POLL_INTERVAL = 1.0
# The SDK 2.0.x terminal set (docs/providers/wavespeed.md §6).
TERMINAL = {"completed", "failed", "cancelled", "timeout"}


@dataclass(frozen=True)
class TwinRun:
    index: int
    task_id: str
    polls: int  # result fetches this client made (the stand-in counts them too)


async def run_twin(client: httpx.AsyncClient, job: Job, start: float, api_key: str) -> TwinRun:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, start + job.at - loop.time()))
    headers = {"Authorization": f"Bearer {api_key}"}
    body = {"prompt": job.options["prompt"], "duration": 6}
    answer = await client.post("/api/v3/minimax/hailuo-2.3/t2v-standard", json=body, headers=headers)
    task_id = answer.json()["data"]["id"]
    polls = 0
    while True:
        result = await client.get(f"/api/v3/predictions/{task_id}/result", headers=headers)
        polls += 1
        if result.json()["data"]["status"] in TERMINAL:
            return TwinRun(job.index, task_id, polls)
        await asyncio.sleep(SDK_POLL_INTERVAL)


async def run_twins(base_url: str, api_key: str, jobs: list[Job], start: float) -> list[TwinRun]:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=len(jobs) or 1)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        return list(await asyncio.gather(*(run_twin(client, job, start, api_key) for job in jobs)))
