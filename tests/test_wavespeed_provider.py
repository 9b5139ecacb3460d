"""The WaveSpeed client against the local WaveSpeed stand-in, over real sockets."""

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
from PIL import Image

from providers.base import FailureKind, Provider, ProviderError
from providers.wavespeed import WaveSpeedProvider, parse_prediction
from services.spec import GenerationSpec, ImageInput
from tests.fakes.wavespeed_server import UNKNOWN_STATUS_WORD, FakeWaveSpeed, default_mp4, validate_body

KEY = "ws-test-key"


def image(fmt: str = "PNG", size: tuple[int, int] = (480, 320)) -> ImageInput:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 80, 40)).save(buffer, format=fmt)
    mime = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}[fmt]
    return ImageInput(buffer.getvalue(), mime, *size)


def t2v(
    quality: str = "standard", duration: int = 6, prompt: str = "a cat surfing", optimize: bool = True
) -> GenerationSpec:
    return GenerationSpec("t2v", quality, duration, prompt, optimize_prompt=optimize)  # type: ignore[arg-type]


def i2v(
    quality: str = "standard", duration: int = 6, prompt: str = "", img: ImageInput | None = None
) -> GenerationSpec:
    return GenerationSpec("i2v", quality, duration, prompt, image=img or image())  # type: ignore[arg-type]


@pytest.fixture
async def fake() -> AsyncIterator[FakeWaveSpeed]:
    async with FakeWaveSpeed(KEY, duration_s=0.2) as server:
        yield server


@pytest.fixture
async def provider(fake: FakeWaveSpeed) -> AsyncIterator[WaveSpeedProvider]:
    client = WaveSpeedProvider(KEY, fake.base_url, timeout=2.0)
    yield client
    await client.aclose()


async def submit_error(provider: WaveSpeedProvider, spec: GenerationSpec) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await provider.submit(spec)
    return info.value


async def poll_error(provider: WaveSpeedProvider, task_id: str) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await provider.poll(task_id)
    return info.value


def test_provider_satisfies_the_protocol_and_lists_all_six_variants() -> None:
    client: Provider = WaveSpeedProvider(KEY)
    assert client.name == "wavespeed"
    assert client.capabilities.models == ("hailuo-2.3",)
    assert {variant for _, variant in client.capabilities.offers} == {
        "t2v-standard",
        "t2v-pro",
        "i2v-standard",
        "i2v-pro",
        "i2v-fast",
        "i2v-fast-pro",
    }
    assert client.capabilities.can_cancel is False


# ----- submit: the exact wire body ---------------------------------------------------------------------


async def test_t2v_submit_sends_prompt_expansion_and_duration(fake: FakeWaveSpeed, provider: WaveSpeedProvider) -> None:
    task_id = await provider.submit(t2v(duration=10, optimize=False))

    assert task_id in fake.tasks
    assert fake.submits == [
        {
            "endpoint": "minimax/hailuo-2.3/t2v-standard",
            "json": {"prompt": "a cat surfing", "enable_prompt_expansion": False, "duration": 10},
            "query": {},
        }
    ]


@pytest.mark.parametrize(
    ("spec", "endpoint", "has_duration"),
    [
        (t2v("standard"), "t2v-standard", True),
        (t2v("pro"), "t2v-pro", False),
        (i2v("standard"), "i2v-standard", True),
        (i2v("pro"), "i2v-pro", False),
        (i2v("fast", 10), "fast", True),
        (i2v("fast-pro"), "fast-pro", False),
    ],
)
async def test_each_variant_posts_to_its_endpoint_with_duration_only_where_accepted(
    fake: FakeWaveSpeed, provider: WaveSpeedProvider, spec: GenerationSpec, endpoint: str, has_duration: bool
) -> None:
    await provider.submit(spec)

    sent = fake.submits[-1]
    assert sent["endpoint"] == f"minimax/hailuo-2.3/{endpoint}"
    assert isinstance(sent["json"], dict)
    assert ("duration" in sent["json"]) is has_duration
    if has_duration:
        assert sent["json"]["duration"] == spec.duration


