"""The test stand-ins (tests/fakes) with the few extra records the benchmark needs.

Subclasses, so the fakes the test suite uses stay as they are:
- Discord: when each interaction was answered (ack latency = that minus `created`), when each
  gateway heartbeat arrived (the bot's event-loop lag, seen from outside), when
  each upload's body started and finished arriving, and uploaded bytes are dropped once counted
  (a thousand 2–20 MB clips would otherwise pile up in this process).
- WaveSpeed: outputs are streamed in chunks so the time the bytes take to move is measured.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bench.workload import TAG
from tests.fakes import discord_server
from tests.fakes.discord_server import FakeDiscord, _Upload
from tests.fakes.wavespeed_server import FakeTask, FakeWaveSpeed, Scenario

OUTPUT_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Transfer:
    path: str
    started: float  # time.time()
    ended: float
    size: int


class BenchDiscord(FakeDiscord):
    def __init__(self, *, heartbeat_ms: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.heartbeat_ms = heartbeat_ms
        self.heartbeats: list[float] = []  # time.monotonic() of each op 1 received
        self.uploads: list[Transfer] = []
        self.acked_at: dict[int, float] = {}  # interaction id -> time.monotonic() of its first answer

    async def _callback(self, c: Any) -> web.Response:
        response = await super()._callback(c)
        interaction = self.interactions.get(int(c.match["iid"]))
        if interaction is not None and interaction.acked:
            self.acked_at.setdefault(interaction.id, time.monotonic())
        return response

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        # The fake reads its HELLO interval from a module constant; a short one gives many lag samples.
        saved, discord_server.HEARTBEAT_INTERVAL_MS = discord_server.HEARTBEAT_INTERVAL_MS, self.heartbeat_ms
        try:
            return await super()._gateway(request)
        finally:
            discord_server.HEARTBEAT_INTERVAL_MS = saved

    async def _on_gateway(self, conn: Any, msg: dict[str, Any]) -> None:
        if msg.get("op") == 1:
            self.heartbeats.append(time.monotonic())
        await super()._on_gateway(conn, msg)

    async def _read_body(self, request: web.Request) -> tuple[Any, list[_Upload]]:
        started = time.time()
        payload, files = await super()._read_body(request)
        if files:
            size = sum(len(f.data) for f in files)
            self.uploads.append(Transfer(request.path, started, time.time(), size))
        return payload, files

    def _new_attachments(self, payload: dict[str, Any], files: list[_Upload]) -> list[dict[str, Any]]:
        attachments = super()._new_attachments(payload, files)
        for att in attachments:  # keep the metadata (size, name), drop the bytes
            filename, content_type, _ = self._blobs[int(att["id"])]
            self._blobs[int(att["id"])] = (filename, content_type, b"")
            att["data"] = b""
        return attachments


class BenchWaveSpeed(FakeWaveSpeed):
    """Scenarios are planned per job and picked by the job's tag in the prompt (submits arrive in any
    order under load), so every task is tied to the job that made it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.downloads: dict[str, Transfer] = {}  # task id -> the output transfer
        self.planned: dict[int, Scenario] = {}  # job index -> its scenario
        self.task_of_job: dict[int, str] = {}

    def plan(self, index: int, **scenario: Any) -> None:
        self.planned[index] = Scenario(**scenario)

    def _create(self, model_id: str, body: dict[str, object], webhook_url: str | None) -> FakeTask:
        match = TAG.search(str(body.get("prompt") or ""))
        index = int(match.group(1)) if match else None
        if index is not None and index in self.planned:
            self._scenarios.appendleft(self.planned.pop(index))
        task = super()._create(model_id, body, webhook_url)
        if index is not None:
            self.task_of_job[index] = task.id
        return task

    async def _output(self, request: web.Request) -> web.StreamResponse:
        task = self.tasks.get(request.match_info["task_id"])
        if task is None or task.scenario.output_bytes is None or task.scenario.output_status != 200:
            return await super()._output(request)
        task.output_requests += 1
        data = memoryview(task.scenario.output_bytes)
        started = time.time()
        response = web.StreamResponse(headers={"Content-Type": "video/mp4", "Content-Length": str(len(data))})
        await response.prepare(request)
        for start in range(0, len(data), OUTPUT_CHUNK):
            await response.write(data[start : start + OUTPUT_CHUNK])
        await response.write_eof()
        self.downloads[task.id] = Transfer(request.path, started, time.time(), len(data))
        return response


class HeldWaveSpeed(BenchWaveSpeed):
    """WaveSpeed with a queue in front: every task reports `created` until `release()`, and then runs for its
    planned duration. Released once all N jobs are submitted, the level has exactly N jobs at the provider
    at once however fast the bot took them in; each task ends `planned duration` after the release (a task
    submitted after it, after its own submit)."""

    HOLD_S = 1e6  # long enough to read "created" (the stand-in queues a task for the first quarter of it)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.released_at: float | None = None  # time.time()
        self._runs: dict[str, float] = {}  # task id -> its planned duration, from the release

    def _create(self, model_id: str, body: dict[str, object], webhook_url: str | None) -> FakeTask:
        task = super()._create(model_id, body, None)  # no end-of-task callback yet: its end is not known
        task.webhook_url = webhook_url
        self._runs[task.id] = task.duration_s
        if self.released_at is None:
            task.duration_s = self.HOLD_S
        else:
            self._start(task, time.time())
        return task

    def release(self) -> None:
        now = time.time()
        self.released_at = now
        for task in self.tasks.values():
            self._start(task, now)

    def _start(self, task: FakeTask, now: float) -> None:
        task.duration_s = (now - task.submitted_at) + self._runs[task.id]
        if task.webhook_url:
            self._spawn(self._callback_at_end(task))
