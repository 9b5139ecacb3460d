"""Cool-downs and poll budgets for the whole deployment, end to end on the test session's PostgreSQL: a worker
whose submit is refused with a bad key takes the provider out, and the gateway, which picks the provider when
it reserves, quotes the next /video on another one. The worker, alone, paces each provider's whole poll budget."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.e2e.harness import running_bot
from tests.e2e.test_generation_flows import finished
from tests.e2e.test_workers import WORKERS, worker_beside
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.seaart_server import FakeSeaArt
from tests.fakes.wavespeed_server import FakeWaveSpeed
from tests.waiting import until


async def test_a_provider_a_worker_takes_out_is_out_for_the_gateway_that_quotes_the_next_video(
    tmp_path: Path, discord_fake: FakeDiscord, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.poll_share")
    fake = discord_fake
    async with FakeWaveSpeed(duration_s=0.3) as wavespeed, FakeSeaArt(duration_s=0.3) as seaart:
        wavespeed.fail_next_submit(401, "invalid authentication")  # one auth failure takes it out
        providers = {"wavespeed": (wavespeed.base_url, wavespeed.api_key), "seaart": (seaart.base_url, seaart.api_key)}
        options = {"secrets": {"database_url": pg_url}, "extra": WORKERS, "order": '["wavespeed", "seaart"]'}
        async with running_bot(tmp_path, fake, providers=providers, **options) as gateway:  # type: ignore[arg-type]
            gateway_router = gateway.app.runner.crew.router
            first = await fake.invoke("video", {"prompt": "a lighthouse"}, user_id=3001)
            await first.wait_acked()
            job = await gateway.wait_for_job(1, lambda job: job.status == "reserved")
            assert job.provider == "wavespeed", "quoted on the first provider while it is in rotation"
            async with worker_beside(gateway):
                await gateway.wait_for_job(1, lambda job: job.status == "delivered", timeout=60)
                assert (await gateway.app.store.get(1)).provider == "seaart"  # type: ignore[union-attr]
                await until(lambda: "poll budgets: 1 process(es) run jobs; this one's shares: wavespeed" in caplog.text)
            # The worker stopped; the gateway heard its decision (it was never told any other way).
            await until(lambda: not gateway_router.available("wavespeed"))
            second = await fake.invoke("video", {"prompt": "a harbour at dawn"}, user_id=3002)
            await second.wait_acked()
            job = await gateway.wait_for_job(2, lambda job: job.status == "reserved")
            assert job.provider == "seaart", "quoted on the provider still in rotation"
            async with worker_beside(gateway):  # a worker started now reads the cool-down as it starts
                await gateway.wait_for_job(2, lambda job: job.status == "delivered", timeout=60)
                await fake.wait_until(lambda: len(finished(fake)) == 2)
            await gateway.assert_ledger_balanced()
        assert len(wavespeed.submits) == 1, "nobody sent wavespeed a second job during its cool-down"
        assert len(seaart.submits) == 2
