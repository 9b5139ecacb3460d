"""The MiniMax client against the local MiniMax stand-in, over real sockets."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from PIL import Image

from core.provider import ProviderError, WebhookProvider, WebhookRejected, WebhookSignal
from core.spec import GenerationSpec, ImageInput
from core.tasks import FailureKind
from providers.kit.transport import AiohttpTransport
from providers.minimax import MiniMaxProvider, parse_query, request_body
from tests.fakes.minimax_server import UNKNOWN_STATUS_WORD, FakeMiniMax, default_mp4, validate_body

KEY = "mm-test-key"
NOW = 1_800_000_000.0


def image(
    fmt: str = "PNG", size: tuple[int, int] = (480, 320), color: tuple[int, int, int] = (200, 80, 40)
) -> ImageInput:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    mime = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}[fmt]
    return ImageInput(buffer.getvalue(), mime, *size)


def data_url(img: ImageInput) -> str:
    return f"data:{img.mime};base64,{base64.b64encode(img.data).decode()}"


def t2v(
    quality: str = "standard",
    duration: int = 6,
    prompt: str = "a cat surfing [Pan left]",
    optimize: bool = True,
    model: str = "hailuo-2.3",
) -> GenerationSpec:
    return GenerationSpec("t2v", quality, duration, prompt, optimize_prompt=optimize, model=model)  # type: ignore[arg-type]


def i2v(
    quality: str = "standard",
    duration: int = 6,
    prompt: str = "",
    img: ImageInput | None = None,
    model: str = "hailuo-2.3",
    end: ImageInput | None = None,
) -> GenerationSpec:
    return GenerationSpec(
        "i2v",
        quality,  # type: ignore[arg-type]
        duration,
        prompt,
        model=model,
        image=img or image(),
        end_image=end,
    )


def local(
    base_url: str = "https://mm.test",
    *,
    timeout: float = 30.0,
    webhook_url: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> MiniMaxProvider:
    """A client for the loopback fake (or a MockTransport). The fake speaks plain HTTP, so the transport skips
    loading the CA bundle, which costs ~0.1 s per client on a busy machine. Tests that need the production
    construction build `MiniMaxProvider` directly."""
    transport = transport or AiohttpTransport(verify=False)
    return MiniMaxProvider(KEY, base_url, transport=transport, timeout=timeout, webhook_url=webhook_url)


@pytest.fixture
async def fake() -> AsyncIterator[FakeMiniMax]:
    async with FakeMiniMax(KEY, duration_s=0.2) as server:
        yield server


@pytest.fixture
async def hooks() -> AsyncIterator[MiniMaxProvider]:
    """A provider that only reads callbacks (no server behind it)."""
    client = local()
    yield client
    await client.aclose()


@pytest.fixture
async def provider(fake: FakeMiniMax) -> AsyncIterator[MiniMaxProvider]:
    client = local(fake.base_url, timeout=2.0)
    yield client
    await client.aclose()


async def submit_error(provider: MiniMaxProvider, spec: GenerationSpec) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await provider.submit(spec)
    return info.value


async def poll_error(provider: MiniMaxProvider, task_id: str) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await provider.poll(task_id)
    return info.value


async def test_provider_satisfies_the_webhook_protocol_and_lists_its_offers() -> None:
    client: WebhookProvider = MiniMaxProvider(KEY)
    await client.aclose()
    caps = client.capabilities
    assert client.name == "minimax"
    assert caps.offers == {
        ("hailuo-2.3", "t2v-standard"),
        ("hailuo-2.3", "t2v-pro"),
        ("hailuo-2.3", "i2v-standard"),
        ("hailuo-2.3", "i2v-pro"),
        ("hailuo-2.3", "i2v-fast"),
        ("hailuo-2.3", "i2v-fast-pro"),
        ("hailuo-02", "t2v-standard"),
        ("hailuo-02", "t2v-pro"),
        ("hailuo-02", "i2v-standard"),
        ("hailuo-02", "i2v-pro"),
    }
    assert caps.end_frame_models == {"hailuo-02"}
    assert caps.verifies_callbacks is True and caps.can_cancel is False and caps.free is False
    assert caps.serves(i2v(model="hailuo-02", end=image()))
    assert not caps.serves(i2v(end=image()))


# ----- submit: the exact wire body ---------------------------------------------------------------------


async def test_t2v_happy_path_sends_the_documented_body_then_polls_to_a_download_url(
    fake: FakeMiniMax, provider: MiniMaxProvider
) -> None:
    fake.next_scenario(queued_polls=2, processing_polls=1)
    task_id = await provider.submit(t2v(duration=10, optimize=False))

    assert task_id in fake.tasks and task_id.isdigit()
    assert fake.submits == [
        {
            "json": {
                "model": "MiniMax-Hailuo-2.3",
                "prompt": "a cat surfing [Pan left]",
                "duration": 10,
                "resolution": "768P",
                "prompt_optimizer": False,
            },
            "query": {},
        }
    ]
    statuses = [await provider.poll(task_id) for _ in range(4)]

    assert [(s.state, s.raw_status) for s in statuses] == [
        ("queued", "Preparing"),
        ("queued", "Queueing"),
        ("running", "Processing"),
        ("succeeded", "Success"),
    ]
    assert statuses[-1].output_url == fake.output_url(task_id)
    retrieves = [r for r in fake.requests if r.path == "/v1/files/retrieve"]
    assert [r.query for r in retrieves] == [{"file_id": str(fake.tasks[task_id].file_id)}]
    api_calls = [r for r in fake.requests if r.path.startswith("/v1/")]
    assert all(r.has_auth and "GroupId" not in r.query and r.status == 200 for r in api_calls)
    assert fake.tasks[task_id].completed_at is not None


async def test_t2v_pro_asks_for_1080p(fake: FakeMiniMax, provider: MiniMaxProvider) -> None:
    await provider.submit(t2v("pro"))
    body = fake.submits[-1]["json"]
    assert isinstance(body, dict)
    assert (body["model"], body["resolution"], body["duration"]) == ("MiniMax-Hailuo-2.3", "1080P", 6)


async def test_i2v_sends_the_first_frame_as_a_data_url_and_omits_an_empty_prompt(
    fake: FakeMiniMax, provider: MiniMaxProvider
) -> None:
    img = image("JPEG")
    task_id = await provider.submit(i2v("pro", img=img))

    assert fake.submits[-1]["json"] == {
        "model": "MiniMax-Hailuo-2.3",
        "duration": 6,
        "resolution": "1080P",
        "prompt_optimizer": True,
        "first_frame_image": data_url(img),
    }
    assert fake.tasks[task_id].mode == "i2v"


async def test_webp_is_sent_as_webp_because_minimax_accepts_it(fake: FakeMiniMax, provider: MiniMaxProvider) -> None:
    img = image("WEBP")
    await provider.submit(i2v(img=img, prompt="waves"))
    body = fake.submits[-1]["json"]
    assert isinstance(body, dict)
    assert body["first_frame_image"] == data_url(img) and str(body["first_frame_image"]).startswith("data:image/webp")
    assert body["prompt"] == "waves"


async def test_hailuo_02_with_an_end_frame_sends_first_and_last_frame(
    fake: FakeMiniMax, provider: MiniMaxProvider
) -> None:
    first, last = image("PNG"), image("JPEG", color=(10, 20, 200))
    task_id = await provider.submit(i2v("standard", 10, "the sun sets", img=first, model="hailuo-02", end=last))

    assert fake.submits[-1]["json"] == {
        "model": "MiniMax-Hailuo-02",
        "prompt": "the sun sets",
        "duration": 10,
        "resolution": "768P",
        "prompt_optimizer": True,
        "first_frame_image": data_url(first),
        "last_frame_image": data_url(last),
    }
    assert fake.tasks[task_id].mode == "fl2v"


@pytest.mark.parametrize(
    ("spec", "model", "resolution"),
    [
        (t2v("standard"), "MiniMax-Hailuo-2.3", "768P"),
        (t2v("pro"), "MiniMax-Hailuo-2.3", "1080P"),
        (i2v("standard"), "MiniMax-Hailuo-2.3", "768P"),
        (i2v("pro"), "MiniMax-Hailuo-2.3", "1080P"),
        (i2v("fast", 10), "MiniMax-Hailuo-2.3-Fast", "768P"),
        (i2v("fast-pro"), "MiniMax-Hailuo-2.3-Fast", "1080P"),
        (t2v("standard", model="hailuo-02"), "MiniMax-Hailuo-02", "768P"),
        (t2v("pro", model="hailuo-02"), "MiniMax-Hailuo-02", "1080P"),
        (i2v("standard", model="hailuo-02"), "MiniMax-Hailuo-02", "768P"),
        (i2v("pro", model="hailuo-02"), "MiniMax-Hailuo-02", "1080P"),
    ],
)
async def test_each_offer_maps_to_its_minimax_model_and_resolution(
    fake: FakeMiniMax, provider: MiniMaxProvider, spec: GenerationSpec, model: str, resolution: str
) -> None:
    task_id = await provider.submit(spec)  # the fake accepts it: the matrix of docs/providers/minimax.md §5 holds

    body = fake.submits[-1]["json"]
    assert isinstance(body, dict)
    assert (body["model"], body["resolution"], body["duration"]) == (model, resolution, spec.duration)
    assert task_id in fake.tasks


async def test_callback_url_is_sent_only_when_configured(fake: FakeMiniMax, provider: MiniMaxProvider) -> None:
    fake.send_callbacks = False
    client = local(fake.base_url, webhook_url="https://bot.example/hooks/minimax/s3cret")
    try:
        await client.submit(t2v())
    finally:
        await client.aclose()
    await provider.submit(t2v())

    with_hook, without = (s["json"] for s in fake.submits)
    assert isinstance(with_hook, dict) and isinstance(without, dict)
    assert with_hook["callback_url"] == "https://bot.example/hooks/minimax/s3cret"
    assert "callback_url" not in without
    assert fake.submits[0]["query"] == {}  # never a GroupId, never the hook in the query
    assert fake.callbacks == []


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (t2v("pro", duration=10), "10s is not offered at 1080P"),
        (i2v("fast-pro", duration=10), "10s is not offered at 1080P"),
        (t2v(prompt=""), "needs a prompt"),
        (t2v(prompt="x" * 2001), "longer than 2000"),
        (GenerationSpec("i2v", "standard", 6, "x"), "needs an image"),
        (GenerationSpec("t2v", "fast", 6, "x"), "not offered"),
        (i2v("fast", model="hailuo-02"), "not offered"),
        (i2v(end=image()), "last frame is not offered on hailuo-2.3"),
        (GenerationSpec("t2v", "standard", 6, "x", model="hailuo-02", end_image=image()), "needs a first frame"),
    ],
)
async def test_impossible_specs_are_refused_before_anything_is_sent(
    fake: FakeMiniMax, provider: MiniMaxProvider, spec: GenerationSpec, words: str
) -> None:
    exc = await submit_error(provider, spec)

    assert exc.kind is FailureKind.BAD_REQUEST and words in exc.detail
    assert not exc.maybe_created
    assert fake.submits == []


# ----- submit: errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (1002, FailureKind.RATE_LIMITED),
        (1039, FailureKind.RATE_LIMITED),
        (1041, FailureKind.RATE_LIMITED),
        (2045, FailureKind.RATE_LIMITED),
        (1004, FailureKind.AUTH),
        (2049, FailureKind.AUTH),
        (1008, FailureKind.BALANCE),
        (1028, FailureKind.BALANCE),
        (1030, FailureKind.BALANCE),
        (2056, FailureKind.BALANCE),
        (1026, FailureKind.MODERATION),
        (2013, FailureKind.BAD_REQUEST),
        (1000, FailureKind.UNAVAILABLE),
        (1001, FailureKind.UNAVAILABLE),
        (1013, FailureKind.UNAVAILABLE),
        (1024, FailureKind.UNAVAILABLE),
        (1033, FailureKind.UNAVAILABLE),
    ],
)
async def test_submit_base_resp_codes_map_to_failure_kinds_and_nothing_is_created(
    fake: FakeMiniMax, provider: MiniMaxProvider, code: int, kind: FailureKind
) -> None:
    fake.fail_next_submit(code, "some message")
    exc = await submit_error(provider, t2v())

    assert exc.kind is kind
    assert exc.maybe_created is False
    assert exc.status == 200 and exc.detail == f"base_resp {code}: some message"
    assert len(fake.submits) == 1 and fake.tasks == {}


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("Insufficient balance for this model", FailureKind.BALANCE),
        ("prompt contains sensitive words", FailureKind.MODERATION),
        ("model not on token plan", FailureKind.BAD_REQUEST),
    ],
)
async def test_undocumented_submit_code_is_classified_by_its_message(
    fake: FakeMiniMax, provider: MiniMaxProvider, message: str, kind: FailureKind
) -> None:
    fake.fail_next_submit(2061, message)
    exc = await submit_error(provider, t2v())
    assert exc.kind is kind and not exc.maybe_created and not exc.transient


async def test_wrong_key_is_auth_from_the_base_resp(fake: FakeMiniMax) -> None:
    client = MiniMaxProvider("mm-wrong-key", fake.base_url)
    try:
        exc = await submit_error(client, t2v())
    finally:
        await client.aclose()
    assert exc.kind is FailureKind.AUTH and "2049" in exc.detail and "invalid api key" in exc.detail
    assert fake.tasks == {}


async def test_fake_refuses_1080p_10s_with_2013_as_minimax_does(fake: FakeMiniMax) -> None:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}) as http:
        response = await http.post(
            f"{fake.base_url}/v1/video_generation",
            json={"model": "MiniMax-Hailuo-2.3", "prompt": "x", "duration": 10, "resolution": "1080P"},
        )
    payload = response.json()
    assert response.status_code == 200
    assert payload["base_resp"]["status_code"] == 2013 and "duration 10" in payload["base_resp"]["status_msg"]
    assert "task_id" not in payload and fake.tasks == {}


@pytest.mark.parametrize(
    ("status", "kind", "maybe_created"),
    [
        (401, FailureKind.AUTH, False),
        (429, FailureKind.RATE_LIMITED, False),
        (500, FailureKind.UNAVAILABLE, False),
        (503, FailureKind.UNAVAILABLE, False),
        (504, FailureKind.UNAVAILABLE, True),  # a gateway gave up waiting: the backend may have created it
    ],
)
async def test_submit_http_errors_map_by_status(
    fake: FakeMiniMax, provider: MiniMaxProvider, status: int, kind: FailureKind, maybe_created: bool
) -> None:
    fake.fail_next_submit_http(status, retry_after=4)
    exc = await submit_error(provider, t2v())
    assert exc.kind is kind and exc.status == status and exc.maybe_created is maybe_created
    assert exc.retry_after == 4.0
    assert len(fake.submits) == 1


async def test_error_detail_is_short_and_never_holds_the_key(fake: FakeMiniMax, provider: MiniMaxProvider) -> None:
    fake.fail_next_submit(2013, f"bad params for {KEY}\n{'x' * 500} Authorization: Bearer {KEY} echoed")
    exc = await submit_error(provider, t2v())
    assert KEY not in str(exc) and KEY not in exc.detail
    assert len(exc.detail) < 130 and "\n" not in exc.detail


@pytest.mark.parametrize(
    "body",
    [
        b"<html>502 Bad Gateway</html>",
        json.dumps({"base_resp": {"status_code": 0, "status_msg": "success"}}).encode(),
        json.dumps({"task_id": "", "base_resp": {"status_code": 0, "status_msg": "success"}}).encode(),
        json.dumps({"task_id": None}).encode(),
    ],
)
async def test_unreadable_2xx_submit_answer_is_internal_ambiguous_and_sent_once(body: bytes) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=body)

    client = local(transport=httpx.MockTransport(answer))
    try:
        exc = await submit_error(client, t2v())
    finally:
        await client.aclose()
    assert exc.kind is FailureKind.INTERNAL and exc.maybe_created is True
    assert len(seen) == 1
    assert seen[0].headers["content-type"] == "application/json"
    assert seen[0].headers["authorization"] == f"Bearer {KEY}"
    assert seen[0].url.params.get("GroupId") is None


async def test_integer_task_id_is_accepted_as_a_string() -> None:
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, json={"task_id": 106916112212032, "base_resp": {"status_code": 0}})
    )
    client = local(transport=transport)
    try:
        assert await client.submit(t2v()) == "106916112212032"
    finally:
        await client.aclose()


# ----- poll --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "raw", "kind", "detail"),
    [
        ("failed", "Fail", FailureKind.GENERATION_FAILED, "task Fail"),
        ("failed_legacy_word", "Failed", FailureKind.GENERATION_FAILED, "task Failed"),
        ("sensitive_output", "Fail", FailureKind.MODERATION, "base_resp 1027: output"),
        ("sensitive_input", "Fail", FailureKind.MODERATION, "base_resp 1026: input"),
    ],
)
async def test_failed_tasks_are_terminal_with_their_failure_kind(
    fake: FakeMiniMax, provider: MiniMaxProvider, outcome: str, raw: str, kind: FailureKind, detail: str
) -> None:
    fake.next_scenario(queued_polls=0, processing_polls=0, outcome=outcome)
    task_id = await provider.submit(t2v())

    status = await provider.poll(task_id)

    assert status.state == "failed" and status.terminal
    assert status.failure is kind and status.failure_detail.startswith(detail)
    assert status.raw_status == raw
    assert status.output_url is None
    assert not any(r.path == "/v1/files/retrieve" for r in fake.requests)


async def test_unknown_status_word_keeps_polling(fake: FakeMiniMax, provider: MiniMaxProvider) -> None:
    fake.next_scenario(queued_polls=0, processing_polls=2, outcome="unknown_status")
    task_id = await provider.submit(t2v())

    first = await provider.poll(task_id)
    await provider.poll(task_id)
    last = await provider.poll(task_id)

    assert first.state == "running" and first.raw_status == UNKNOWN_STATUS_WORD and not first.terminal
    assert last.state == "succeeded" and last.output_url == fake.output_url(task_id)


async def test_never_finishing_task_stays_running(fake: FakeMiniMax, provider: MiniMaxProvider) -> None:
    fake.next_scenario(queued_polls=0, processing_polls=0, outcome="never")
    task_id = await provider.submit(t2v())
    states = {(await provider.poll(task_id)).state for _ in range(3)}
    assert states == {"running"}
    assert fake.tasks[task_id].completed_at is None


@pytest.mark.parametrize("file_id_type", ["str", "int"])
async def test_file_id_as_string_or_integer_is_retrieved(
    fake: FakeMiniMax, provider: MiniMaxProvider, file_id_type: str
) -> None:
    fake.next_scenario(queued_polls=0, processing_polls=0, file_id_type=file_id_type)
    task_id = await provider.submit(i2v("fast"))

    status = await provider.poll(task_id)

    assert status.state == "succeeded" and status.output_url == fake.output_url(task_id)
    retrieve = [r for r in fake.requests if r.path == "/v1/files/retrieve"]
    assert [r.query for r in retrieve] == [{"file_id": str(fake.tasks[task_id].file_id)}]
    assert fake.tasks[task_id].retrieves == 1


async def test_time_based_task_completes_after_its_duration(fake: FakeMiniMax, provider: MiniMaxProvider) -> None:
    fake.next_scenario(duration_s=1.0)
    task_id = await provider.submit(t2v())
    assert (await provider.poll(task_id)).state != "succeeded"  # a second is long, even on a busy machine

    status = await provider.poll(task_id)
    while status.state != "succeeded":  # wait for the state, not for a time
        await asyncio.sleep(0.05)
        status = await provider.poll(task_id)
    task = fake.tasks[task_id]
    assert task.completed_at == pytest.approx(task.submitted_at + 1.0)
    assert task.terminal_seen_at is not None and task.terminal_seen_at >= task.completed_at


@pytest.mark.parametrize(
    ("code", "kind", "transient"),
    [
        (1002, FailureKind.RATE_LIMITED, True),
        (1039, FailureKind.RATE_LIMITED, True),
        (1004, FailureKind.AUTH, False),
        (2049, FailureKind.AUTH, False),
        (1000, FailureKind.UNAVAILABLE, True),
        (1001, FailureKind.UNAVAILABLE, True),
        (1013, FailureKind.UNAVAILABLE, True),
        (1024, FailureKind.UNAVAILABLE, True),
        (1033, FailureKind.UNAVAILABLE, True),
        (1008, FailureKind.BALANCE, False),
        (2013, FailureKind.BAD_REQUEST, False),
        (4242, FailureKind.UNAVAILABLE, True),  # undocumented: keep polling until the deadline
    ],
)
async def test_query_base_resp_errors_raise_by_class(
    fake: FakeMiniMax, provider: MiniMaxProvider, code: int, kind: FailureKind, transient: bool
) -> None:
    task_id = await provider.submit(t2v())
    fake.fail_next_polls(1, code, "some message")

    exc = await poll_error(provider, task_id)

    assert exc.kind is kind and exc.transient is transient
    assert exc.detail == f"base_resp {code}: some message"
    assert fake.poll_count(task_id) == 0  # injected failures do not advance the task


async def test_query_rate_limit_carries_a_retry_after_hint(fake: FakeMiniMax, provider: MiniMaxProvider) -> None:
    task_id = await provider.submit(t2v())
    fake.fail_next_polls(1, 1002, "rate limit exceeded", retry_after=9)
    exc = await poll_error(provider, task_id)
    assert exc.kind is FailureKind.RATE_LIMITED and exc.retry_after == 9.0 and exc.status == 200


@pytest.mark.parametrize(("code", "where"), [(1026, "input"), (1027, "output")])
async def test_query_moderation_codes_are_terminal_failures_not_errors(
    fake: FakeMiniMax, provider: MiniMaxProvider, code: int, where: str
) -> None:
    task_id = await provider.submit(t2v())
    fake.fail_next_polls(1, code, f"{where} new_sensitive")

    status = await provider.poll(task_id)

    assert status.state == "failed" and status.failure is FailureKind.MODERATION
    assert where in status.failure_detail


@pytest.mark.parametrize(
    ("code", "state", "kind"),
    [(1027, "failed", FailureKind.MODERATION), (1026, "failed", FailureKind.MODERATION)],
)
async def test_retrieve_moderation_codes_fail_the_task(
    fake: FakeMiniMax, provider: MiniMaxProvider, code: int, state: str, kind: FailureKind
) -> None:
    fake.next_scenario(queued_polls=0, processing_polls=0)
    task_id = await provider.submit(t2v())
    fake.fail_next_retrieves(1, code, "new_sensitive")

    status = await provider.poll(task_id)

    assert status.state == state and status.failure is kind and status.output_url is None


async def test_retrieve_rate_limit_raises_and_the_next_poll_retrieves(
    fake: FakeMiniMax, provider: MiniMaxProvider
) -> None:
    fake.next_scenario(queued_polls=0, processing_polls=0)
    task_id = await provider.submit(t2v())
    fake.fail_next_retrieves(1, 1002, "rate limit")

    exc = await poll_error(provider, task_id)
    status = await provider.poll(task_id)

    assert exc.kind is FailureKind.RATE_LIMITED and exc.transient
    assert status.state == "succeeded" and status.output_url == fake.output_url(task_id)


@pytest.mark.parametrize(
    ("retrieve_body", "detail"),
    [
        ({"file": {"file_id": 1}, "base_resp": {"status_code": 0}}, "without a download url"),
        ({"base_resp": {"status_code": 0}}, "without a download url"),
    ],
)
async def test_retrieve_without_a_url_is_output_invalid(retrieve_body: dict[str, object], detail: str) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/files/retrieve":
            assert request.url.params["file_id"] == "77"
            return httpx.Response(200, json=retrieve_body)
        return httpx.Response(200, json={"task_id": "1", "status": "Success", "file_id": 77, "base_resp": {}})

    client = local(transport=httpx.MockTransport(answer))
    try:
        status = await client.poll("1")
    finally:
        await client.aclose()
    assert status.state == "failed" and status.failure is FailureKind.OUTPUT_INVALID and detail in status.failure_detail


async def test_success_without_a_file_id_is_output_invalid() -> None:
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, json={"task_id": "1", "status": "Success", "base_resp": {"status_code": 0}})
    )
    client = local(transport=transport)
    try:
        status = await client.poll("1")
    finally:
        await client.aclose()
    assert status.state == "failed" and status.failure is FailureKind.OUTPUT_INVALID


async def test_poll_5xx_is_transient_with_retry_after(fake: FakeMiniMax, provider: MiniMaxProvider) -> None:
    task_id = await provider.submit(t2v())
    fake.fail_next_polls_http(2, 503, retry_after=3)
    for _ in range(2):
        exc = await poll_error(provider, task_id)
        assert exc.kind is FailureKind.UNAVAILABLE and exc.transient and exc.retry_after == 3.0
    await provider.poll(task_id)
    assert fake.poll_count(task_id) == 1


async def test_malformed_poll_is_transient(fake: FakeMiniMax, provider: MiniMaxProvider) -> None:
    task_id = await provider.submit(t2v())
    fake.malformed_next_polls(1)
    exc = await poll_error(provider, task_id)
    assert exc.kind is FailureKind.UNAVAILABLE and exc.transient and exc.detail == "malformed response"


async def test_poll_with_rotated_key_is_auth_and_not_transient(fake: FakeMiniMax, provider: MiniMaxProvider) -> None:
    task_id = await provider.submit(t2v())
    fake.api_key = "rotated"
    exc = await poll_error(provider, task_id)
    assert exc.kind is FailureKind.AUTH and not exc.transient


async def test_poll_connection_refused_is_transient(fake: FakeMiniMax, provider: MiniMaxProvider) -> None:
    task_id = await provider.submit(t2v())
    await fake.stop()
    exc = await poll_error(provider, task_id)
    assert exc.kind is FailureKind.UNAVAILABLE and exc.transient


@pytest.mark.parametrize(
    ("word", "state"),
    [
        ("Preparing", "queued"),
        ("Queueing", "queued"),
        ("Processing", "running"),
        ("processing", "running"),
        ("Success", "succeeded"),
        ("success", "succeeded"),
        ("Fail", "failed"),
        ("Failed", "failed"),
        ("FAILED", "failed"),
        ("fail", "failed"),
        ("", "running"),
        ("Rendering", "running"),
    ],
)
def test_status_words_map_onto_normalised_states(word: str, state: str) -> None:
    status = parse_query({"task_id": "1", "status": word})
    assert status.state == state and status.raw_status == word
    assert status.failure is (FailureKind.GENERATION_FAILED if state == "failed" else None)


def test_request_body_is_pure_and_never_holds_a_group_id() -> None:
    body = request_body(t2v())
    assert set(body) == {"model", "prompt", "duration", "resolution", "prompt_optimizer"}


# ----- callbacks ---------------------------------------------------------------------------------------


def test_verify_webhook_echoes_the_challenge(hooks: MiniMaxProvider) -> None:
    signal = hooks.verify_webhook({}, b'{"challenge": "abc-123"}', NOW)
    assert signal == WebhookSignal(task_id=None, reply={"challenge": "abc-123"})


@pytest.mark.parametrize(
    ("body", "task_id", "event_id"),
    [
        (
            {
                "task_id": "115334141465231360",
                "status": "success",
                "file_id": "205258526306433",
                "base_resp": {"status_code": 0, "status_msg": "success"},
            },
            "115334141465231360",
            "115334141465231360:success",
        ),
        ({"task_id": 42, "status": "Processing"}, "42", "42:processing"),
        ({"task_id": "9", "status": "failed", "base_resp": {"status_code": 1027}}, "9", "9:failed"),
    ],
)
def test_verify_webhook_reads_a_status_update(
    hooks: MiniMaxProvider, body: dict[str, object], task_id: str, event_id: str
) -> None:
    signal = hooks.verify_webhook({"Content-Type": "application/json"}, json.dumps(body).encode(), NOW)
    assert signal == WebhookSignal(task_id=task_id, reply=None, event_id=event_id)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'"challenge"',
        b"{}",
        b'{"challenge": ""}',
        b'{"challenge": 5}',
        b'{"challenge": "' + b"x" * 2000 + b'"}',
        b'{"status": "success"}',
        b'{"task_id": "", "status": "success"}',
        b'{"task_id": true, "status": "success"}',
        b'{"task_id": "1"}',
        b'{"task_id": "1", "status": 3}',
        b'{"task_id": "1", "status": " "}',
    ],
)
def test_verify_webhook_rejects_malformed_bodies(hooks: MiniMaxProvider, body: bytes) -> None:
    with pytest.raises(WebhookRejected):
        hooks.verify_webhook({}, body, NOW)


async def test_prepare_webhooks_needs_nothing(fake: FakeMiniMax, provider: MiniMaxProvider) -> None:
    assert await provider.prepare_webhooks() is None
    assert fake.requests == []


class Receiver:
    """A tiny callback endpoint that answers with what `verify_webhook` says, like the bot's receiver."""

    def __init__(self, provider: MiniMaxProvider, *, echo: bool = True) -> None:
        self.provider = provider
        self.echo = echo
        self.signals: list[WebhookSignal] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            signal = self.provider.verify_webhook(dict(request.headers), await request.read(), NOW)
        except WebhookRejected:
            return web.json_response({"error": "rejected"}, status=400)
        self.signals.append(signal)
        if signal.reply is not None and self.echo:
            return web.json_response(signal.reply)
        return web.json_response({"ok": True})

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hooks/minimax/{token}", self.handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/hooks/minimax/t0ken"
        await web.SockSite(self.runner, sock).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def test_fake_callback_flow_sends_a_challenge_then_lowercase_updates(
    fake: FakeMiniMax, hooks: MiniMaxProvider
) -> None:
    fake.next_scenario(duration_s=0.3)
    async with Receiver(hooks) as receiver:
        client = local(fake.base_url, webhook_url=receiver.url)
        try:
            task_id = await client.submit(t2v())
            await fake.callbacks_done(timeout=3)
            status = await client.poll(task_id)
        finally:
            await client.aclose()

    sent = fake.callbacks_for(task_id)
    assert [r.kind for r in sent] == ["challenge", "update", "update"]
    challenge = sent[0]
    assert challenge.status == 200 and challenge.reply == challenge.body and set(challenge.body) == {"challenge"}
    assert [r.body["status"] for r in sent[1:]] == ["processing", "success"]
    assert sent[2].body["file_id"] == str(fake.tasks[task_id].file_id)
    assert sent[2].body["base_resp"] == {"status_code": 0, "status_msg": "success"}
    assert all(r.status == 200 and r.error == "" for r in sent)
    assert fake.tasks[task_id].challenge_ok is True
    assert receiver.signals == [
        WebhookSignal(task_id=None, reply=challenge.body),
        WebhookSignal(task_id=task_id, event_id=f"{task_id}:processing"),
        WebhookSignal(task_id=task_id, event_id=f"{task_id}:success"),
    ]
    assert status.state == "succeeded"


