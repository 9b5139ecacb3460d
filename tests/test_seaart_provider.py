"""The SeaArt client against the local SeaArt stand-in, over real sockets."""

from __future__ import annotations

import base64
import io
import json
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from PIL import Image

from core.provider import Provider, ProviderError
from core.spec import GenerationSpec, ImageInput
from core.tasks import FailureKind
from providers.kit.transport import AiohttpTransport
from providers.seaart import SeaArtProvider, parse_result, parse_status, split_task_id
from tests.fakes.seaart_server import UNKNOWN_STATUS_WORD, FakeSeaArt, default_mp4, validate_body, webhook_fields
from tests.leaks import echoes, key_echoes

KEY = "sa-test-key"
T2V = "minimax_hailuo_23_t2v"
I2V = "minimax_hailuo_23_i2v"
FAST = "minimax_hailuo_23_fast_i2v"
# httpx builds (and loads CA certificates into) a fresh TLS context for every client, about 40 ms each, which
# dominated this module's run time; all traffic here is plain HTTP on 127.0.0.1, so one context is shared.
TLS = ssl.create_default_context()


def image(fmt: str = "PNG", size: tuple[int, int] = (480, 320)) -> ImageInput:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 80, 40)).save(buffer, format=fmt)
    mime = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}[fmt]
    return ImageInput(buffer.getvalue(), mime, *size)


def data_url(img: ImageInput) -> str:
    return f"data:{img.mime};base64,{base64.b64encode(img.data).decode()}"


def t2v(
    quality: str = "standard", duration: int = 6, prompt: str = "a cat surfing", optimize: bool = True
) -> GenerationSpec:
    return GenerationSpec("t2v", quality, duration, prompt, optimize_prompt=optimize)  # type: ignore[arg-type]


def i2v(
    quality: str = "standard", duration: int = 6, prompt: str = "", img: ImageInput | None = None
) -> GenerationSpec:
    return GenerationSpec("i2v", quality, duration, prompt, image=img or image())  # type: ignore[arg-type]


def local(key: str, base_url: str, *, timeout: float = 2.0) -> SeaArtProvider:
    return SeaArtProvider(key, base_url, timeout=timeout, transport=AiohttpTransport(verify=TLS))


def rid(task_id: str) -> str:
    return split_task_id(task_id)[1]


@pytest.fixture
async def fake() -> AsyncIterator[FakeSeaArt]:
    async with FakeSeaArt(KEY, duration_s=0.2) as server:
        yield server


@pytest.fixture
async def provider(fake: FakeSeaArt) -> AsyncIterator[SeaArtProvider]:
    client = local(KEY, fake.base_url)
    yield client
    await client.aclose()


async def submit_error(provider: SeaArtProvider, spec: GenerationSpec) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await provider.submit(spec)
    return info.value


async def poll_error(provider: SeaArtProvider, task_id: str) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await provider.poll(task_id)
    return info.value


def mock_provider(handler: Callable[[httpx.Request], httpx.Response]) -> SeaArtProvider:
    return SeaArtProvider(KEY, "https://sa.test/model", transport=httpx.MockTransport(handler))


def test_provider_satisfies_the_protocol_and_offers_hailuo_23_only() -> None:
    client: Provider = SeaArtProvider(KEY)
    assert client.name == "seaart"
    assert client.capabilities.models == ("hailuo-2.3",)
    assert {variant for _, variant in client.capabilities.offers} == {
        "t2v-standard",
        "t2v-pro",
        "i2v-standard",
        "i2v-pro",
        "i2v-fast",
        "i2v-fast-pro",
    }
    assert client.capabilities.can_cancel is True
    assert client.capabilities.verifies_callbacks is False
    assert client.capabilities.end_frame_models == frozenset()


# ----- submit: the exact wire body ---------------------------------------------------------------------


async def test_t2v_submit_sends_chinese_directives_duration_resolution_and_optimizer(
    fake: FakeSeaArt, provider: SeaArtProvider
) -> None:
    spec = t2v(duration=10, optimize=False, prompt="A boat drifts [Truck left], then [Pan left,Pedestal up]")
    task_id = await provider.submit(spec)

    assert fake.submits == [
        (
            T2V,
            {
                "prompt": "A boat drifts [左移], then [左摇,上升]",
                "duration": 10,
                "resolution": "768P",
                "prompt_optimizer": False,
            },
        )
    ]
    (request_id,) = fake.tasks
    assert task_id == f"{T2V}:{request_id}"
    assert request_id.startswith("mmsu_")