async def test_i2v_submit_sends_the_image_as_a_data_url_and_omits_an_empty_prompt(
    fake: FakeWaveSpeed, provider: WaveSpeedProvider
) -> None:
    img = image("JPEG")
    await provider.submit(i2v("fast-pro", prompt="", img=img))

    body = fake.submits[-1]["json"]
    assert isinstance(body, dict)
    assert body == {
        "enable_prompt_expansion": True,
        "image": "data:image/jpeg;base64," + base64.b64encode(img.data).decode(),
    }


async def test_webp_input_is_sent_as_png_because_wavespeed_takes_jpg_or_png(
    fake: FakeWaveSpeed, provider: WaveSpeedProvider
) -> None:
    await provider.submit(i2v(img=image("WEBP")))

    body = fake.submits[-1]["json"]
    assert isinstance(body, dict)
    header, _, payload = str(body["image"]).partition(",")
    assert header == "data:image/png;base64"
    assert Image.open(io.BytesIO(base64.b64decode(payload))).size == (480, 320)


async def test_webhook_url_goes_in_the_query_string(fake: FakeWaveSpeed) -> None:
    client = WaveSpeedProvider(KEY, fake.base_url, webhook_url="https://bot.example/hooks/ws")
    try:
        await client.submit(t2v())
    finally:
        await client.aclose()
    assert fake.submits[-1]["query"] == {"webhook": "https://bot.example/hooks/ws"}


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (t2v("pro", duration=10), "10s"),
        (t2v(prompt=""), "prompt"),
        (GenerationSpec("i2v", "standard", 6, "x"), "image"),
        (GenerationSpec("t2v", "fast", 6, "x"), "not offered"),
    ],
)
async def test_impossible_specs_are_refused_before_anything_is_sent(
    fake: FakeWaveSpeed, provider: WaveSpeedProvider, spec: GenerationSpec, words: str
) -> None:
    exc = await submit_error(provider, spec)

    assert exc.kind is FailureKind.BAD_REQUEST and words in exc.detail
    assert not exc.maybe_created
    assert fake.submits == []


# ----- submit: errors ----------------------------------------------------------------------------------


async def test_wrong_key_is_auth(fake: FakeWaveSpeed) -> None:
    client = WaveSpeedProvider("ws-wrong-key", fake.base_url)
    try:
        exc = await submit_error(client, t2v())
    finally:
        await client.aclose()
    assert exc.kind is FailureKind.AUTH and exc.status == 401
    assert "invalid authentication" in exc.detail
    assert fake.tasks == {}


async def test_exhausted_balance_is_balance(fake: FakeWaveSpeed, provider: WaveSpeedProvider) -> None:
    fake.set_balance_exhausted(True)
    exc = await submit_error(provider, t2v())
    assert exc.kind is FailureKind.BALANCE and exc.status == 402 and not exc.maybe_created


async def test_balance_message_on_a_400_is_still_balance(fake: FakeWaveSpeed, provider: WaveSpeedProvider) -> None:
    fake.fail_next_submit(400, "Insufficient credit, please top up")
    assert (await submit_error(provider, t2v())).kind is FailureKind.BALANCE


async def test_submit_429_is_rate_limited_with_retry_after(fake: FakeWaveSpeed, provider: WaveSpeedProvider) -> None:
    fake.fail_next_submit(429, "Too many requests", retry_after=7)
    exc = await submit_error(provider, t2v())
    assert exc.kind is FailureKind.RATE_LIMITED and exc.retry_after == 7.0 and exc.transient


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_submit_5xx_is_unavailable_and_not_ambiguous(
    fake: FakeWaveSpeed, provider: WaveSpeedProvider, status: int
) -> None:
    fake.fail_next_submit(status, "Internal server error")
    exc = await submit_error(provider, t2v())
    assert exc.kind is FailureKind.UNAVAILABLE and exc.status == status
    assert exc.maybe_created is False
    assert len(fake.submits) == 1


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("duration must be one of 6, 10", FailureKind.BAD_REQUEST),
        ("The prompt contains sensitive content", FailureKind.MODERATION),
        ("Input rejected: NSFW", FailureKind.MODERATION),
        ("request violates our content policy", FailureKind.MODERATION),
    ],
)
async def test_submit_400_is_bad_request_or_moderation_by_its_message(
    fake: FakeWaveSpeed, provider: WaveSpeedProvider, message: str, kind: FailureKind
) -> None:
    fake.fail_next_submit(400, message)
    assert (await submit_error(provider, t2v())).kind is kind