async def test_fake_callback_reports_a_moderated_output_as_failed(fake: FakeMiniMax, hooks: MiniMaxProvider) -> None:
    fake.next_scenario(duration_s=0.1, outcome="sensitive_output")
    async with Receiver(hooks) as receiver:
        client = local(fake.base_url, webhook_url=receiver.url)
        try:
            task_id = await client.submit(t2v())
            await fake.callbacks_done(timeout=3)
        finally:
            await client.aclose()
    last = fake.callbacks_for(task_id)[-1]
    assert last.body["status"] == "failed" and last.body["base_resp"] == {
        "status_code": 1027,
        "status_msg": "output new_sensitive",
    }
    assert receiver.signals[-1].event_id == f"{task_id}:failed"


async def test_fake_sends_no_updates_when_the_challenge_is_not_echoed(
    fake: FakeMiniMax, hooks: MiniMaxProvider
) -> None:
    fake.next_scenario(duration_s=0.1)
    async with Receiver(hooks, echo=False) as receiver:
        client = local(fake.base_url, webhook_url=receiver.url)
        try:
            task_id = await client.submit(t2v())
            await fake.callbacks_done(timeout=3)
        finally:
            await client.aclose()
    assert [r.kind for r in fake.callbacks_for(task_id)] == ["challenge"]
    assert fake.tasks[task_id].challenge_ok is False
    assert fake.callbacks[0].reply == {"ok": True}