async def test_i2v_submit_sends_the_first_frame_as_a_data_url(fake: FakeSeaArt, provider: SeaArtProvider) -> None:
    img = image("JPEG")
    task_id = await provider.submit(i2v("pro", prompt="She smiles [Push in,Shake]", img=img))

    assert fake.submits == [
        (
            I2V,
            {
                "prompt": "She smiles [推进,晃动]",
                "duration": 6,
                "resolution": "1080P",
                "prompt_optimizer": True,
                "first_frame_image": "data:image/jpeg;base64," + base64.b64encode(img.data).decode(),
            },
        )
    ]
    assert task_id.startswith(f"{I2V}:")


async def test_webp_is_sent_as_webp_and_an_empty_i2v_prompt_is_omitted(
    fake: FakeSeaArt, provider: SeaArtProvider
) -> None:
    img = image("WEBP")
    await provider.submit(i2v("fast", duration=10, img=img))

    endpoint, body = fake.submits[-1]
    assert endpoint == FAST
    assert body == {"duration": 10, "resolution": "768P", "prompt_optimizer": True, "first_frame_image": data_url(img)}


@pytest.mark.parametrize(
    ("spec", "endpoint", "resolution"),
    [
        (t2v("standard"), T2V, "768P"),
        (t2v("pro"), T2V, "1080P"),
        (i2v("standard"), I2V, "768P"),
        (i2v("pro"), I2V, "1080P"),
        (i2v("fast"), FAST, "768P"),
        (i2v("fast-pro"), FAST, "1080P"),
    ],
)
async def test_each_variant_posts_to_its_endpoint_with_its_resolution(
    fake: FakeSeaArt, provider: SeaArtProvider, spec: GenerationSpec, endpoint: str, resolution: str
) -> None:
    task_id = await provider.submit(spec)

    sent_endpoint, body = fake.submits[-1]
    assert sent_endpoint == endpoint and task_id.startswith(f"{endpoint}:")
    assert isinstance(body, dict) and body["resolution"] == resolution
    assert ("first_frame_image" in body) is (spec.mode == "i2v")


async def test_submit_sends_bearer_auth_and_never_any_webhook() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"request_id": "mmsu_1", "queue_position": 0})

    client = mock_provider(handler)
    try:
        task_id = await client.submit(t2v())
    finally:
        await client.aclose()
    (request,) = seen
    assert task_id == f"{T2V}:mmsu_1"
    assert request.method == "POST" and str(request.url) == f"https://sa.test/model/v1/queue/{T2V}"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert webhook_fields(json.loads(request.content), request.url.params.keys(), request.headers.keys()) == []


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (t2v("pro", duration=10), "10s"),
        (i2v("fast-pro", duration=10), "10s"),
        (t2v(prompt=""), "prompt"),
        (GenerationSpec("i2v", "standard", 6, "x"), "image"),
        (GenerationSpec("t2v", "fast", 6, "x"), "not offered"),
        (GenerationSpec("t2v", "standard", 6, "x", model="hailuo-02"), "not offered"),
        (GenerationSpec("i2v", "standard", 6, "x", image=image(), end_image=image()), "last frame"),
        (t2v(prompt="a cat [Moonwalk]"), "camera"),
    ],
)
async def test_impossible_specs_are_refused_before_anything_is_sent(
    fake: FakeSeaArt, provider: SeaArtProvider, spec: GenerationSpec, words: str
) -> None:
    exc = await submit_error(provider, spec)

    assert exc.kind is FailureKind.BAD_REQUEST and words in exc.detail
    assert not exc.maybe_created
    assert fake.submits == []


# ----- submit: errors ----------------------------------------------------------------------------------