async def test_error_envelope_inside_a_2xx_is_mapped_by_its_code(
    fake: FakeWaveSpeed, provider: WaveSpeedProvider
) -> None:
    fake.fail_next_submit(402, "Insufficient balance", http_status=200)
    exc = await submit_error(provider, t2v())
    assert exc.kind is FailureKind.BALANCE and exc.status == 402 and not exc.maybe_created


async def test_error_detail_is_short_and_never_holds_the_key(fake: FakeWaveSpeed, provider: WaveSpeedProvider) -> None:
    fake.fail_next_submit(400, f"bad request for {KEY}\n{'x' * 500} Authorization: Bearer {KEY} echoed")
    exc = await submit_error(provider, t2v())
    assert KEY not in str(exc) and KEY not in exc.detail
    assert len(exc.detail) < 130 and "\n" not in exc.detail


async def test_connection_refused_is_unavailable_and_not_ambiguous() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = WaveSpeedProvider(KEY, f"http://127.0.0.1:{port}")
    try:
        exc = await submit_error(client, t2v())
    finally:
        await client.aclose()
    assert exc.kind is FailureKind.UNAVAILABLE and exc.maybe_created is False


async def test_connection_dropped_after_create_is_ambiguous_and_not_resubmitted(
    fake: FakeWaveSpeed, provider: WaveSpeedProvider
) -> None:
    fake.drop_next_submit_after_create()
    exc = await submit_error(provider, t2v())

    assert exc.kind is FailureKind.UNAVAILABLE and exc.maybe_created is True
    assert len(fake.submits) == 1 and len(fake.tasks) == 1
    assert [r.status for r in fake.requests if r.method == "POST"] == [0]


async def test_read_timeout_after_sending_is_ambiguous_and_not_resubmitted(fake: FakeWaveSpeed) -> None:
    fake.slow_next_submit(1.0)
    client = WaveSpeedProvider(KEY, fake.base_url, timeout=0.2)
    try:
        exc = await submit_error(client, t2v())
    finally:
        await client.aclose()
    assert exc.kind is FailureKind.UNAVAILABLE and exc.maybe_created is True
    assert len(fake.submits) == 1 and len(fake.tasks) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"<html>502 Bad Gateway</html>",
        json.dumps({"code": 200, "message": "success", "data": {"status": "created"}}).encode(),
        json.dumps({"code": 200, "message": "success", "data": None}).encode(),
    ],
)
async def test_unreadable_2xx_submit_answer_is_internal_and_ambiguous(body: bytes) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
    client = WaveSpeedProvider(KEY, "https://ws.test", transport=transport)
    try:
        exc = await submit_error(client, t2v())
    finally:
        await client.aclose()
    assert exc.kind is FailureKind.INTERNAL and exc.maybe_created is True


# ----- poll --------------------------------------------------------------------------------------------


async def test_poll_walks_queued_running_succeeded_and_download_fetches_the_clip(
    fake: FakeWaveSpeed, provider: WaveSpeedProvider, tmp_path: Path
) -> None:
    fake.next_scenario(queued_polls=1, processing_polls=2)
    task_id = await provider.submit(t2v())

    states = [(await provider.poll(task_id)).state for _ in range(3)]
    done = await provider.poll(task_id)

    assert states == ["queued", "running", "running"]
    assert done.state == "succeeded" and done.nsfw == (False,)
    assert done.output_url == fake.output_url(task_id)
    assert fake.poll_count(task_id) == 4
    assert fake.tasks[task_id].completed_at is not None

    size = await provider.download(done.output_url, tmp_path / "out.mp4", 10 * 1024 * 1024)
    assert (tmp_path / "out.mp4").read_bytes() == default_mp4()
    assert size == len(default_mp4())
    output_requests = [r for r in fake.requests if r.path.startswith("/outputs/")]
    assert [r.has_auth for r in output_requests] == [False]  # the key never goes to the output host


async def test_time_based_task_completes_after_its_duration(fake: FakeWaveSpeed, provider: WaveSpeedProvider) -> None:
    fake.next_scenario(duration_s=0.3)
    task_id = await provider.submit(i2v("fast"))
    assert (await provider.poll(task_id)).state == "queued"

    await asyncio.sleep(0.35)
    status = await provider.poll(task_id)
    task = fake.tasks[task_id]
    assert status.state == "succeeded"
    assert task.completed_at == pytest.approx(task.submitted_at + 0.3)
    assert task.terminal_seen_at is not None and task.terminal_seen_at >= task.completed_at