async def test_fake_without_callbacks_sends_nothing(hooks: MiniMaxProvider) -> None:
    async with FakeMiniMax(KEY, duration_s=0.05, send_callbacks=False) as server, Receiver(hooks) as rx:
        client = local(server.base_url, webhook_url=rx.url)
        try:
            await client.submit(t2v())
            await asyncio.sleep(0.1)
        finally:
            await client.aclose()
        assert server.callbacks == [] and rx.signals == []


# ----- download ----------------------------------------------------------------------------------------


async def completed_task(fake: FakeMiniMax, provider: MiniMaxProvider, **scenario: object) -> str:
    fake.next_scenario(queued_polls=0, processing_polls=0, **scenario)
    status = await provider.poll(await provider.submit(t2v()))
    assert status.output_url is not None
    return status.output_url


async def test_download_fetches_the_clip_without_credentials(
    fake: FakeMiniMax, provider: MiniMaxProvider, tmp_path: Path
) -> None:
    url = await completed_task(fake, provider)

    size = await provider.download(url, tmp_path / "out.mp4", 10 * 1024 * 1024)

    assert (tmp_path / "out.mp4").read_bytes() == default_mp4() and size == len(default_mp4())
    output_requests = [r for r in fake.requests if r.path.startswith("/outputs/")]
    assert [r.has_auth for r in output_requests] == [False]  # the key never goes to the output host