async def test_wrong_key_is_auth(fake: FakeSeaArt) -> None:
    client = local("sa-wrong-key", fake.base_url)
    try:
        exc = await submit_error(client, t2v())
    finally:
        await client.aclose()
    assert exc.kind is FailureKind.AUTH and exc.status == 401
    assert "UNAUTHORIZED" in exc.detail
    assert exc.request_id  # the gateway's body request_id is kept for support tickets
    assert fake.tasks == {}


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (403, {"detail": "Model not allowed for this user"}, FailureKind.AUTH),
        (400, {"detail": "Model not allowed for this user"}, FailureKind.AUTH),
        (404, {"detail": "App not found: minimax_hailuo_23_t2v"}, FailureKind.BAD_REQUEST),
        (403, {"detail": "App not found: minimax_hailuo_23_t2v"}, FailureKind.BAD_REQUEST),
        (400, {"detail": "webhook not supported"}, FailureKind.BAD_REQUEST),
        (400, {"detail": "resolution must be one of 768P, 1080P"}, FailureKind.BAD_REQUEST),
        (400, {"detail": "The prompt contains sensitive content"}, FailureKind.MODERATION),
        (402, {"error": {"code": "PAYMENT_REQUIRED", "message": "Payment required"}}, FailureKind.BALANCE),
        (403, {"error": "insufficient balance"}, FailureKind.BALANCE),
        (400, {"detail": "Account balance is not enough, please top up"}, FailureKind.BALANCE),
        (400, {"error": {"code": "RATE_LIMIT_EXCEEDED", "message": "Rate limit exceeded"}}, FailureKind.RATE_LIMITED),
        (403, {"error": {"code": "UNAUTHORIZED", "message": "token is required"}}, FailureKind.AUTH),
    ],
)
async def test_submit_error_bodies_map_by_status_code_and_detail(
    fake: FakeSeaArt, provider: SeaArtProvider, status: int, body: dict[str, object], kind: FailureKind
) -> None:
    fake.fail_next_submit(status, body)
    exc = await submit_error(provider, t2v())
    assert exc.kind is kind and exc.status == status
    assert not exc.maybe_created
    assert fake.tasks == {}


async def test_submit_429_is_rate_limited_with_retry_after(fake: FakeSeaArt, provider: SeaArtProvider) -> None:
    fake.fail_next_submit(
        429,
        {"error": {"code": "RATE_LIMIT_EXCEEDED", "message": "Rate limit exceeded"}, "request_id": "gw-1"},
        retry_after=7,
    )
    exc = await submit_error(provider, t2v())
    assert exc.kind is FailureKind.RATE_LIMITED and exc.retry_after == 7.0 and exc.transient
    assert exc.request_id == "gw-1" and "RATE_LIMIT_EXCEEDED" in exc.detail


@pytest.mark.parametrize(("status", "ambiguous"), [(500, False), (502, False), (503, False), (504, True)])
async def test_submit_5xx_is_unavailable_and_only_504_may_have_created(
    fake: FakeSeaArt, provider: SeaArtProvider, status: int, ambiguous: bool
) -> None:
    fake.fail_next_submit(status, {"detail": "Runtime execution failed"})
    exc = await submit_error(provider, t2v())
    assert exc.kind is FailureKind.UNAVAILABLE and exc.status == status
    assert exc.maybe_created is ambiguous
    assert len(fake.submits) == 1


async def test_error_detail_is_short_and_never_holds_the_key(fake: FakeSeaArt, provider: SeaArtProvider) -> None:
    fake.fail_next_submit(400, {"detail": f"bad request for {KEY}\n{'x' * 500} Authorization: Bearer {KEY}"})
    exc = await submit_error(provider, t2v())
    assert KEY not in str(exc) and KEY not in exc.detail
    assert len(exc.detail) < 130 and "\n" not in exc.detail


@pytest.mark.parametrize(
    "body",
    [b"<html>502 Bad Gateway</html>", json.dumps({"queue_position": 0}).encode(), b'{"request_id": ""}', b"[]"],
)
async def test_unreadable_2xx_submit_answer_is_internal_and_ambiguous(body: bytes) -> None:
    client = mock_provider(lambda request: httpx.Response(200, content=body))
    try:
        exc = await submit_error(client, t2v())
    finally:
        await client.aclose()
    assert exc.kind is FailureKind.INTERNAL and exc.maybe_created is True


# ----- poll --------------------------------------------------------------------------------------------


