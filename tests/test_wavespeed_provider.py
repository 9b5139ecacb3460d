"""The WaveSpeed client against the local WaveSpeed stand-in, over real sockets."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from PIL import Image

from core.provider import Provider, ProviderError, WebhookProvider, WebhookRejected
from core.spec import GenerationSpec, ImageInput
from core.tasks import FailureKind
from providers.wavespeed import WaveSpeedProvider, parse_prediction, verify_callback
from tests.fakes.wavespeed_server import UNKNOWN_STATUS_WORD, FakeWaveSpeed, default_mp4, validate_body
from tests.leaks import echoes, key_echoes

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
    quality: str = "standard",
    duration: int = 6,
    prompt: str = "",
    img: ImageInput | None = None,
    *,
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


def t2v02(quality: str = "standard", duration: int = 6) -> GenerationSpec:
    return GenerationSpec("t2v", quality, duration, "a fox in snow", model="hailuo-02")  # type: ignore[arg-type]


def data_url(img: ImageInput) -> str:
    return f"data:{img.mime};base64,{base64.b64encode(img.data).decode()}"


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


def test_provider_satisfies_the_protocol_and_lists_every_offer() -> None:
    client: Provider = WaveSpeedProvider(KEY)
    assert client.name == "wavespeed"
    assert client.capabilities.models == ("hailuo-02", "hailuo-2.3")
    assert client.capabilities.offers == {
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
    assert client.capabilities.end_frame_models == {"hailuo-02"}
    assert client.capabilities.can_cancel is False


def test_capabilities_route_end_frames_only_to_hailuo_02() -> None:
    caps = WaveSpeedProvider(KEY).capabilities
    assert caps.serves(i2v("pro", model="hailuo-02", end=image()))
    assert not caps.serves(i2v("pro", end=image()))  # Hailuo 2.3 has no last-frame mode
    assert not caps.serves(i2v("fast", model="hailuo-02"))  # no fast tiers for Hailuo 02


def test_callbacks_can_be_verified_with_or_without_a_url_to_receive_them() -> None:
    # Whether callbacks arrive is the composition root's decision (a public URL); the provider can always
    # verify them once it has fetched its signing secret.
    plain = WaveSpeedProvider(KEY)
    hooked: WebhookProvider = WaveSpeedProvider(KEY, webhook_url="https://bot.example/webhooks/wavespeed/t")
    assert plain.capabilities.verifies_callbacks is True and hooked.capabilities.verifies_callbacks is True
    assert hooked.capabilities.offers == plain.capabilities.offers


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


async def test_webhook_url_goes_in_the_query_string_url_encoded(fake: FakeWaveSpeed) -> None:
    # `?` and `&` inside the URL would split it into several parameters if it were not encoded.
    url = "https://bot.example/webhooks/wavespeed/tok?a=1&b=2"
    client = WaveSpeedProvider(KEY, fake.base_url, webhook_url=url)
    try:
        task_id = await client.submit(t2v())
    finally:
        await client.aclose()
    assert fake.submits[-1]["query"] == {"webhook": url}
    assert fake.tasks[task_id].webhook_url == url


async def test_no_webhook_url_means_no_query_string(fake: FakeWaveSpeed, provider: WaveSpeedProvider) -> None:
    task_id = await provider.submit(t2v())
    assert fake.submits[-1]["query"] == {}
    assert fake.tasks[task_id].webhook_url is None


# ----- Hailuo 02 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "endpoint", "duration"),
    [
        (t2v02("standard", 10), "t2v-standard", 10),
        (t2v02("pro"), "t2v-pro", None),
        (i2v("standard", 10, model="hailuo-02"), "i2v-standard", 10),
        (i2v("pro", model="hailuo-02"), "i2v-pro", None),
    ],
)
async def test_hailuo_02_variants_post_to_their_endpoints(
    fake: FakeWaveSpeed, provider: WaveSpeedProvider, spec: GenerationSpec, endpoint: str, duration: int | None
) -> None:
    task_id = await provider.submit(spec)

    sent = fake.submits[-1]
    assert sent["endpoint"] == f"minimax/hailuo-02/{endpoint}"
    assert isinstance(sent["json"], dict)
    assert sent["json"].get("duration") == duration
    assert "end_image" not in sent["json"]
    assert fake.tasks[task_id].model_id == f"minimax/hailuo-02/{endpoint}"


async def test_hailuo_02_i2v_pro_sends_the_last_frame_as_end_image(
    fake: FakeWaveSpeed, provider: WaveSpeedProvider
) -> None:
    first, last = image("PNG"), image("JPEG", (400, 400))
    task_id = await provider.submit(i2v("pro", prompt="dawn to dusk", img=first, model="hailuo-02", end=last))

    assert fake.submits[-1] == {
        "endpoint": "minimax/hailuo-02/i2v-pro",
        "json": {
            "prompt": "dawn to dusk",
            "enable_prompt_expansion": True,
            "image": data_url(first),
            "end_image": data_url(last),
        },
        "query": {},
    }
    assert task_id in fake.tasks


async def test_a_webp_last_frame_is_sent_as_png(fake: FakeWaveSpeed, provider: WaveSpeedProvider) -> None:
    await provider.submit(i2v("pro", model="hailuo-02", end=image("WEBP")))
    body = fake.submits[-1]["json"]
    assert isinstance(body, dict) and str(body["end_image"]).startswith("data:image/png;base64,")


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        # Only hailuo-02/i2v-pro documents `end_image`; elsewhere it would be dropped from a paid clip.
        (i2v("standard", model="hailuo-02", end=image()), "end frame"),
        (i2v("standard", 10, model="hailuo-02", end=image()), "end frame"),
        (i2v("pro", end=image()), "end frame"),  # Hailuo 2.3
        (t2v02("pro", 10), "10s"),
        (i2v("pro", 10, model="hailuo-02"), "10s"),
        (i2v("fast", model="hailuo-02"), "not offered"),
    ],
)
async def test_impossible_hailuo_02_specs_are_refused_before_anything_is_sent(
    fake: FakeWaveSpeed, provider: WaveSpeedProvider, spec: GenerationSpec, words: str
) -> None:
    exc = await submit_error(provider, spec)

    assert exc.kind is FailureKind.BAD_REQUEST and words in exc.detail
    assert not exc.maybe_created
    assert fake.submits == []


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
    fake.next_scenario(duration_s=1.0)
    task_id = await provider.submit(i2v("fast"))
    assert (await provider.poll(task_id)).state != "succeeded"  # a second is long, even on a busy machine

    status = await provider.poll(task_id)
    while status.state != "succeeded":  # wait for the state, not for a time
        await asyncio.sleep(0.05)
        status = await provider.poll(task_id)
    task = fake.tasks[task_id]
    assert task.completed_at == pytest.approx(task.submitted_at + 1.0)
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


URL = "https://img.example/a.png"


@pytest.mark.parametrize(
    ("endpoint", "body", "problem"),
    [
        ("hailuo-2.3/t2v-pro", {"prompt": "x", "duration": 10}, "duration"),
        ("hailuo-2.3/fast-pro", {"prompt": "x", "duration": 10, "image": URL}, "duration"),
        ("hailuo-2.3/t2v-standard", {"prompt": "x", "duration": 8}, "duration"),
        ("hailuo-2.3/fast", {"prompt": "x"}, "image is required"),
        ("hailuo-2.3/i2v-pro", {"image": "data:image/webp;base64,AAAA"}, "format"),
        ("hailuo-2.3/i2v-standard", {"image": "data:image/png;base64,!!!"}, "base64"),
        ("hailuo-2.3/t2v-standard", {"enable_prompt_expansion": True}, "prompt is required"),
        ("hailuo-2.3/i2v-pro", {"image": URL, "end_image": URL}, "end_image is not supported"),
        ("hailuo-02/t2v-standard", {"duration": 6}, "prompt is required"),
        ("hailuo-02/t2v-pro", {"prompt": "x", "duration": 10}, "duration"),
        ("hailuo-02/i2v-standard", {"prompt": "x"}, "image is required"),
        ("hailuo-02/i2v-standard", {"image": URL, "end_image": URL}, "end_image is not supported"),
        ("hailuo-02/i2v-pro", {"image": URL, "duration": 10}, "duration"),
        ("hailuo-02/i2v-pro", {"image": URL, "end_image": "data:image/gif;base64,AAAA"}, "end_image format"),
    ],
)
def test_fake_refuses_what_the_reference_says_wavespeed_refuses(
    endpoint: str, body: dict[str, object], problem: str
) -> None:
    assert problem in (validate_body(f"minimax/{endpoint}", body) or "")


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("hailuo-02/t2v-standard", {"prompt": "x", "duration": 10}),
        ("hailuo-02/i2v-standard", {"image": URL, "duration": 10}),
        ("hailuo-02/i2v-pro", {"image": URL, "end_image": URL, "prompt": "x"}),
    ],
)
def test_fake_accepts_what_the_reference_documents(endpoint: str, body: dict[str, object]) -> None:
    assert validate_body(f"minimax/{endpoint}", body) is None


def test_fake_refuses_small_images() -> None:
    body = {"image": data_url(image(size=(300, 300)))}
    assert "short side" in (validate_body("minimax/hailuo-2.3/i2v-standard", body) or "")
    body = {"image": URL, "end_image": data_url(image(size=(300, 300)))}
    assert "end_image short side" in (validate_body("minimax/hailuo-02/i2v-pro", body) or "")


async def test_fake_serves_the_bare_prediction_path_too(fake: FakeWaveSpeed, provider: WaveSpeedProvider) -> None:
    task_id = await provider.submit(t2v())
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}) as http:
        response = await http.get(f"{fake.base_url}/api/v3/predictions/{task_id}")
    payload = response.json()
    assert payload["code"] == 200 and payload["data"]["id"] == task_id
    assert payload["data"]["urls"]["get"].endswith(f"/predictions/{task_id}/result")


# ----- webhooks: the signing secret ---------------------------------------------------------------------


def sign(key: bytes, event_id: str, stamp: str, body: bytes) -> str:
    """An independent signer, written from the docs: `v3,` + hex HMAC-SHA256 of "{id}.{ts}.{body}"."""
    return "v3," + hmac.new(key, f"{event_id}.{stamp}.".encode() + body, hashlib.sha256).hexdigest()


def signed_headers(key: bytes, body: bytes, *, stamp: int, event_id: str = "evt-1") -> dict[str, str]:
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(key, event_id, str(stamp), body),
    }


async def test_prepare_webhooks_fetches_the_secret_once_and_verifies_with_it_stripped(
    fake: FakeWaveSpeed, provider: WaveSpeedProvider
) -> None:
    await provider.prepare_webhooks()
    await provider.prepare_webhooks()

    fetches = [r for r in fake.requests if r.path == "/api/v3/webhook/secret"]
    assert [(r.method, r.status, r.has_auth) for r in fetches] == [("GET", 200, True)]  # cached after one
    now = 1_760_000_000
    body = b'{"id":"task-1","status":"completed"}'
    key = fake.webhook_secret.removeprefix("whsec_").encode()
    signal = provider.verify_webhook(signed_headers(key, body, stamp=now), body, now)
    assert (signal.task_id, signal.event_id, signal.reply) == ("task-1", "evt-1", None)


async def test_a_base64_decoded_secret_would_not_verify(fake: FakeWaveSpeed, provider: WaveSpeedProvider) -> None:
    # Guards the one trap in the docs: the `whsec_` secret is used as text, not base64-decoded.
    await provider.prepare_webhooks()
    decoded = base64.b64decode(fake.webhook_secret.removeprefix("whsec_"))
    body = b'{"id":"task-1"}'
    with pytest.raises(WebhookRejected):
        provider.verify_webhook(signed_headers(decoded, body, stamp=100), body, 100)


async def test_callbacks_are_rejected_until_the_secret_is_loaded(provider: WaveSpeedProvider) -> None:
    body = b'{"id":"task-1"}'
    with pytest.raises(WebhookRejected, match="not loaded"):
        provider.verify_webhook(signed_headers(b"", body, stamp=100), body, 100)


async def test_prepare_webhooks_with_a_wrong_key_is_auth(fake: FakeWaveSpeed) -> None:
    client = WaveSpeedProvider("ws-wrong-key", fake.base_url)
    try:
        with pytest.raises(ProviderError) as info:
            await client.prepare_webhooks()
    finally:
        await client.aclose()
    assert info.value.kind is FailureKind.AUTH


@pytest.mark.parametrize(
    "payload",
    [
        {"code": 200, "message": "success", "data": {"secret": "whsec_"}},
        {"code": 200, "message": "success", "data": {"secret": None}},
        {"code": 200, "message": "success", "data": {}},
        {"code": 500, "message": "Internal error", "data": None},
    ],
)
async def test_an_unusable_secret_answer_is_an_error_not_an_empty_key(payload: dict[str, object]) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=payload))
    client = WaveSpeedProvider(KEY, "https://ws.test", transport=transport)
    try:
        with pytest.raises(ProviderError):
            await client.prepare_webhooks()
        body = b'{"id":"t"}'
        with pytest.raises(WebhookRejected):  # an empty HMAC key must never become "loaded"
            client.verify_webhook(signed_headers(b"", body, stamp=100), body, 100)
    finally:
        await client.aclose()


# ----- webhooks: verification rules (pure) ---------------------------------------------------------------

SECRET = b"c2VjcmV0LWtleS1mb3ItdGVzdHM="
NOW = 1_760_000_000
BODY = json.dumps({"id": "task-42", "status": "completed", "outputs": ["https://cdn.example/x.mp4"]}).encode()


def test_a_good_callback_yields_the_task_and_event_ids() -> None:
    signal = verify_callback(SECRET, signed_headers(SECRET, BODY, stamp=NOW, event_id="evt-9"), BODY, NOW)
    assert (signal.task_id, signal.event_id) == ("task-42", "evt-9")


def test_header_names_are_case_insensitive_and_any_listed_signature_may_match() -> None:
    headers = signed_headers(SECRET, BODY, stamp=NOW)
    good = headers["webhook-signature"]
    mixed = {
        "Webhook-Id": headers["webhook-id"],
        "WEBHOOK-TIMESTAMP": headers["webhook-timestamp"],
        "Webhook-Signature": f"v3,{'0' * 64} {good.upper().replace('V3,', 'v3,')}",
    }
    assert verify_callback(SECRET, mixed, BODY, NOW).task_id == "task-42"


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_timestamps_within_five_minutes_either_way_pass(skew: int) -> None:
    headers = signed_headers(SECRET, BODY, stamp=NOW + skew)
    assert verify_callback(SECRET, headers, BODY, NOW).task_id == "task-42"


@pytest.mark.parametrize("skew", [-301, 301, -86_400])
def test_timestamps_outside_five_minutes_are_rejected(skew: int) -> None:
    with pytest.raises(WebhookRejected, match="window"):
        verify_callback(SECRET, signed_headers(SECRET, BODY, stamp=NOW + skew), BODY, NOW)


def tampered(**changes: str) -> dict[str, str]:
    headers = signed_headers(SECRET, BODY, stamp=NOW)
    headers.update(changes)
    return {name: value for name, value in headers.items() if value != "<drop>"}


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (tampered(**{"webhook-id": "<drop>"}), "missing"),
        (tampered(**{"webhook-timestamp": "<drop>"}), "missing"),
        (tampered(**{"webhook-signature": "<drop>"}), "missing"),
        (tampered(**{"webhook-signature": ""}), "missing"),
        (tampered(**{"webhook-timestamp": "yesterday"}), "timestamp"),
        (tampered(**{"webhook-timestamp": "-1760000000"}), "timestamp"),
        (tampered(**{"webhook-timestamp": "1.76e9"}), "timestamp"),
        (tampered(**{"webhook-timestamp": "９９９"}), "timestamp"),  # full-width digits
        (tampered(**{"webhook-id": "evt\n2"}), "webhook-id"),
        (tampered(**{"webhook-id": "e" * 129}), "webhook-id"),
        (tampered(**{"webhook-id": "evt-2"}), "signature"),  # the id is part of what is signed
        (tampered(**{"webhook-signature": "v1," + sign(SECRET, "evt-1", str(NOW), BODY)[3:]}), "signature"),
        (tampered(**{"webhook-signature": sign(SECRET, "evt-1", str(NOW), BODY)[3:]}), "signature"),
        (tampered(**{"webhook-signature": "v3,zz"}), "signature"),
        (tampered(**{"webhook-signature": "v3,ｆｆ"}), "signature"),
    ],
)
def test_missing_or_garbled_headers_are_rejected(headers: dict[str, str], reason: str) -> None:
    with pytest.raises(WebhookRejected, match=reason):
        verify_callback(SECRET, headers, BODY, NOW)


def test_a_changed_body_or_another_key_is_rejected() -> None:
    headers = signed_headers(SECRET, BODY, stamp=NOW)
    with pytest.raises(WebhookRejected, match="signature"):
        verify_callback(SECRET, headers, BODY.replace(b"task-42", b"task-43"), NOW)
    with pytest.raises(WebhookRejected, match="signature"):
        verify_callback(b"another-secret", headers, BODY, NOW)


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"{not json", "JSON"), (b"\xff\xfe", "JSON"), (b'["task-42"]', "task id"), (b'{"id": ""}', "task id")],
)
def test_a_signed_but_malformed_body_is_rejected(body: bytes, reason: str) -> None:
    with pytest.raises(WebhookRejected, match=reason):
        verify_callback(SECRET, signed_headers(SECRET, body, stamp=NOW), body, NOW)


def test_rejection_reasons_never_contain_the_body() -> None:
    body = b'{"id": "", "secret-looking": "sk-very-private"}'
    with pytest.raises(WebhookRejected) as info:
        verify_callback(SECRET, signed_headers(SECRET, body, stamp=NOW), body, NOW)
    assert "private" not in str(info.value) and len(str(info.value)) < 60


# ----- webhooks: the stand-in's callbacks ----------------------------------------------------------------


class Catcher:
    """A bare local endpoint that records what is POSTed to it."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append((dict(request.headers), await request.read()))
        return web.Response(status=self.status)


