"""The prometheus-client adapter of the metrics port, Discord routes as label values, and the endpoint."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
import yarl
from prometheus_client.parser import text_string_to_metric_families

from core.jobs import JobStatus
from ops_metrics import PrometheusMetrics, discord_route
from ops_server import ListenError, OpsServer, Readiness

TOKEN = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDEyMzQ1Njc4OkFiQ2RFZkdoSWpLbE1uT3A"


def samples(metrics: PrometheusMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(metrics.render()[0].decode())
        for sample in family.samples
    }


def gauge(metrics: PrometheusMetrics, state: str) -> float:
    return samples(metrics)[("hailuo_jobs", frozenset({("state", state)}))]


def test_a_job_moves_between_state_gauges_and_ends_in_an_outcome_counter() -> None:
    metrics = PrometheusMetrics()
    metrics.job_moved(None, JobStatus.RESERVED)
    metrics.job_moved(None, JobStatus.RUNNING)  # a resumed job, found running
    assert gauge(metrics, "reserved") == 1 and gauge(metrics, "running") == 1
    metrics.job_moved(JobStatus.RESERVED, JobStatus.SUBMITTING)
    metrics.job_moved(JobStatus.RUNNING, JobStatus.DELIVERED)
    metrics.job_moved(JobStatus.SUBMITTING, JobStatus.FAILED)
    found = samples(metrics)
    assert all(found[("hailuo_jobs", frozenset({("state", s.value)}))] == 0 for s in JobStatus if not s.terminal)
    ended = {dict(labels)["outcome"]: v for (name, labels), v in found.items() if name == "hailuo_jobs_ended_total"}
    assert ended == {"delivered": 1, "failed": 1, "cancelled": 0}


def test_money_provider_calls_notices_and_lag_are_exposed() -> None:
    metrics = PrometheusMetrics()
    metrics.reserved(280_000)
    metrics.reserved(490_000)
    metrics.refunded(490_000)
    metrics.settled(280_000, 0)
    metrics.provider_call("wavespeed", "create", 0.8, None)
    metrics.provider_call("wavespeed", "poll", 0.03, None)
    metrics.provider_call("wavespeed", "poll", 0.04, "rate_limited")
    metrics.notice_delay("wavespeed", "poll", 0.7)
    metrics.loop_lag(0.002)
    found = samples(metrics)

    def one(name: str, **labels: str) -> float:
        return found[(name, frozenset(labels.items()))]

    assert one("hailuo_reservations_total") == 2 and one("hailuo_reserved_microdollars_total") == 770_000
    assert one("hailuo_refunds_total") == 1 and one("hailuo_refunded_microdollars_total") == 490_000
    assert one("hailuo_charged_microdollars_total") == 280_000
    ws = {"provider": "wavespeed"}
    assert one("hailuo_provider_request_duration_seconds_count", **ws, operation="poll") == 2
    assert one("hailuo_provider_request_duration_seconds_bucket", **ws, operation="create", le="1.0") == 1
    assert one("hailuo_provider_polls_total", **ws) == 2
    assert one("hailuo_provider_errors_total", **ws, operation="poll", kind="rate_limited") == 1
    assert one("hailuo_notice_delay_seconds_bucket", **ws, basis="poll", le="1.0") == 1
    assert one("hailuo_event_loop_lag_seconds_count") == 1


def test_each_app_has_a_registry_of_its_own() -> None:
    first, second = PrometheusMetrics(), PrometheusMetrics()  # the global registry would refuse the second
    first.reserved(1)
    assert samples(first)[("hailuo_reservations_total", frozenset())] == 1
    assert samples(second)[("hailuo_reservations_total", frozenset())] == 0


@pytest.mark.parametrize(
    ("url", "route"),
    [
        ("https://discord.com/api/v10/channels/123456789012345678/messages", "/channels/{id}/messages"),
        (f"https://discord.com/api/v10/interactions/123456789012345678/{TOKEN}/callback?with_response=false",
         "/interactions/{id}/{token}/callback"),
        (f"https://discord.com/api/v10/webhooks/987654321098765432/{TOKEN}/messages/@original",
         "/webhooks/{id}/{token}/messages/@original"),
        ("https://discord.com/api/v10/channels/1/messages/2/reactions/%F0%9F%8F%86/@me",
         "/channels/{id}/messages/{id}/reactions/{param}/@me"),
        ("http://127.0.0.1:5000/api/v10/users/@me", "/users/@me"),  # a proxy or the stand-in
        ("https://discord.com/api/v10/oauth2/applications/@me", "/oauth2/applications/@me"),
        ("wss://gateway.discord.gg/?v=10&encoding=json", None),
        ("https://cdn.discordapp.com/attachments/1/2/cat.png", None),
    ],
)  # fmt: skip
def test_discord_routes_keep_no_id_or_token(url: str, route: str | None) -> None:
    assert discord_route(yarl.URL(url)) == route


@pytest.fixture
async def server() -> AsyncIterator[OpsServer]:
    ops = OpsServer(Readiness(), PrometheusMetrics(), port=0)
    await ops.start()
    yield ops
    await ops.stop()


async def fetch(server: OpsServer, path: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{server.port}{path}") as answer:
        return answer.status, answer.headers["Content-Type"], await answer.text()


async def test_healthz_is_503_naming_what_is_missing_until_every_part_is_up(server: OpsServer) -> None:
    status, _, body = await fetch(server, "/healthz")
    assert status == 503 and '"database": "not open yet"' in body and '"gateway": "not connected yet"' in body
    server.readiness.up("database")
    server.readiness.up("gateway")
    assert (await fetch(server, "/healthz"))[0] == 200
    server.readiness.down("gateway", "disconnected; reconnecting")
    status, _, body = await fetch(server, "/healthz")
    assert status == 503 and '"missing": {"gateway": "disconnected; reconnecting"}' in body


async def test_metrics_are_served_in_the_text_format(server: OpsServer) -> None:
    server.metrics.reserved(280_000)
    status, content_type, body = await fetch(server, "/metrics")
    assert status == 200 and content_type.startswith("text/plain") and "version=0.0.4" in content_type
    assert "hailuo_reserved_microdollars_total 280000.0" in body
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{server.port}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        ) as answer,
    ):
        assert answer.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await answer.text()).endswith("# EOF\n")


async def test_a_port_in_use_is_one_sentence_naming_the_key() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ListenError, match=f"ops.port: port {port} is already in use"):
            await OpsServer(Readiness(), PrometheusMetrics(), port=port).start()


def test_cooldowns_and_poll_shares_are_gauges() -> None:
    metrics = PrometheusMetrics()
    metrics.cooldown("wavespeed", 1_900_000_300.0)
    metrics.cooldown("seaart", 1_900_000_000.0)
    metrics.cooldown("seaart", None)  # back in rotation
    metrics.poll_budget("wavespeed", 5.0)
    metrics.poll_budget("wavespeed", 2.5)  # a second worker joined
    found = samples(metrics)
    until = {dict(labels)["provider"]: v for (n, labels), v in found.items() if n.endswith("cooldown_until_seconds")}
    assert until == {"wavespeed": 1_900_000_300.0, "seaart": 0.0}
    assert found[("hailuo_poll_budget_per_second", frozenset({("provider", "wavespeed")}))] == 2.5