async def test_poll_walks_queued_running_succeeded_and_download_fetches_the_clip(
    fake: FakeSeaArt, provider: SeaArtProvider, tmp_path: Path
) -> None:
    fake.next_scenario(queued_polls=1, processing_polls=1, queue_position=3)
    task_id = await provider.submit(t2v())

    queued = await provider.poll(task_id)
    running = await provider.poll(task_id)
    done = await provider.poll(task_id)

    assert (queued.state, queued.queue_position, queued.raw_status) == ("queued", 3, "IN_QUEUE")
    assert (running.state, running.raw_status) == ("running", "IN_PROGRESS")
    assert done.state == "succeeded" and done.failure is None
    assert done.output_url == fake.output_url(rid(task_id))
    task = fake.tasks[rid(task_id)]
    assert task.polls == 3 and task.result_requests == 1 and task.completed_at is not None

    assert done.output_url is not None
    size = await provider.download(done.output_url, tmp_path / "out.mp4", 10 * 1024 * 1024)
    assert (tmp_path / "out.mp4").read_bytes() == default_mp4()
    assert size == len(default_mp4())
    output_requests = [r for r in fake.requests if r.path.startswith("/outputs/")]
    assert [r.has_auth for r in output_requests] == [False]  # the key never goes to the output host


async def test_i2v_task_polls_on_its_own_endpoint(fake: FakeSeaArt, provider: SeaArtProvider) -> None:
    fake.next_scenario(queued_polls=0, processing_polls=0)
    task_id = await provider.submit(i2v("fast-pro"))

    assert (await provider.poll(task_id)).state == "succeeded"
    gets = [r.path for r in fake.requests if r.method == "GET" and "/requests/" in r.path]
    base = f"/model/v1/queue/{FAST}/requests/{rid(task_id)}"
    assert gets == [f"{base}/status", f"{base}/response"]


@pytest.mark.parametrize(
    ("scenario", "state", "kind", "detail"),
    [
        ({"outcome": "blocked"}, "failed", FailureKind.MODERATION, "CONTENT_BLOCKED"),
        ({"outcome": "failed"}, "failed", FailureKind.GENERATION_FAILED, "INFERENCE_FAILURE"),
        (
            {"outcome": "failed", "error_type": "INFERENCE_TIMEOUT"},
            "failed",
            FailureKind.GENERATION_FAILED,
            "INFERENCE_TIMEOUT",
        ),
        (
            {"outcome": "failed", "error_type": "INTERNAL_SERVER_ERROR"},
            "failed",
            FailureKind.GENERATION_FAILED,
            "INTERNAL_SERVER_ERROR",
        ),
        ({"outcome": "failed", "error_type": "REQUEST_INVALID"}, "failed", FailureKind.BAD_REQUEST, "REQUEST_INVALID"),
        ({"outcome": "cancelled"}, "cancelled", None, "CANCELED"),
    ],
)
async def test_completed_with_an_error_maps_to_states_and_failure_kinds(
    fake: FakeSeaArt,
    provider: SeaArtProvider,
    scenario: dict[str, str],
    state: str,
    kind: FailureKind | None,
    detail: str,
) -> None:
    fake.next_scenario(queued_polls=0, processing_polls=0, **scenario)
    task_id = await provider.submit(t2v())

    status = await provider.poll(task_id)

    assert status.state == state and status.terminal and status.raw_status == "COMPLETED"
    assert status.failure is kind
    assert detail in status.failure_detail
    assert status.output_url is None
    assert fake.tasks[rid(task_id)].result_requests == 0  # a failed task's result is never fetched


async def test_202_from_response_after_completed_keeps_polling(fake: FakeSeaArt, provider: SeaArtProvider) -> None:
    fake.next_scenario(queued_polls=0, processing_polls=0, response_pending=1)
    task_id = await provider.submit(t2v())

    first = await provider.poll(task_id)
    second = await provider.poll(task_id)

    assert first.state == "running" and not first.terminal and first.raw_status == "COMPLETED"
    assert second.state == "succeeded" and second.output_url == fake.output_url(rid(task_id))
    assert fake.tasks[rid(task_id)].result_requests == 2


async def test_unknown_status_word_keeps_polling(fake: FakeSeaArt, provider: SeaArtProvider) -> None:
    fake.next_scenario(queued_polls=0, processing_polls=2, outcome="unknown_status")
    task_id = await provider.submit(t2v())

    first = await provider.poll(task_id)
    await provider.poll(task_id)
    last = await provider.poll(task_id)

    assert first.state == "running" and first.raw_status == UNKNOWN_STATUS_WORD and not first.terminal
    assert last.state == "succeeded"


