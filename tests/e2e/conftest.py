"""What the end-to-end tests share: a Discord stand-in with the default upload limit and a WaveSpeed stand-in
(modules that need others define their own `discord_fake` or `wavespeed`), and with `--database postgresql`
a PostgreSQL database per test for every bot the harness starts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.e2e import harness
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.wavespeed_server import FakeWaveSpeed


@pytest.fixture(autouse=True)
def e2e_database(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.config.getoption("--database") != "postgresql":
        yield
        return
    if request.node.get_closest_marker("sqlite_only") is not None:
        pytest.skip("asserts something only SQLite has")
    harness.DEFAULT_DATABASE_URL = request.getfixturevalue("pg_url")
    try:
        yield
    finally:
        harness.DEFAULT_DATABASE_URL = None


@pytest.fixture
async def wavespeed() -> AsyncIterator[FakeWaveSpeed]:
    """The WaveSpeed stand-in most end-to-end tests use (a module that needs other timings defines its own)."""
    async with FakeWaveSpeed("ws-test-key", duration_s=0.6) as fake:
        yield fake


@pytest.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord()
    await fake.start()
    yield fake
    await fake.stop()
