"""The provider stand-ins send the headers the real APIs send on every answer, and enforce their rate limits
on their own (injectable) clock. Plain aiohttp requests, no provider client: what is checked is the wire."""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fakes.minimax_server import FakeMiniMax
from tests.fakes.rate_limits import ManualClock, SlidingWindow, TokenBucket, Window
from tests.fakes.seaart_server import FakeSeaArt
from tests.fakes.toapis_server import QUERY_TIER, SUBMIT_TIER, FakeToApis, RateTier, minute_window_end
from tests.fakes.wavespeed_server import GOLD, FakeWaveSpeed

TA_KEY, MM_KEY, WS_KEY, SA_KEY = "ta-test-key", "mm-test-key", "ws-test-key", "sa-test-key"
T2V_TOAPIS = {"model": "MiniMax-Hailuo-2.3", "prompt": "a lighthouse in a storm"}
T2V_MINIMAX = {"model": "MiniMax-Hailuo-2.3", "prompt": "a lighthouse in a storm"}
WS_ENDPOINT = "/api/v3/minimax/hailuo-2.3/t2v-standard"
SA_QUEUE = "/v1/queue/minimax_hailuo_23_t2v"
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "X-RateLimit-Category")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[int, Any, Any]:
    """(status, headers, JSON body or raw bytes) of one request."""
    async with http.request(method, url, **kw) as response:
        raw = await response.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        return response.status, response.headers, body


def rate(headers: Any) -> tuple[int, int, int, str]:
    """(limit, remaining, reset, category) from the X-RateLimit-* headers."""
    return (
        int(headers["X-RateLimit-Limit"]),
        int(headers["X-RateLimit-Remaining"]),
        int(headers["X-RateLimit-Reset"]),
        headers["X-RateLimit-Category"],
    )


# ----- the limiter pieces --------------------------------------------------------------------------------


def test_token_bucket_refills_continuously_up_to_its_capacity() -> None:
    bucket = Window(5, 1.0).bucket(100.0)
    for _ in range(5):
        assert bucket.wait(100.0) == 0
        bucket.take(100.0)
    assert bucket.remaining(100.0) == 0 and bucket.wait(100.0) == pytest.approx(0.2)
    assert bucket.full_at(100.0) == pytest.approx(101.0)
    assert bucket.remaining(100.4) == 2 and bucket.remaining(1000.0) == 5


def test_sliding_window_forgets_events_older_than_its_length() -> None:
    window = SlidingWindow(2, 60.0)
    window.add(0.0)
    window.add(10.0)
    assert window.remaining(59.0) == 0 and window.wait(59.0) == pytest.approx(1.0)
    assert window.remaining(60.0) == 1 and window.remaining(70.0) == 2


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0, 1.0, 0.0)
    with pytest.raises(ValueError):
        SlidingWindow(5, 0.0)


# ----- ToAPIs ------------------------------------------------------------------------------------------------


@pytest.fixture
async def toapis(clock: ManualClock) -> AsyncIterator[FakeToApis]:
    async with FakeToApis(TA_KEY, clock=clock) as fake:
        yield fake


async def ta_submit(http: aiohttp.ClientSession, fake: FakeToApis, body: object = None, key: str = TA_KEY) -> Any:
    return await call(
        http, "POST", f"{fake.base_url}/v1/videos/generations", json=body or T2V_TOAPIS, headers=bearer(key)
    )


async def ta_poll(http: aiohttp.ClientSession, fake: FakeToApis, task_id: str, key: str = TA_KEY) -> Any:
    return await call(http, "GET", f"{fake.base_url}/v1/videos/generations/{task_id}", headers=bearer(key))


def test_toapis_default_tier_is_the_documented_one() -> None:
    assert (SUBMIT_TIER.per_minute, SUBMIT_TIER.per_second, SUBMIT_TIER.burst, SUBMIT_TIER.burst_window_s) == (
        300,
        5,
        50,
        10,
    )
    assert (QUERY_TIER.per_minute, QUERY_TIER.per_second, QUERY_TIER.burst, QUERY_TIER.burst_window_s) == (
        3000,
        50,
        500,
        10,
    )