async def test_time_based_task_completes_after_its_duration(fake: FakeSeaArt, provider: SeaArtProvider) -> None:
    fake.next_scenario(duration_s=0.3)
    task_id = await provider.submit(i2v())
    assert (await provider.poll(task_id)).state == "queued"

    task = fake.tasks[rid(task_id)]
    task.submitted_at -= 0.3  # let the clock run out without sleeping
    status = await provider.poll(task_id)
    assert status.state == "succeeded"
    assert task.completed_at == pytest.approx(task.submitted_at + 0.3)
    assert task.terminal_seen_at is not None and task.terminal_seen_at >= task.completed_at


async def test_poll_429_is_rate_limited_with_retry_after(fake: FakeSeaArt, provider: SeaArtProvider) -> None:
    task_id = await provider.submit(t2v())
    fake.fail_next_polls(1, 429, retry_after=3)
    exc = await poll_error(provider, task_id)
    assert exc.kind is FailureKind.RATE_LIMITED and exc.retry_after == 3.0 and exc.transient
    assert (await provider.poll(task_id)).state in ("queued", "running", "succeeded")


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_poll_5xx_is_transient(fake: FakeSeaArt, provider: SeaArtProvider, status: int) -> None:
    task_id = await provider.submit(t2v())
    fake.fail_next_polls(2, status)
    for _ in range(2):
        exc = await poll_error(provider, task_id)
        assert exc.kind is FailureKind.UNAVAILABLE and exc.transient and not exc.maybe_created
    assert fake.poll_count(rid(task_id)) == 0  # injected failures do not advance the task
    await provider.poll(task_id)
    assert fake.poll_count(rid(task_id)) == 1


async def test_5xx_from_response_is_transient(fake: FakeSeaArt, provider: SeaArtProvider) -> None:
    fake.next_scenario(queued_polls=0, processing_polls=0)
    task_id = await provider.submit(t2v())
    fake.fail_next_results(1, 503)

    exc = await poll_error(provider, task_id)

    assert exc.kind is FailureKind.UNAVAILABLE and exc.transient
    assert (await provider.poll(task_id)).state == "succeeded"


async def test_malformed_poll_is_transient(fake: FakeSeaArt, provider: SeaArtProvider) -> None:
    task_id = await provider.submit(t2v())
    fake.malformed_next_polls(1)
    exc = await poll_error(provider, task_id)
    assert exc.kind is FailureKind.UNAVAILABLE and exc.transient and exc.detail == "malformed response"


async def test_poll_with_revoked_key_is_auth_and_not_transient(fake: FakeSeaArt, provider: SeaArtProvider) -> None:
    task_id = await provider.submit(t2v())
    fake.api_key = "rotated"
    exc = await poll_error(provider, task_id)
    assert exc.kind is FailureKind.AUTH and not exc.transient


async def test_poll_unknown_request_is_bad_request_and_not_transient(provider: SeaArtProvider) -> None:
    exc = await poll_error(provider, f"{T2V}:mmsu_does-not-exist")
    assert exc.kind is FailureKind.BAD_REQUEST and exc.status == 404 and not exc.transient


@pytest.mark.parametrize("task_id", ["", "mmsu_123", "unknown_endpoint:mmsu_1", f"{T2V}:"])
async def test_task_ids_not_made_by_us_are_refused_without_a_request(
    fake: FakeSeaArt, provider: SeaArtProvider, task_id: str
) -> None:
    exc = await poll_error(provider, task_id)
    with pytest.raises(ProviderError) as cancelled:
        await provider.cancel(task_id)
    assert exc.kind is FailureKind.BAD_REQUEST and not exc.transient
    assert cancelled.value.kind is FailureKind.BAD_REQUEST
    assert fake.requests == []


async def test_poll_connection_refused_is_transient(fake: FakeSeaArt, provider: SeaArtProvider) -> None:
    task_id = await provider.submit(t2v())
    await fake.stop()
    exc = await poll_error(provider, task_id)
    assert exc.kind is FailureKind.UNAVAILABLE and exc.transient


