"""What every paid provider client must do with a submit whose fate is uncertain, each against its own
stand-in over a real socket. The money rules rest on it: a refused connection created nothing (the job
may fail over), a request that left without an answer may have created a billed task (never resubmitted,
never failed over)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from core.provider import Provider, ProviderError
from core.spec import GenerationSpec
from core.tasks import FailureKind
from providers.kit.transport import AiohttpTransport
from providers.minimax import MiniMaxProvider
from providers.seaart import SeaArtProvider
from providers.toapis import ToApisProvider
from providers.wavespeed import WaveSpeedProvider
from tests.fakes.minimax_server import FakeMiniMax
from tests.fakes.seaart_server import FakeSeaArt
from tests.fakes.toapis_server import FakeToApis
from tests.fakes.wavespeed_server import FakeWaveSpeed

SPEC = GenerationSpec(mode="t2v", quality="standard", duration=6, prompt="a lighthouse in a storm")


@dataclass(frozen=True)
class Case:
    name: str
    fake: Callable[[str], Any]  # api key -> stand-in
    client: Callable[..., Provider]  # (key, base_url, transport=, timeout=) -> provider
    key: str
    submit_path: str  # the create endpoint's path, to count the POSTs that reached it

    def provider(self, base_url: str, timeout: float = 2.0) -> Provider:
        # Plain HTTP to 127.0.0.1: verification off only spares loading the CA bundle per client.
        return self.client(self.key, base_url, transport=AiohttpTransport(verify=False), timeout=timeout)


CASES = [
    Case("wavespeed", FakeWaveSpeed, WaveSpeedProvider, "ws-test-key", "/api/v3/"),
    Case("seaart", FakeSeaArt, SeaArtProvider, "sa-test-key", "/model/v1/queue/"),
    Case("minimax", FakeMiniMax, MiniMaxProvider, "mm-test-key", "/v1/video_generation"),
    Case("toapis", FakeToApis, ToApisProvider, "ta-test-key", "/v1/videos/generations"),
]


@pytest.fixture(params=CASES, ids=lambda case: case.name)
def case(request: pytest.FixtureRequest) -> Case:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def fake(case: Case) -> AsyncIterator[Any]:
    async with case.fake(case.key) as server:
        yield server


async def submit_error(provider: Provider) -> ProviderError:
    try:
        with pytest.raises(ProviderError) as info:
            await provider.submit(SPEC)
    finally:
        await provider.aclose()
    return info.value


def submits_seen(fake: Any, case: Case) -> list[int]:
    """The HTTP status of every create that reached the stand-in (0: dropped without an answer)."""
    return [r.status for r in fake.requests if r.method == "POST" and r.path.startswith(case.submit_path)]


async def test_connection_refused_is_unavailable_and_not_ambiguous(case: Case) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}" + ("/model" if case.name == "seaart" else "")
    exc = await submit_error(case.provider(base))
    assert exc.kind is FailureKind.UNAVAILABLE and exc.maybe_created is False


async def test_connection_dropped_after_create_is_ambiguous_and_not_resubmitted(fake: Any, case: Case) -> None:
    fake.drop_next_submit_after_create()
    exc = await submit_error(case.provider(fake.base_url))
    assert exc.kind is FailureKind.UNAVAILABLE and exc.maybe_created is True
    assert len(fake.submits) == 1 and len(fake.tasks) == 1
    assert submits_seen(fake, case) == [0]


async def test_read_timeout_after_sending_is_ambiguous_and_not_resubmitted(fake: Any, case: Case) -> None:
    fake.slow_next_submit(0.4)
    exc = await submit_error(case.provider(fake.base_url, timeout=0.1))
    assert exc.kind is FailureKind.UNAVAILABLE and exc.maybe_created is True
    assert len(fake.submits) == 1 and len(fake.tasks) == 1
