"""How soon the bot sees that a provider task ended, through every provider, callbacks off and on.

With the typical duration configured to the stand-in's job length, the task's end must be seen within
`poll_dense_seconds` + 1 s. The stand-ins send what the real APIs send on every answer (ToAPIs'
`X-RateLimit-*` on 200s included), so a client that misreads them shows up here as a late notice.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.e2e.harness import free_port, running_bot, webhooks_config
from tests.e2e.test_generation_flows import finished
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.local_server import LocalServer
from tests.fakes.minimax_server import FakeMiniMax
from tests.fakes.seaart_server import FakeSeaArt
from tests.fakes.toapis_server import FakeToApis
from tests.fakes.wavespeed_server import FakeWaveSpeed

log = logging.getLogger(__name__)

# The stand-in's job length, and the typical duration the bot is configured with: off the whole seconds
# the polls fall on, so no poll lands just after the end by luck.
JOB_SECONDS = 4.5
DENSE = 1.0  # poll_dense_seconds
TOAPIS_SECRET = "whsec-notice-delay-test-secret-0123456789"


class Timed(Protocol):
    completed_at: float | None
    terminal_seen_at: float | None


@dataclass
class StandIn:
    server: Any  # one of the four provider stand-ins
    key: str

    def only_task(self) -> Timed:
        [task] = self.server.tasks.values()
        return task  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def stand_in(name: str) -> AsyncIterator[StandIn]:
    server: LocalServer
    if name == "wavespeed":
        server = FakeWaveSpeed(duration_s=JOB_SECONDS)
    elif name == "seaart":
        server = FakeSeaArt(duration_s=JOB_SECONDS)
    elif name == "minimax":
        server = FakeMiniMax(duration_s=JOB_SECONDS)
    else:
        server = FakeToApis(duration_s=JOB_SECONDS, webhook_secret=TOAPIS_SECRET)
    async with server:
        yield StandIn(server, server.api_key)  # type: ignore[attr-defined]


@pytest.mark.parametrize("callbacks", ["off", "on"])
@pytest.mark.parametrize("name", ["wavespeed", "seaart", "minimax", "toapis"])
async def test_a_finished_task_is_seen_within_the_dense_interval(
    tmp_path: Path, discord_fake: FakeDiscord, name: str, callbacks: str
) -> None:
    extra = webhooks_config(free_port()) if callbacks == "on" else ""
    async with stand_in(name) as provider:
        async with running_bot(
            tmp_path,
            discord_fake,
            wavespeed_key=None,
            providers={name: (provider.server.base_url, provider.key)},
            # The ToAPIs signing secret is set either way: a secret alone must not make the bot expect
            # callbacks (and poll as if they came) when it has no public URL for them.
            secrets={"toapis_webhook_secret": TOAPIS_SECRET},
            order=f'["{name}"]',
            dense=DENSE,
            sparse_cap=15,
            typical=JOB_SECONDS,
            deadline=120,
            extra=extra,
        ) as bot:
            await discord_fake.invoke("video", {"prompt": "a lighthouse in a storm"})
            await discord_fake.wait_until(lambda: len(finished(discord_fake)) == 1, timeout=90)
            await bot.assert_ledger_balanced()
        task = provider.only_task()
        assert task.completed_at is not None and task.terminal_seen_at is not None
        delay = task.terminal_seen_at - task.completed_at
        log.info("notice delay: %s, callbacks %s: %.2f s", name, callbacks, delay)  # shown with --log-cli-level=INFO
        assert delay <= DENSE + 1, f"{name} (callbacks {callbacks}): the end was seen {delay:.2f} s late"