@pytest.mark.parametrize(
    ("body", "state", "position"),
    [
        ({"status": "IN_QUEUE", "queue_position": 4}, "queued", 4),
        ({"status": "IN_QUEUE", "queue_position": True}, "queued", None),
        ({"status": "IN_QUEUE"}, "queued", None),
        ({"status": "IN_PROGRESS"}, "running", None),
        ({"status": "in_progress"}, "running", None),
        ({"status": "STARTING"}, "running", None),
        ({}, "running", None),
        ({"status": "COMPLETED", "error": "Task canceled", "error_type": "CANCELLED"}, "cancelled", None),
        ({"status": "COMPLETED", "error": "NSFW output detected"}, "failed", None),
        ({"status": "COMPLETED", "error_type": "SOMETHING_NEW"}, "failed", None),
    ],
)
def test_status_bodies_map_onto_normalised_states(body: dict[str, object], state: str, position: int | None) -> None:
    status = parse_status(body)
    assert status is not None
    assert status.state == state and status.queue_position == position
    assert status.raw_status == str(body.get("status", ""))


def test_completed_without_error_asks_for_the_result_and_error_text_decides_unknown_types() -> None:
    assert parse_status({"status": "COMPLETED", "error": None, "metrics": {"inference_time": 1.0}}) is None
    nsfw = parse_status({"status": "COMPLETED", "error": "NSFW output detected"})
    new = parse_status({"status": "COMPLETED", "error_type": "SOMETHING_NEW"})
    assert nsfw is not None and nsfw.failure is FailureKind.MODERATION
    assert new is not None and new.failure is FailureKind.GENERATION_FAILED


@pytest.mark.parametrize(
    ("body", "state", "kind"),
    [
        ({"outputs": [{"type": "video", "url": "https://cdn.example/v.mp4"}]}, "succeeded", None),
        ({"outputs": []}, "failed", FailureKind.OUTPUT_INVALID),
        ({"outputs": [{"type": "video"}]}, "failed", FailureKind.OUTPUT_INVALID),
        ({"status": "COMPLETED", "error": "x", "error_type": "CONTENT_BLOCKED"}, "failed", FailureKind.MODERATION),
    ],
)
def test_result_bodies_map_onto_terminal_states(body: dict[str, object], state: str, kind: FailureKind | None) -> None:
    status = parse_result(body)
    assert status.state == state and status.failure is kind and status.terminal


# ----- cancel ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("queued_polls", "polls_before", "stage"), [(2, 0, "queued"), (0, 1, "running")])
async def test_cancel_while_unfinished_is_accepted_and_the_next_poll_says_cancelled(
    fake: FakeSeaArt, provider: SeaArtProvider, queued_polls: int, polls_before: int, stage: str
) -> None:
    fake.next_scenario(queued_polls=queued_polls, processing_polls=5)
    task_id = await provider.submit(t2v())
    for _ in range(polls_before):
        assert (await provider.poll(task_id)).state == stage

    assert await provider.cancel(task_id) is True
    status = await provider.poll(task_id)

    assert fake.cancel_requests == [rid(task_id)]
    assert status.state == "cancelled" and "CANCELED" in status.failure_detail
    assert fake.tasks[rid(task_id)].completed_at == fake.tasks[rid(task_id)].cancelled_at
    puts = [r for r in fake.requests if r.method == "PUT"]
    assert [(r.path, r.status) for r in puts] == [(f"/model/v1/queue/{T2V}/requests/{rid(task_id)}/cancel", 202)]


async def test_cancel_after_completion_is_refused(fake: FakeSeaArt, provider: SeaArtProvider) -> None:
    fake.next_scenario(queued_polls=0, processing_polls=0)
    task_id = await provider.submit(t2v())
    assert (await provider.poll(task_id)).state == "succeeded"

    assert await provider.cancel(task_id) is False
    assert [r.status for r in fake.requests if r.method == "PUT"] == [400]
    assert (await provider.poll(task_id)).state == "succeeded"


async def test_cancel_of_an_unknown_request_is_refused(fake: FakeSeaArt, provider: SeaArtProvider) -> None:
    assert await provider.cancel(f"{I2V}:mmsu_nobody") is False
    assert fake.cancel_requests == ["mmsu_nobody"]
    assert [r.status for r in fake.requests if r.method == "PUT"] == [404]