async def test_download_of_a_missing_output_is_output_invalid(
    fake: FakeMiniMax, provider: MiniMaxProvider, tmp_path: Path
) -> None:
    url = await completed_task(fake, provider, output_status=404)
    with pytest.raises(ProviderError) as info:
        await provider.download(url, tmp_path / "out.mp4", 10_000_000)
    assert info.value.kind is FailureKind.OUTPUT_INVALID and info.value.status == 404
    assert list(tmp_path.iterdir()) == []


async def test_download_over_the_cap_is_output_invalid_and_leaves_no_file(
    fake: FakeMiniMax, provider: MiniMaxProvider, tmp_path: Path
) -> None:
    url = await completed_task(fake, provider, output_bytes=b"\0" * 300_000)
    with pytest.raises(ProviderError) as info:
        await provider.download(url, tmp_path / "out.mp4", 100_000)
    assert info.value.kind is FailureKind.OUTPUT_INVALID and "too large" in info.value.detail
    assert list(tmp_path.iterdir()) == []


async def test_cancel_is_not_supported(provider: MiniMaxProvider) -> None:
    assert await provider.cancel("anything") is False


# ----- the stand-in's own rules (so the client tests above mean something) --------------------------------

IMG = data_url(image())


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"model": "MiniMax-Hailuo-2.3", "prompt": "x", "duration": 10, "resolution": "1080P"}, "duration 10"),
        ({"model": "MiniMax-Hailuo-2.3-Fast", "prompt": "x"}, "first_frame_image is required"),
        (
            {"model": "MiniMax-Hailuo-2.3", "first_frame_image": IMG, "last_frame_image": IMG},
            "does not support first-last-frame",
        ),
        (
            {"model": "MiniMax-Hailuo-02", "first_frame_image": IMG, "last_frame_image": IMG, "resolution": "512P"},
            "resolution 512P",
        ),
        ({"model": "MiniMax-Hailuo-2.3", "prompt": "x", "resolution": "720P"}, "resolution 720P"),
        ({"model": "MiniMax-Hailuo-02", "prompt": "x", "resolution": "512P"}, "resolution 512P"),
        ({"model": "MiniMax-Hailuo-2.3", "prompt": ""}, "prompt is required"),
        ({"model": "MiniMax-Hailuo-2.3", "prompt": "x" * 2001}, "2000"),
        ({"model": "MiniMax-Hailuo-2.3", "prompt": "x", "prompt_optimizer": "yes"}, "boolean"),
        ({"model": "MiniMax-Hailuo-2.3", "first_frame_image": "data:image/gif;base64,AAAA"}, "format"),
        ({"model": "MiniMax-Hailuo-2.3", "first_frame_image": "data:image/png;base64,!!!"}, "base64"),
        ({"model": "T2V-01", "prompt": "x"}, "does not support"),
    ],
)
def test_fake_refuses_what_the_reference_says_minimax_refuses(body: dict[str, object], problem: str) -> None:
    assert problem in (validate_body(body) or "")