async def test_toapis_200s_carry_the_rate_headers_of_their_category(
    http: aiohttp.ClientSession, toapis: FakeToApis, clock: ManualClock
) -> None:
    status, headers, body = await ta_submit(http, toapis)
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    # One submit used: 299 of 300 left, the per-minute bucket (5 a second) full again 0.2 s later.
    assert rate(headers) == (300, 299, minute_window_end(clock.now), "async_submit")
    assert "Retry-After" not in headers and "X-Request-Id" not in headers

    status, headers, _ = await ta_poll(http, toapis, body["id"])
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert rate(headers) == (3000, 2999, minute_window_end(clock.now), "async_query")

    for _ in range(3):  # the submit bucket is apart: queries do not use it
        await ta_poll(http, toapis, body["id"])
    clock.advance(0.1)
    _, headers, _ = await ta_submit(http, toapis)
    assert rate(headers)[:2] == (300, 298)  # 0.1 s gave back half a token: floor(300 - 2 + 0.5)
    assert int(headers["X-RateLimit-Reset"]) == minute_window_end(clock.now)  # the minute's end, whatever is left


async def test_toapis_errors_carry_the_rate_headers_too(http: aiohttp.ClientSession, toapis: FakeToApis) -> None:
    answers = [
        await ta_submit(http, toapis, {"model": "no-such-model", "prompt": "x"}),  # 400
        await ta_submit(http, toapis, key="ta-wrong-key"),  # 401
        await ta_poll(http, toapis, "vid_missing"),  # 404
    ]
    toapis.fail_next_submit(500, "internal_error", "Internal server error")
    answers.append(await ta_submit(http, toapis))
    toapis.fail_next_polls(1, 503)
    answers.append(await ta_poll(http, toapis, "vid_missing"))
    toapis.malformed_next_polls(1)
    answers.append(await ta_poll(http, toapis, "vid_missing"))
    assert [status for status, _, _ in answers] == [400, 401, 404, 500, 503, 200]
    for _, headers, _ in answers:
        assert all(name in headers for name in RATE_HEADERS), headers
        assert headers["Content-Type"].startswith("application/json")
    # Business failures use allowance: two failed submits and one scripted one for the real key.
    assert [rate(h)[1] for _, h, _ in answers] == [299, 299, 2999, 298, 2998, 2997]


async def test_toapis_upload_counts_as_a_submit(http: aiohttp.ClientSession, toapis: FakeToApis) -> None:
    form = aiohttp.FormData()
    form.add_field("file", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, filename="a.png", content_type="image/png")
    status, headers, body = await call(
        http, "POST", f"{toapis.base_url}/v1/uploads/images", data=form, headers=bearer(TA_KEY)
    )
    assert status == 200 and body["success"] is True
    limit, remaining, _, category = rate(headers)
    assert (limit, remaining, category) == (300, 299, "async_submit")
    # The hosted file is not the API: no rate-limit headers there.
    status, headers, _ = await call(http, "GET", body["data"]["url"])
    assert status == 200 and not any(name in headers for name in RATE_HEADERS)


async def test_toapis_sixth_submit_in_a_second_is_a_429_that_uses_no_allowance(
    http: aiohttp.ClientSession, toapis: FakeToApis, clock: ManualClock
) -> None:
    bad = {"model": "no-such-model", "prompt": "x"}  # refused bodies use allowance and create nothing
    assert [(await ta_submit(http, toapis, bad))[0] for _ in range(5)] == [400] * 5
    status, headers, body = await ta_submit(http, toapis, bad)
    assert status == 429
    assert body == {"error": {"code": "rate_limit_exceeded", "message": "Async task request rate exceeded"}}
    assert headers["Retry-After"] == "1" and headers["Content-Type"].startswith("application/json")
    # The 429 describes the bucket that refused: 5 a second, empty, full again in a second.
    assert rate(headers) == (5, 0, math.ceil(clock.now + 1.0), "async_submit")
    for _ in range(10):  # more 429s take nothing
        assert (await ta_submit(http, toapis, bad))[0] == 429
    assert [category for category, _ in toapis.rate_limited] == ["async_submit"] * 11

    status, headers, _ = await ta_poll(http, toapis, "vid_missing")  # the query bucket is its own
    assert status == 404 and rate(headers)[1] == 2999

    clock.advance(0.2)  # exactly one token back in the per-second bucket
    assert (await ta_submit(http, toapis))[0] == 200
    assert (await ta_submit(http, toapis))[0] == 429
    assert len(toapis.tasks) == 1