async def test_cancel_with_revoked_key_raises_auth(fake: FakeSeaArt, provider: SeaArtProvider) -> None:
    task_id = await provider.submit(t2v())
    fake.api_key = "rotated"
    with pytest.raises(ProviderError) as info:
        await provider.cancel(task_id)
    assert info.value.kind is FailureKind.AUTH


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (500, {"detail": "Runtime execution failed"}, FailureKind.UNAVAILABLE),
        (429, {"error": {"code": "RATE_LIMIT_EXCEEDED", "message": "slow down"}}, FailureKind.RATE_LIMITED),
        (400, {"detail": "cancel not allowed"}, FailureKind.BAD_REQUEST),
    ],
)
async def test_cancel_errors_raise(status: int, body: dict[str, object], kind: FailureKind) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.raw_path.decode()}")
        return httpx.Response(status, json=body)

    client = mock_provider(handler)
    try:
        with pytest.raises(ProviderError) as info:
            await client.cancel(f"{T2V}:mmsu_a/b")
    finally:
        await client.aclose()
    assert info.value.kind is kind
    assert seen == [f"PUT /model/v1/queue/{T2V}/requests/mmsu_a%2Fb/cancel"]


# ----- download ----------------------------------------------------------------------------------------


async def completed_output(fake: FakeSeaArt, provider: SeaArtProvider, **scenario: object) -> str:
    fake.next_scenario(queued_polls=0, processing_polls=0, **scenario)
    status = await provider.poll(await provider.submit(t2v()))
    assert status.output_url is not None
    return status.output_url


async def test_download_over_the_cap_deletes_the_partial_file(
    fake: FakeSeaArt, provider: SeaArtProvider, tmp_path: Path
) -> None:
    url = await completed_output(fake, provider, output_bytes=b"\0" * 300_000)
    with pytest.raises(ProviderError) as info:
        await provider.download(url, tmp_path / "out.mp4", 100_000)
    assert info.value.kind is FailureKind.OUTPUT_INVALID and "too large" in info.value.detail
    assert list(tmp_path.iterdir()) == []


async def test_download_of_a_missing_output_is_output_invalid(
    fake: FakeSeaArt, provider: SeaArtProvider, tmp_path: Path
) -> None:
    url = await completed_output(fake, provider, output_status=404)
    with pytest.raises(ProviderError) as info:
        await provider.download(url, tmp_path / "out.mp4", 10_000_000)
    assert info.value.kind is FailureKind.OUTPUT_INVALID and info.value.status == 404
    assert list(tmp_path.iterdir()) == []


# ----- the stand-in's own rules (so the client tests above mean something) --------------------------------


@pytest.mark.parametrize(
    ("endpoint", "body", "problem"),
    [
        (T2V, {"prompt": "a boat [Pan left]"}, "unsupported camera instruction: [Pan left]"),
        (T2V, {"prompt": "a boat [左摇,Pedestal up]"}, "unsupported camera instruction"),
        (T2V, {"prompt": "a boat [左摇,上升,推进,晃动]"}, "at most 3"),
        (T2V, {"prompt": "a boat [左摇"}, "unbalanced"),
        (T2V, {"prompt": "a boat []"}, "empty"),
        (T2V, {"prompt": "x", "resolution": "1080P", "duration": 10}, "6 only"),
        (T2V, {"prompt": "x", "resolution": "720P"}, "resolution"),
        (T2V, {"prompt": "x", "duration": 8}, "duration"),
        (T2V, {"prompt": "x", "prompt_optimizer": "yes"}, "boolean"),
        (T2V, {"prompt": "x" * 2001}, "2000"),
        (T2V, {"duration": 6}, "prompt is required"),
        (T2V, {"prompt": "x", "first_frame_image": "https://img.example/a.png"}, "unknown field"),
        (FAST, {"prompt": "x"}, "first_frame_image is required"),
        (I2V, {"first_frame_image": "data:image/gif;base64,AAAA"}, "format"),
        (I2V, {"first_frame_image": "data:image/png;base64,!!!"}, "base64"),
    ],
)
def test_fake_refuses_what_the_reference_says_seaart_refuses(
    endpoint: str, body: dict[str, object], problem: str
) -> None:
    assert problem in (validate_body(endpoint, body) or "")


def test_fake_accepts_the_documented_chinese_forms_and_refuses_small_images() -> None:
    assert validate_body(T2V, {"prompt": "a boat [左摇，上升] then [固定]", "resolution": "1080P"}) is None
    small = image(size=(300, 300))
    assert "short side" in (validate_body(I2V, {"first_frame_image": data_url(small)}) or "")