@pytest.mark.parametrize(
    "body",
    [
        {"model": "MiniMax-Hailuo-02", "first_frame_image": IMG, "resolution": "512P", "duration": 10},
        {"model": "MiniMax-Hailuo-02", "first_frame_image": IMG, "last_frame_image": IMG, "resolution": "1080P"},
        {"model": "MiniMax-Hailuo-2.3-Fast", "first_frame_image": IMG, "duration": 10},
        {"model": "MiniMax-Hailuo-2.3", "prompt": "x"},
    ],
)
def test_fake_accepts_what_the_reference_allows(body: dict[str, object]) -> None:
    assert validate_body(body) is None


def test_fake_refuses_small_images() -> None:
    small = data_url(image(size=(300, 300)))
    assert "short side" in (validate_body({"model": "MiniMax-Hailuo-2.3", "first_frame_image": small}) or "")


async def test_fake_refuses_a_legacy_group_id_and_a_missing_key(fake: FakeMiniMax) -> None:
    url = f"{fake.base_url}/v1/query/video_generation"
    async with httpx.AsyncClient() as http:
        with_group = await http.get(
            url, params={"task_id": "1", "GroupId": "123"}, headers={"Authorization": f"Bearer {KEY}"}
        )
        no_key = await http.get(url, params={"task_id": "1"})
    assert with_group.json()["base_resp"] == {"status_code": 1004, "status_msg": "token not match group"}
    assert no_key.json()["base_resp"]["status_code"] == 1004
    assert with_group.status_code == no_key.status_code == 200