async def test_toapis_burst_and_minute_buckets_bind_with_a_custom_tier(
    http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    burst = RateTier(per_minute=1000, per_second=100, burst=10, burst_window_s=10.0)
    async with FakeToApis(TA_KEY, clock=clock, submit_limits=burst) as fake:
        assert [(await ta_submit(http, fake))[0] for _ in range(11)] == [200] * 10 + [429]
        _, headers, _ = await ta_submit(http, fake)
        assert headers["Retry-After"] == "1" and rate(headers)[:2] == (10, 0)
        clock.advance(1.0)
        assert (await ta_submit(http, fake))[0] == 200

    minute = RateTier(per_minute=3, per_second=100, burst=100)
    async with FakeToApis(TA_KEY, clock=clock, query_limits=minute) as fake:
        assert [(await ta_poll(http, fake, "vid_x"))[0] for _ in range(4)] == [404, 404, 404, 429]
        _, headers, _ = await ta_poll(http, fake, "vid_x")
        assert headers["Retry-After"] == "20" and rate(headers) == (3, 0, math.ceil(clock.now + 60), "async_query")


async def test_toapis_limits_are_per_key(http: aiohttp.ClientSession, toapis: FakeToApis) -> None:
    assert [(await ta_submit(http, toapis, key="ta-wrong-key"))[0] for _ in range(6)] == [401] * 5 + [429]
    status, headers, _ = await ta_submit(http, toapis)
    assert status == 200 and rate(headers)[1] == 299


async def test_toapis_scripted_429s_keep_their_shape_and_use_no_allowance(
    http: aiohttp.ClientSession, toapis: FakeToApis, clock: ManualClock
) -> None:
    toapis.fail_next_submit(429, "rate_limit_exceeded", "Async task request rate exceeded", retry_after=7)
    status, headers, _ = await ta_submit(http, toapis)
    assert status == 429 and headers["Retry-After"] == "7"
    assert rate(headers) == (300, 0, math.ceil(clock.now + 7), "async_submit")

    toapis.fail_next_submit(429, "rate_limit_exceeded", "Async task request rate exceeded")
    status, headers, _ = await ta_submit(http, toapis)
    assert status == 429 and "Retry-After" not in headers  # scripted without one: none sent
    assert int(headers["X-RateLimit-Reset"]) == math.ceil(clock.now + 5)

    toapis.fail_next_polls(1, 429, retry_after=3)
    status, headers, _ = await ta_poll(http, toapis, "vid_x")
    _, remaining, _, category = rate(headers)
    assert status == 429 and headers["Retry-After"] == "3" and (remaining, category) == (0, "async_query")

    _, headers, _ = await ta_submit(http, toapis)
    assert rate(headers)[1] == 299  # the two scripted 429s took nothing


async def test_toapis_reset_is_a_unix_timestamp_on_the_real_clock(http: aiohttp.ClientSession) -> None:
    async with FakeToApis(TA_KEY) as fake:
        _, headers, _ = await ta_submit(http, fake)
    assert time.time() <= int(headers["X-RateLimit-Reset"]) <= time.time() + 61


# ----- MiniMax -----------------------------------------------------------------------------------------------

TRACE_ID = re.compile(r"[0-9a-f]{32}")


async def mm_create(http: aiohttp.ClientSession, fake: FakeMiniMax, body: object = None) -> Any:
    return await call(
        http, "POST", f"{fake.base_url}/v1/video_generation", json=body or T2V_MINIMAX, headers=bearer(MM_KEY)
    )


async def test_minimax_every_api_answer_carries_a_trace_id(http: aiohttp.ClientSession) -> None:
    async with FakeMiniMax(MM_KEY, duration_s=0.05) as fake:
        answers = [await mm_create(http, fake)]
        task_id = answers[0][2]["task_id"]
        query = f"{fake.base_url}/v1/query/video_generation?task_id={task_id}"
        await asyncio.sleep(0.08)
        answers.append(await call(http, "GET", query, headers=bearer(MM_KEY)))
        file_id = answers[-1][2]["file_id"]
        answers.append(
            await call(http, "GET", f"{fake.base_url}/v1/files/retrieve?file_id={file_id}", headers=bearer(MM_KEY))
        )
        answers.append(await call(http, "GET", query))  # no key: 1004 as HTTP 200
        answers.append(await mm_create(http, fake, {"model": "MiniMax-Hailuo-2.3"}))  # 2013
        fake.fail_next_submit_http(503)
        answers.append(await mm_create(http, fake))
        fake.malformed_next_polls(1)
        answers.append(await call(http, "GET", query, headers=bearer(MM_KEY)))
        answers.append(await call(http, "GET", f"{fake.base_url}/v1/no_such_thing", headers=bearer(MM_KEY)))
        codes = [body["base_resp"]["status_code"] for _, _, body in answers[:5]]
        assert codes == [0, 0, 0, 1004, 2013]
        assert [status for status, _, _ in answers] == [200] * 5 + [503, 200, 404]
        trace_ids = [headers.get("Trace-Id", "") for _, headers, _ in answers]
        assert all(TRACE_ID.fullmatch(t) for t in trace_ids), trace_ids
        assert len(set(trace_ids)) == len(trace_ids)
        for _, headers, _ in answers[:5]:
            assert headers["Content-Type"].startswith("application/json")
        # The output file is a CDN's: no Trace-Id.
        status, headers, _ = await call(http, "GET", answers[2][2]["file"]["download_url"])
        assert status == 200 and "Trace-Id" not in headers


async def test_minimax_create_over_the_rpm_is_a_1002_that_creates_nothing(
    http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    async with FakeMiniMax(MM_KEY, rpm=3, clock=clock) as fake:
        answers = [await mm_create(http, fake) for _ in range(2)]
        answers.append(await mm_create(http, fake, {"model": "MiniMax-Hailuo-2.3"}))  # refused params count
        clock.advance(30)
        status, headers, body = await mm_create(http, fake)
        assert status == 200 and "Trace-Id" in headers
        assert body == {"base_resp": {"status_code": 1002, "status_msg": "rate limit"}}
        assert [a[2]["base_resp"]["status_code"] for a in answers] == [0, 0, 2013] and len(fake.tasks) == 2
        task_id = answers[0][2]["task_id"]  # queries are not limited
        query = f"{fake.base_url}/v1/query/video_generation?task_id={task_id}"
        assert (await call(http, "GET", query, headers=bearer(MM_KEY)))[2]["base_resp"]["status_code"] == 0
        assert (await mm_create(http, fake))[2]["base_resp"]["status_code"] == 1002  # 1002s do not count
        clock.advance(30)  # the first three fall out of the rolling minute
        assert [(await mm_create(http, fake))[2]["base_resp"]["status_code"] for _ in range(4)] == [0, 0, 0, 1002]
        assert fake.rate_limited == [clock.now - 30, clock.now - 30, clock.now]


async def test_minimax_defaults_to_the_paid_rpm(http: aiohttp.ClientSession, clock: ManualClock) -> None:
    async with FakeMiniMax(MM_KEY, clock=clock) as fake:
        codes = [(await mm_create(http, fake, {"model": "MiniMax-Hailuo-2.3"}))[2] for _ in range(21)]
        assert [c["base_resp"]["status_code"] for c in codes] == [2013] * 20 + [1002]
    async with FakeMiniMax(MM_KEY, rpm=None, clock=clock) as fake:
        codes = [(await mm_create(http, fake, {"model": "MiniMax-Hailuo-2.3"}))[2] for _ in range(25)]
        assert {c["base_resp"]["status_code"] for c in codes} == {2013}


# ----- WaveSpeed ---------------------------------------------------------------------------------------------


async def ws_submit(http: aiohttp.ClientSession, fake: FakeWaveSpeed) -> Any:
    return await call(http, "POST", fake.base_url + WS_ENDPOINT, json={"prompt": "a kite"}, headers=bearer(WS_KEY))


async def ws_poll(http: aiohttp.ClientSession, fake: FakeWaveSpeed, task_id: str) -> Any:
    return await call(http, "GET", f"{fake.base_url}/api/v3/predictions/{task_id}/result", headers=bearer(WS_KEY))


def test_wavespeed_defaults_to_gold() -> None:
    fake = FakeWaveSpeed()
    assert GOLD.videos_per_minute == 3000 and GOLD.concurrency == 3000 and fake.max_concurrent == 3000


async def test_wavespeed_submits_over_the_per_minute_limit_are_429_envelopes(
    http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    async with FakeWaveSpeed(WS_KEY, videos_per_minute=2, clock=clock) as fake:
        assert [(await ws_submit(http, fake))[0] for _ in range(2)] == [200, 200]
        status, headers, body = await ws_submit(http, fake)
        assert status == 429 and body == {"code": 429, "message": "Too many requests", "data": None}
        assert headers["Content-Type"].startswith("application/json") and "Retry-After" not in headers
        assert len(fake.tasks) == 2 and fake.rate_limited == [clock.now]
        clock.advance(60)
        status, _, body = await ws_submit(http, fake)
        assert status == 200 and body["code"] == 200 and body["data"]["status"] == "created"


async def test_wavespeed_tasks_over_the_concurrency_cap_wait_created(http: aiohttp.ClientSession) -> None:
    async with FakeWaveSpeed(WS_KEY, max_concurrent=1) as fake:
        fake.next_scenario(queued_polls=0, processing_polls=1)
        fake.next_scenario(queued_polls=0, processing_polls=1)
        first = (await ws_submit(http, fake))[2]["data"]["id"]
        second = (await ws_submit(http, fake))[2]["data"]["id"]
        words = []
        for task_id in (second, first, second, first, second, second):
            status, headers, body = await ws_poll(http, fake, task_id)
            assert status == 200 and headers["Content-Type"].startswith("application/json")
            words.append(body["data"]["status"])
        # The second waits while the first runs, then starts counting its own polls.
        assert words == ["created", "processing", "created", "completed", "processing", "completed"]
        one, two = fake.tasks[first], fake.tasks[second]
        assert one.completed_at is not None and two.started_at == one.completed_at
        assert two.terminal_seen_at is not None and two.completed_at == two.terminal_seen_at >= one.completed_at


async def test_wavespeed_time_based_waiting_task_starts_when_the_slot_frees(http: aiohttp.ClientSession) -> None:
    async with FakeWaveSpeed(WS_KEY, duration_s=0.05, max_concurrent=1) as fake:
        first = (await ws_submit(http, fake))[2]["data"]["id"]
        second = (await ws_submit(http, fake))[2]["data"]["id"]
        assert (await ws_poll(http, fake, second))[2]["data"]["status"] == "created"
        await asyncio.sleep(0.12)
        assert (await ws_poll(http, fake, second))[2]["data"]["status"] == "completed"
        one, two = fake.tasks[first], fake.tasks[second]
        assert one.completed_at == pytest.approx(one.submitted_at + 0.05)
        assert two.started_at is not None and two.started_at == one.completed_at
        assert two.completed_at == pytest.approx(two.started_at + 0.05)
        assert one.terminal_seen_at is None and two.terminal_seen_at is not None


# ----- SeaArt ------------------------------------------------------------------------------------------------


async def test_seaart_rate_limit_is_off_by_default(http: aiohttp.ClientSession) -> None:
    async with FakeSeaArt(SA_KEY) as fake:
        url = f"{fake.base_url}{SA_QUEUE}/requests/mmsu_missing/status"
        statuses = {(await call(http, "GET", url, headers=bearer(SA_KEY)))[0] for _ in range(30)}
        assert statuses == {404} and fake.rate_limited == []


async def test_seaart_over_the_rate_limit_is_the_gateway_429_with_a_request_id(
    http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    async with FakeSeaArt(SA_KEY, rate_limit=Window(2, 60.0), clock=clock) as fake:
        status, headers, body = await call(
            http, "POST", fake.base_url + SA_QUEUE, json={"prompt": "a kite"}, headers=bearer(SA_KEY)
        )
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        status_url = body["status_url"]
        assert (await call(http, "GET", status_url, headers=bearer(SA_KEY)))[0] == 200
        status, headers, body = await call(http, "GET", status_url, headers=bearer(SA_KEY))
        assert status == 429 and headers["Content-Type"].startswith("application/json")
        assert body["error"] == {
            "code": "RATE_LIMIT_EXCEEDED",
            "message": "Rate limit exceeded, please try again later",
        }
        assert re.fullmatch(r"[0-9a-f]{32}", body["request_id"])
        assert "X-Request-Id" not in headers and "Retry-After" not in headers
        status, _, body = await call(http, "GET", status_url)  # no key: the 401 comes first, also with an id
        assert status == 401 and body["error"]["code"] == "UNAUTHORIZED" and body["request_id"]
        clock.advance(60)
        assert (await call(http, "GET", status_url, headers=bearer(SA_KEY)))[0] == 200
        assert fake.rate_limited == [clock.now - 60]