@pytest.mark.parametrize(
    ("scenario", "state", "kind", "detail"),
    [
        (
            {"outcome": "failed", "error_text": "upstream render error"},
            "failed",
            FailureKind.GENERATION_FAILED,
            "render",
        ),
        (
            {"outcome": "failed", "error_text": "Output video contains sensitive content"},
            "failed",
            FailureKind.MODERATION,
            "sensitive",
        ),
        ({"outcome": "nsfw"}, "failed", FailureKind.MODERATION, "NSFW"),
        ({"outcome": "no_outputs"}, "failed", FailureKind.OUTPUT_INVALID, "without outputs"),
        ({"outcome": "cancelled"}, "cancelled", None, "cancelled"),
    ],
)
async def test_terminal_outcomes_map_to_states_and_failure_kinds(
    fake: FakeWaveSpeed,
    provider: WaveSpeedProvider,
    scenario: dict[str, str],
    state: str,
    kind: FailureKind | None,
    detail: str,
) -> None:
    fake.next_scenario(queued_polls=0, processing_polls=0, **scenario)
    task_id = await provider.submit(t2v())

    status = await provider.poll(task_id)

    assert status.state == state and status.terminal
    assert status.failure is kind
    assert detail in status.failure_detail
    assert status.output_url is None  # nothing to deliver, not even a flagged clip


async def test_nsfw_flags_are_reported(fake: FakeWaveSpeed, provider: WaveSpeedProvider) -> None:
    fake.next_scenario(queued_polls=0, processing_polls=0, outcome="nsfw")
    status = await provider.poll(await provider.submit(t2v()))
    assert status.nsfw == (True,)


async def test_unknown_status_word_keeps_polling(fake: FakeWaveSpeed, provider: WaveSpeedProvider) -> None:
    fake.next_scenario(queued_polls=0, processing_polls=2, outcome="unknown_status")
    task_id = await provider.submit(t2v())

    first = await provider.poll(task_id)
    await provider.poll(task_id)
    last = await provider.poll(task_id)

    assert first.state == "running" and first.raw_status == UNKNOWN_STATUS_WORD and not first.terminal
    assert last.state == "succeeded"


async def test_poll_429_is_transient_with_retry_after(fake: FakeWaveSpeed, provider: WaveSpeedProvider) -> None:
    task_id = await provider.submit(t2v())
    fake.fail_next_polls(1, 429, retry_after=3)
    exc = await poll_error(provider, task_id)
    assert exc.kind is FailureKind.RATE_LIMITED and exc.retry_after == 3.0 and exc.transient
    assert (await provider.poll(task_id)).state in ("queued", "running", "succeeded")


async def test_poll_5xx_is_transient(fake: FakeWaveSpeed, provider: WaveSpeedProvider) -> None:
    task_id = await provider.submit(t2v())
    fake.fail_next_polls(2, 503)
    for _ in range(2):
        exc = await poll_error(provider, task_id)
        assert exc.kind is FailureKind.UNAVAILABLE and exc.transient
    assert fake.poll_count(task_id) == 0  # injected failures do not advance the task
    await provider.poll(task_id)
    assert fake.poll_count(task_id) == 1


async def test_malformed_poll_is_transient(fake: FakeWaveSpeed, provider: WaveSpeedProvider) -> None:
    task_id = await provider.submit(t2v())
    fake.malformed_next_polls(1)
    exc = await poll_error(provider, task_id)
    assert exc.kind is FailureKind.UNAVAILABLE and exc.transient and exc.detail == "malformed response"


async def test_poll_with_revoked_key_is_auth_and_not_transient(
    fake: FakeWaveSpeed, provider: WaveSpeedProvider
) -> None:
    task_id = await provider.submit(t2v())
    fake.api_key = "rotated"
    exc = await poll_error(provider, task_id)
    assert exc.kind is FailureKind.AUTH and not exc.transient


async def test_poll_unknown_task_is_bad_request_and_not_transient(provider: WaveSpeedProvider) -> None:
    exc = await poll_error(provider, "does-not-exist")
    assert exc.kind is FailureKind.BAD_REQUEST and exc.detail == "unknown task" and not exc.transient