@pytest.mark.parametrize(
    ("params", "headers", "body"),
    [
        ({}, {}, {"prompt": "x", "webhook_url": "https://bot.example/hook"}),
        ({"webhook": "https://bot.example/hook"}, {}, {"prompt": "x"}),
        ({}, {"X-Webhook-Url": "https://bot.example/hook"}, {"prompt": "x"}),
        ({}, {}, {"prompt": "x", "callback_url": "https://bot.example/hook"}),
    ],
)
async def test_fake_rejects_webhook_info_anywhere(
    fake: FakeSeaArt, params: dict[str, str], headers: dict[str, str], body: dict[str, object]
) -> None:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}) as http:
        response = await http.post(f"{fake.base_url}/v1/queue/{T2V}", params=params, headers=headers, json=body)
    assert response.status_code == 400 and response.json() == {"detail": "webhook not supported"}
    assert fake.tasks == {}


async def test_fake_create_answer_urls_work_and_response_is_202_until_done(fake: FakeSeaArt) -> None:
    fake.next_scenario(queued_polls=1, processing_polls=0)
    async with httpx.AsyncClient(headers={"Authorization": f"Key {KEY}"}) as http:
        created = (await http.post(f"{fake.base_url}/v1/queue/{T2V}", json={"prompt": "x"})).json()
        early = await http.get(created["response_url"])
        first = (await http.get(created["status_url"])).json()
        second = (await http.get(created["status_url"])).json()
        late = await http.get(created["response_url"])
        cancel = await http.put(created["cancel_url"])
        missing = await http.post(f"{fake.base_url}/v1/queue/no_such_app", json={"prompt": "x"})
        sync = await http.post(f"{fake.base_url}/v1/queue/{T2V}/sync", json={"prompt": "x"})
        stream = await http.get(created["status_url"] + "/stream")

    assert set(created) == {"request_id", "response_url", "status_url", "cancel_url", "queue_position"}
    assert created["queue_position"] == 0
    assert early.status_code == 202 and early.json()["status"] == "IN_QUEUE"
    assert first["status"] == "IN_QUEUE" and second["status"] == "COMPLETED" and "error" not in second
    assert late.status_code == 200 and late.json()["outputs"][0]["url"] == fake.output_url(created["request_id"])
    assert cancel.status_code == 400 and cancel.json() == {"status": "ALREADY_COMPLETED"}
    assert missing.status_code == 404 and missing.json() == {"detail": "App not found: no_such_app"}
    assert sync.status_code == 404 and sync.json() == {"detail": "Not Found"}
    assert stream.json() == {"detail": "SSE streaming not supported"}


ECHO_KEY = "sa_live_7Hq2Lx9Pz4Rt8Vb3Nc6Kd1"


async def test_a_failed_task_quoting_the_key_keeps_no_part_of_it() -> None:
    upper, short, middle, _ = key_echoes(ECHO_KEY)
    async with FakeSeaArt(ECHO_KEY, duration_s=0.2) as server:
        client = local(ECHO_KEY, server.base_url)
        try:
            error_text = f"auth {upper} failed; retried with {short}… and {middle}"
            server.next_scenario(queued_polls=0, processing_polls=0, outcome="failed", error_text=error_text)
            status = await client.poll(await client.submit(t2v()))
            server.fail_next_submit(400, {"error": {"code": ECHO_KEY[:12].upper(), "message": error_text}})
            exc = await submit_error(client, t2v())
        finally:
            await client.aclose()
    assert status.state == "failed" and status.failure_detail.startswith("INFERENCE_FAILURE: auth ***")
    assert echoes(status.failure_detail, ECHO_KEY) == [] and echoes(status.raw_status, ECHO_KEY) == []
    assert echoes(str(exc), ECHO_KEY) == [] and "***" in exc.detail


def test_status_parsers_mask_the_key_wherever_seaart_puts_it() -> None:
    body = {"status": "COMPLETED", "error_type": ECHO_KEY[4:16], "error": ECHO_KEY.swapcase()}
    for status in (parse_status(body, secrets=[ECHO_KEY]), parse_result(body, secrets=[ECHO_KEY])):
        assert status is not None and echoes(status.failure_detail, ECHO_KEY) == []
