"""What the end-to-end tests share: a Discord stand-in with the default upload limit (modules that need
another limit define their own `discord_fake`), and with `--database postgresql` a PostgreSQL database per
test for every bot the harness starts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.e2e import harness
from tests.fakes.discord_server import FakeDiscord


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
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord()
    await fake.start()
    yield fake
    await fake.stop()