@pytest.fixture
async def catcher() -> AsyncIterator[Catcher]:
    catcher = Catcher()
    app = web.Application()
    app.router.add_post("/hook", catcher.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    catcher.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield catcher
    await runner.cleanup()


@pytest.fixture
async def hooked(fake: FakeWaveSpeed, catcher: Catcher) -> AsyncIterator[WaveSpeedProvider]:
    client = WaveSpeedProvider(KEY, fake.base_url, timeout=2.0, webhook_url=catcher.url)
    await client.prepare_webhooks()
    yield client
    await client.aclose()


async def test_the_fake_posts_one_signed_completion_when_a_timed_task_ends(
    fake: FakeWaveSpeed, catcher: Catcher, hooked: WaveSpeedProvider
) -> None:
    fake.next_scenario(duration_s=0.05)
    task_id = await hooked.submit(t2v())

    [delivery] = await fake.wait_for_deliveries(1)
    await asyncio.sleep(0.1)  # room for a (wrong) second callback to show up

    assert len(fake.webhook_deliveries) == 1 and len(catcher.calls) == 1
    headers, body = catcher.calls[0]
    assert delivery.status == 200 and delivery.task_id == task_id
    signal = hooked.verify_webhook(headers, body, time.time())
    assert signal.task_id == task_id and signal.event_id == delivery.event_id
    payload = json.loads(body)
    assert "code" not in payload and "data" not in payload  # docs/providers/wavespeed.md §7: no envelope
    assert payload["status"] == "completed" and payload["outputs"] == [fake.output_url(task_id)]
    assert payload["input"] == fake.submits[-1]["json"]


async def test_a_poll_based_task_calls_back_once_when_a_poll_ends_it(
    fake: FakeWaveSpeed, catcher: Catcher, hooked: WaveSpeedProvider
) -> None:
    fake.next_scenario(queued_polls=0, processing_polls=1, outcome="failed", error_text="render error")
    task_id = await hooked.submit(t2v())

    await hooked.poll(task_id)  # still processing: no callback yet
    await asyncio.sleep(0.05)
    assert fake.webhook_deliveries == []
    await hooked.poll(task_id)  # ends it
    await hooked.poll(task_id)
    await fake.wait_for_deliveries(1)
    await asyncio.sleep(0.05)

    assert len(catcher.calls) == 1
    payload = json.loads(catcher.calls[0][1])
    assert (payload["id"], payload["status"], payload["error"]) == (task_id, "failed", "render error")


async def test_tasks_without_a_webhook_url_send_nothing(fake: FakeWaveSpeed, provider: WaveSpeedProvider) -> None:
    fake.next_scenario(duration_s=0.02)
    task_id = await provider.submit(t2v())
    await asyncio.sleep(0.1)
    assert (await provider.poll(task_id)).state == "succeeded"
    assert fake.webhook_deliveries == []
    with pytest.raises(ValueError):
        await fake.send_webhook(task_id)


@pytest.mark.parametrize(("option", "reason"), [("stale", "window"), ("bad_signature", "signature")])
async def test_stale_and_forged_callbacks_from_the_fake_are_rejected(
    fake: FakeWaveSpeed, catcher: Catcher, hooked: WaveSpeedProvider, option: str, reason: str
) -> None:
    fake.next_scenario(outcome="never")
    task_id = await hooked.submit(t2v())

    delivery = await fake.send_webhook(task_id, **{option: True})

    headers, body = catcher.calls[-1]
    assert delivery.status == 200 and getattr(delivery, option) is True
    with pytest.raises(WebhookRejected, match=reason):
        hooked.verify_webhook(headers, body, time.time())


async def test_the_fake_can_repeat_an_event_id_and_records_unreachable_receivers(
    fake: FakeWaveSpeed, catcher: Catcher, hooked: WaveSpeedProvider
) -> None:
    fake.next_scenario(outcome="never")
    task_id = await hooked.submit(t2v())
    first = await fake.send_webhook(task_id)
    again = await fake.send_webhook(task_id, event_id=first.event_id)
    assert again.event_id == first.event_id
    assert [hooked.verify_webhook(h, b, time.time()).event_id for h, b in catcher.calls] == [first.event_id] * 2

    fake.tasks[task_id].webhook_url = "http://127.0.0.1:9/nowhere"  # discard port: nobody listens
    assert (await fake.send_webhook(task_id)).status == 0


ECHO_KEY = "wsk_live_4Tq8Lm2Xz7Pb9Rv3Nc5Kd6"


async def test_a_failed_task_quoting_the_key_keeps_no_part_of_it() -> None:
    upper, short, middle, _ = key_echoes(ECHO_KEY)
    async with FakeWaveSpeed(ECHO_KEY, duration_s=0.2) as server:
        client = WaveSpeedProvider(ECHO_KEY, server.base_url, timeout=2.0)
        try:
            error_text = f"auth {upper} failed; retried with {short}… and {middle}"
            server.next_scenario(queued_polls=0, processing_polls=0, outcome="failed", error_text=error_text)
            status = await client.poll(await client.submit(t2v()))
        finally:
            await client.aclose()
    assert status.state == "failed" and status.failure_detail.startswith("auth *** failed")
    assert echoes(status.failure_detail, ECHO_KEY) == []


def test_parse_prediction_masks_the_key_in_the_status_and_the_error() -> None:
    data = {"status": ECHO_KEY.upper(), "error": f"bad key {ECHO_KEY[2:14].lower()}"}
    assert echoes(parse_prediction(data, secrets=[ECHO_KEY]).raw_status, ECHO_KEY) == []
    failed = parse_prediction({"status": "failed", "error": data["error"]}, secrets=[ECHO_KEY])
    assert failed.failure_detail == "bad key ***"
