"""What the end-to-end tests share: a Discord stand-in with the default upload limit (modules that need
another limit define their own `discord_fake`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.discord_server import FakeDiscord


@pytest.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord()
    await fake.start()
    yield fake
    await fake.stop()