async def test_poll_connection_refused_is_transient(fake: FakeWaveSpeed, provider: WaveSpeedProvider) -> None:
    task_id = await provider.submit(t2v())
    await fake.stop()
    exc = await poll_error(provider, task_id)
    assert exc.kind is FailureKind.UNAVAILABLE and exc.transient


@pytest.mark.parametrize(
    ("word", "state"),
    [
        ("created", "queued"),
        ("queued", "queued"),
        ("pending", "queued"),
        ("processing", "running"),
        ("starting", "running"),
        ("Running", "running"),
        ("timeout", "failed"),
        ("deleted", "cancelled"),
        ("", "running"),
        ("hatching", "running"),
    ],
)
def test_status_words_map_onto_normalised_states(word: str, state: str) -> None:
    status = parse_prediction({"status": word, "outputs": [], "has_nsfw_contents": [], "error": ""})
    assert status.state == state
    assert status.raw_status == word


# ----- download ----------------------------------------------------------------------------------------


async def completed_task(fake: FakeWaveSpeed, provider: WaveSpeedProvider, **scenario: object) -> str:
    fake.next_scenario(queued_polls=0, processing_polls=0, **scenario)
    status = await provider.poll(await provider.submit(t2v()))
    assert status.output_url is not None
    return status.output_url


@pytest.mark.parametrize("chunked", [False, True])
async def test_download_over_the_cap_deletes_the_partial_file(
    fake: FakeWaveSpeed, provider: WaveSpeedProvider, tmp_path: Path, chunked: bool
) -> None:
    url = await completed_task(fake, provider, output_bytes=b"\0" * 300_000, output_chunked=chunked)
    dest = tmp_path / "out.mp4"

    with pytest.raises(ProviderError) as info:
        await provider.download(url, dest, 100_000)

    assert info.value.kind is FailureKind.OUTPUT_INVALID and "too large" in info.value.detail
    assert list(tmp_path.iterdir()) == []


async def test_download_of_a_missing_output_is_output_invalid(
    fake: FakeWaveSpeed, provider: WaveSpeedProvider, tmp_path: Path
) -> None:
    url = await completed_task(fake, provider, output_status=404)
    with pytest.raises(ProviderError) as info:
        await provider.download(url, tmp_path / "out.mp4", 10_000_000)
    assert info.value.kind is FailureKind.OUTPUT_INVALID and info.value.status == 404
    assert list(tmp_path.iterdir()) == []


async def test_cancel_is_not_supported(provider: WaveSpeedProvider) -> None:
    assert await provider.cancel("anything") is False


# ----- the stand-in's own rules (so the client tests above mean something) --------------------------------


@pytest.mark.parametrize(
    ("endpoint", "body", "problem"),
    [
        ("t2v-pro", {"prompt": "x", "duration": 10}, "duration"),
        ("fast-pro", {"prompt": "x", "duration": 10, "image": "https://img.example/a.png"}, "duration"),
        ("t2v-standard", {"prompt": "x", "duration": 8}, "duration"),
        ("fast", {"prompt": "x"}, "image is required"),
        ("i2v-pro", {"image": "data:image/webp;base64,AAAA"}, "format"),
        ("i2v-standard", {"image": "data:image/png;base64,!!!"}, "base64"),
        ("t2v-standard", {"enable_prompt_expansion": True}, "prompt is required"),
    ],
)
def test_fake_refuses_what_the_reference_says_wavespeed_refuses(
    endpoint: str, body: dict[str, object], problem: str
) -> None:
    assert problem in (validate_body(endpoint, body) or "")


def test_fake_refuses_small_images() -> None:
    small = image(size=(300, 300))
    body = {"image": f"data:image/png;base64,{base64.b64encode(small.data).decode()}"}
    assert "short side" in (validate_body("i2v-standard", body) or "")


async def test_fake_serves_the_bare_prediction_path_too(fake: FakeWaveSpeed, provider: WaveSpeedProvider) -> None:
    task_id = await provider.submit(t2v())
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}) as http:
        response = await http.get(f"{fake.base_url}/api/v3/predictions/{task_id}")
    payload = response.json()
    assert payload["code"] == 200 and payload["data"]["id"] == task_id
    assert payload["data"]["urls"]["get"].endswith(f"/predictions/{task_id}/result")
