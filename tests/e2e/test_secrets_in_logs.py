"""End to end at DEBUG: a whole run (gateway, interactions, callbacks, a task failing with our key in its
error text) leaves no secret in any log output or in the database's error text, in either log format
(bot.log_format "json": every line is one JSON object, too)."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.jobs import JobRecord
from tests.e2e.harness import free_port, running_bot, webhooks_config
from tests.e2e.test_generation_flows import finished
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.wavespeed_server import FakeWaveSpeed
from tests.leaks import echoes, key_echoes, logging_as_the_bot_does

BOT_TOKEN = "MTA5ODc2NTQzMjEwOTg3NjU0Mw.GhJkLm.q7Xz0aB3cD4eF5gH6iJ7kL8mN9oP0qR1sT2uV3"
WS_KEY = "wsk_live_4Tq8Lm2Xz7Pb9Rv3Nc5Kd6"
TOAPIS_SECRET = "tws_9Hq2Lx7Pz4Rt8Vb3Nc6Kd1"


@dataclass
class Run:
    failed: JobRecord | None
    event_details: list[str]
    path_token: str | None
    signing_secret: str
    callbacks: int


async def a_clip_and_a_failure_quoting_the_key(tmp_path: Path, fake: FakeDiscord) -> Run:
    """Job 1 is delivered (its callback wakes it); job 2's task fails with our key echoed in its error."""
    async with (
        FakeWaveSpeed(WS_KEY, duration_s=0.3) as wavespeed,
        running_bot(
            tmp_path,
            fake,
            providers={"wavespeed": (wavespeed.base_url, WS_KEY)},
            secrets={"toapis_webhook_secret": TOAPIS_SECRET},
            extra=webhooks_config(free_port()),
        ) as bot,
    ):
        await fake.invoke("video", {"prompt": "a kite over the sea"})
        await fake.wait_until(lambda: len(finished(fake)) == 1, timeout=30)
        upper, short, middle, _ = key_echoes(WS_KEY)
        wavespeed.next_scenario(outcome="failed", error_text=f"invalid key {upper}; tried {short} and {middle}")
        await fake.invoke("video", {"prompt": "a lighthouse"})
        await fake.wait_until(lambda: len(finished(fake)) == 2, timeout=30)
        await bot.wait_jobs_done()
        rows = await bot.app.db.fetchall("SELECT detail FROM job_events")
        return Run(
            failed=await bot.app.store.get(2),
            event_details=[row["detail"] or "" for row in rows],
            path_token=await bot.app.store.get_meta("webhook_path_token"),
            signing_secret=wavespeed.webhook_secret,
            callbacks=len(wavespeed.webhook_deliveries),
        )


@pytest.mark.sqlite_only  # it checks that the SQLite driver's DEBUG lines were there to be searched
@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_a_debug_run_logs_no_token_key_or_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fmt: str
) -> None:
    caplog.set_level(logging.DEBUG)
    ours = io.StringIO()
    fake = FakeDiscord(bot_token=BOT_TOKEN)
    await fake.start()
    try:
        with logging_as_the_bot_does([BOT_TOKEN, WS_KEY, TOAPIS_SECRET], ours, fmt=fmt):
            run = await a_clip_and_a_failure_quoting_the_key(tmp_path, fake)
    finally:
        await fake.stop()

    assert run.failed is not None and run.failed.status == "failed" and run.failed.error_detail is not None
    assert run.failed.error_detail.startswith("invalid key ***") and echoes(run.failed.error_detail, WS_KEY) == []
    assert all(echoes(detail, WS_KEY) == [] for detail in run.event_details)
    assert run.path_token is not None and run.callbacks == 2
    interaction_tokens = [interaction.token for interaction in fake.interactions.values()]
    assert len(interaction_tokens) == 2 and all(t.startswith("aW50ZXJhY3Rpb246") for t in interaction_tokens)
    secrets = [BOT_TOKEN, WS_KEY, TOAPIS_SECRET, run.path_token, run.signing_secret, *interaction_tokens]
    for logs in (ours.getvalue(), caplog.text):
        for secret in secrets:
            assert echoes(logs, secret) == [], (secret, echoes(logs, secret))
        # Where the secrets would have been: the run was logged at DEBUG, by discord.py, aiosqlite and httpx.
        assert "'t': 'INTERACTION_CREATE'" in logs and "'token': '***'" in logs
        assert f"/interactions/{min(fake.interactions)}/***/callback" in logs
        assert "executing functools.partial" in logs and "webhook_path_token" in logs
        assert "webhooks%2Fwavespeed%2F***" in logs
        assert "job 2: failed" in logs
    if fmt == "json":
        records = [json.loads(line) for line in ours.getvalue().splitlines()]
        assert any(record.get("job_id") == 2 and "failed" in record["message"] for record in records)
