"""The ToAPIs client against the local ToAPIs stand-in, over real sockets."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from PIL import Image

from core.provider import ProviderError, WebhookProvider, WebhookRejected
from core.spec import GenerationSpec, ImageInput
from core.tasks import FailureKind
from providers.kit.transport import AiohttpTransport
from providers.toapis import (
    MAX_UPLOAD_BYTES,
    NEUTRAL_I2V_PROMPT,
    ToApisProvider,
    parse_task,
    retry_after_from,
    shrink_to_jpeg,
)
from tests.fakes.toapis_server import (
    POLICY_MESSAGE,
    UNKNOWN_STATUS_WORD,
    FakeToApis,
    SentWebhook,
    default_mp4,
    sign,
)
from tests.leaks import echoes

KEY = "ta-test-key"
SECRET = "whsec-current-0123456789abcdef0123456789"
OLD_SECRET = "whsec-previous-fedcba9876543210fedcba98"
NOW = 1_800_000_000.0


def image(
    fmt: str = "PNG", size: tuple[int, int] = (480, 320), color: tuple[int, int, int] = (200, 80, 40)
) -> ImageInput:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    mime = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}[fmt]
    return ImageInput(buffer.getvalue(), mime, *size)


def noise_png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    width, height = size
    img = Image.frombytes(mode, size, os.urandom(width * height * len(mode)))
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


def t2v(
    quality: str = "standard",
    duration: int = 6,
    prompt: str = "a cat surfing",
    optimize: bool = True,
    model: str = "hailuo-2.3",
) -> GenerationSpec:
    return GenerationSpec("t2v", quality, duration, prompt, optimize_prompt=optimize, model=model)  # type: ignore[arg-type]


def i2v(
    quality: str = "standard",
    duration: int = 6,
    prompt: str = "the cat waves",
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


@pytest.fixture
async def fake() -> AsyncIterator[FakeToApis]:
    async with FakeToApis(KEY, duration_s=0.2, webhook_secret=SECRET) as server:
        yield server


@pytest.fixture
async def provider(fake: FakeToApis) -> AsyncIterator[ToApisProvider]:
    client = local(fake.base_url)
    yield client
    await client.aclose()


async def submit_error(provider: ToApisProvider, spec: GenerationSpec) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await provider.submit(spec)
    return info.value


async def poll_error(provider: ToApisProvider, task_id: str) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await provider.poll(task_id)
    return info.value


def local(
    base_url: str = "https://toapis.test",
    key: str = KEY,
    *,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    previous_webhook_secret: str | None = None,
) -> ToApisProvider:
    """A client for the local fake. TLS verification is off only to skip loading the CA bundle (~0.2 s per
    client): every test talks plain HTTP to 127.0.0.1 or never connects at all."""
    return ToApisProvider(
        key,
        base_url,
        transport=AiohttpTransport(verify=False),
        timeout=2.0,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        previous_webhook_secret=previous_webhook_secret,
    )


# ----- capabilities ------------------------------------------------------------------------------------


def test_capabilities_list_both_models_and_the_end_frame_model_only_for_hailuo_02() -> None:
    client: WebhookProvider = local()
    caps = client.capabilities
    assert client.name == "toapis"
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
    assert caps.serves(i2v(model="hailuo-02", end=image())) and not caps.serves(i2v(end=image()))
    assert caps.can_cancel is False and caps.verifies_callbacks is False


def test_callbacks_are_verified_and_asked_for_only_with_a_signing_secret() -> None:
    assert local(webhook_secret=SECRET).capabilities.verifies_callbacks is True
    assert local(webhook_url="https://bot.example/hook").capabilities.verifies_callbacks is False
    assert local(webhook_secret="").capabilities.verifies_callbacks is False


async def test_without_a_signing_secret_no_callback_url_is_sent(fake: FakeToApis) -> None:
    client = local(fake.base_url, webhook_url="https://bot.example/hooks/toapis")  # no secret: unverifiable
    try:
        await client.submit(t2v())
    finally:
        await client.aclose()
    [body] = fake.submits
    assert isinstance(body, dict) and "callback_url" not in body["metadata"]


# ----- submit: the exact wire bodies -------------------------------------------------------------------


async def test_t2v_flow_sends_the_exact_body_polls_to_success_and_downloads_without_the_key(
    fake: FakeToApis, provider: ToApisProvider, tmp_path: Path
) -> None:
    fake.next_scenario(queued_polls=1, processing_polls=2)
    task_id = await provider.submit(t2v(duration=10, optimize=False))

    assert task_id in fake.tasks and task_id.startswith("vid_")
    assert fake.submits == [
        {
            "model": "MiniMax-Hailuo-2.3",
            "prompt": "a cat surfing",
            "duration": 10,
            "resolution": "768P",
            "metadata": {"prompt_optimizer": False},
        }
    ]
    assert fake.uploads == []

    statuses = [await provider.poll(task_id) for _ in range(4)]
    assert [s.state for s in statuses] == ["queued", "running", "running", "succeeded"]
    assert [s.progress for s in statuses] == [0.0, 0.33, 0.66, 1.0]
    done = statuses[-1]
    assert done.output_url == fake.output_url(task_id) and done.raw_status == "completed"

    assert done.output_url is not None
    size = await provider.download(done.output_url, tmp_path / "out.mp4", 10 * 1024 * 1024)
    assert (tmp_path / "out.mp4").read_bytes() == default_mp4() and size == len(default_mp4())
    assert [r.has_auth for r in fake.requests if r.path.startswith("/outputs/")] == [False]


@pytest.mark.parametrize(
    ("spec", "model", "resolution"),
    [
        (t2v("pro"), "MiniMax-Hailuo-2.3", "1080P"),
        (i2v("pro"), "MiniMax-Hailuo-2.3", "1080P"),
        (i2v("fast", 10), "MiniMax-Hailuo-2.3-Fast", "768P"),
        (i2v("fast-pro"), "MiniMax-Hailuo-2.3-Fast", "1080P"),
        (t2v("standard", 10, model="hailuo-02"), "MiniMax-Hailuo-02", "768P"),
        (i2v("pro", model="hailuo-02", prompt=""), "MiniMax-Hailuo-02", "1080P"),
    ],
)
async def test_each_variant_maps_to_its_model_and_resolution(
    fake: FakeToApis, provider: ToApisProvider, spec: GenerationSpec, model: str, resolution: str
) -> None:
    await provider.submit(spec)

    sent = fake.submits[-1]
    assert isinstance(sent, dict)
    assert (sent["model"], sent["resolution"], sent["duration"]) == (model, resolution, spec.duration)
    assert ("image_urls" in sent) is (spec.mode == "i2v")
    assert ("prompt" in sent) is bool(spec.prompt)


async def test_i2v_uploads_the_image_first_and_sends_its_public_url(fake: FakeToApis, provider: ToApisProvider) -> None:
    img = image("JPEG")
    await provider.submit(i2v("standard", prompt="the cat waves", img=img))

    assert len(fake.uploads) == 1
    upload = fake.uploads[0]
    assert (upload.filename, upload.content_type, upload.size) == ("first-frame.jpg", "image/jpeg", len(img.data))
    assert fake.submits == [
        {
            "model": "MiniMax-Hailuo-2.3",
            "prompt": "the cat waves",
            "duration": 6,
            "resolution": "768P",
            "image_urls": [upload.url],
            "metadata": {"prompt_optimizer": True},
        }
    ]
    assert [(r.method, r.path) for r in fake.requests] == [
        ("POST", "/v1/uploads/images"),
        ("POST", "/v1/videos/generations"),
    ]
    async with httpx.AsyncClient(verify=False) as http:  # the URL is public: it serves the very bytes we uploaded
        served = await http.get(upload.url)
    assert served.content == img.data and served.headers["content-type"] == "image/jpeg"


async def test_hailuo_02_with_an_end_frame_uploads_both_and_sends_last_frame_image(
    fake: FakeToApis, provider: ToApisProvider
) -> None:
    first, last = image("PNG"), image("WEBP", color=(10, 20, 30))
    await provider.submit(i2v("pro", model="hailuo-02", img=first, end=last, prompt="it grows"))

    assert [(u.filename, u.content_type, u.size) for u in fake.uploads] == [
        ("first-frame.png", "image/png", len(first.data)),
        ("last-frame.webp", "image/webp", len(last.data)),
    ]
    assert fake.submits == [
        {
            "model": "MiniMax-Hailuo-02",
            "prompt": "it grows",
            "duration": 6,
            "resolution": "1080P",
            "image_urls": [fake.uploads[0].url],
            "metadata": {"prompt_optimizer": True, "last_frame_image": fake.uploads[1].url},
        }
    ]
    assert len(fake.tasks) == 1


async def test_image_over_the_upload_cap_is_reencoded_as_jpeg_that_fits(
    fake: FakeToApis, provider: ToApisProvider
) -> None:
    size = (1800, 1400)
    data = noise_png(size, "RGBA")  # 4 bytes a pixel, barely compressed
    assert len(data) > MAX_UPLOAD_BYTES
    await provider.submit(i2v(img=ImageInput(data, "image/png", *size)))

    upload = fake.uploads[0]
    assert (upload.filename, upload.content_type) == ("first-frame.jpg", "image/jpeg")
    assert upload.size <= MAX_UPLOAD_BYTES
    sent = fake.submits[-1]
    assert isinstance(sent, dict) and sent["image_urls"] == [upload.url]
    async with httpx.AsyncClient(verify=False) as http:
        served = await http.get(upload.url)
    with Image.open(io.BytesIO(served.content)) as img:
        assert (img.format, img.size, img.mode) == ("JPEG", size, "RGB")


def test_shrinking_lowers_quality_then_pixels_and_keeps_the_aspect_ratio() -> None:
    data = noise_png((800, 600))
    out = shrink_to_jpeg(data, 120_000)
    assert len(out) <= 120_000
    with Image.open(io.BytesIO(out)) as img:
        assert img.format == "JPEG" and img.width < 800
        assert img.width / img.height == pytest.approx(800 / 600, rel=0.01)
        assert min(img.size) > 300


def test_shrinking_applies_exif_orientation_because_the_jpeg_drops_it() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90°: shown as 400×600
    buffer = io.BytesIO()
    Image.new("RGB", (600, 400), (1, 2, 3)).save(buffer, format="JPEG", exif=exif)
    with Image.open(io.BytesIO(shrink_to_jpeg(buffer.getvalue(), 10_000_000))) as img:
        assert img.size == (400, 600)


def test_shrinking_refuses_when_it_would_cut_below_the_minimum_side() -> None:
    with pytest.raises(ProviderError) as info:
        shrink_to_jpeg(noise_png((400, 320)), 2_000)
    assert info.value.kind is FailureKind.BAD_REQUEST and not info.value.maybe_created


async def test_an_ordinary_poll_answer_asks_for_no_wait(fake: FakeToApis, provider: ToApisProvider) -> None:
    # ToAPIs sends X-RateLimit-* on every answer; a 200 with allowance left (reset up to a minute ahead)
    # must not push the next poll back to the reset, or a 30 s job is seen a minute later.
    task_id = await provider.submit(t2v())
    status = await provider.poll(task_id)
    [answer] = [r for r in fake.requests if r.method == "GET"]
    assert answer.status == 200 and status.state in ("queued", "running")
    assert status.retry_after is None


async def test_webhook_url_goes_in_metadata_callback_url(fake: FakeToApis) -> None:
    client = local(fake.base_url, webhook_url="https://bot.example/hooks/toapis", webhook_secret=SECRET)
    try:
        await client.submit(t2v())
    finally:
        await client.aclose()
    sent = fake.submits[-1]
    assert isinstance(sent, dict)
    assert sent["metadata"] == {"prompt_optimizer": True, "callback_url": "https://bot.example/hooks/toapis"}


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (t2v("pro", duration=10), "10s is not offered at 1080P"),
        (i2v("fast-pro", duration=10), "10s is not offered at 1080P"),
        (t2v(prompt=""), "needs a prompt"),
        (GenerationSpec("i2v", "standard", 6, "x"), "needs an image"),
        (GenerationSpec("t2v", "fast", 6, "x"), "not offered"),
        (i2v("fast", model="hailuo-02"), "not offered"),
        (i2v(end=image()), "last frame"),
        (i2v("fast", end=image()), "last frame"),
        (GenerationSpec("t2v", "standard", 6, "x", model="hailuo-02", end_image=image()), "last frame"),
    ],
)
async def test_impossible_specs_are_refused_before_any_upload_or_submit(
    fake: FakeToApis, provider: ToApisProvider, spec: GenerationSpec, words: str
) -> None:
    exc = await submit_error(provider, spec)

    assert exc.kind is FailureKind.BAD_REQUEST and words in exc.detail
    assert not exc.maybe_created
    assert fake.requests == []


# ----- submit: errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "message", "type_", "kind"),
    [
        (401, 401, "Authentication failed, please check your API key", "authentication_error", FailureKind.AUTH),
        (401, "unauthorized", "Authentication failed", None, FailureKind.AUTH),
        (402, 402, "Insufficient account balance, please top up", "payment_required", FailureKind.BALANCE),
        (402, "insufficient_quota", "Insufficient balance", None, FailureKind.BALANCE),
        (400, "insufficient_quota", "quota", None, FailureKind.BALANCE),  # the code word wins over the status
        (402, "402", "Payment required", None, FailureKind.BALANCE),  # a number sent as a string
        (422, "content_policy_violation", "The prompt was rejected", None, FailureKind.MODERATION),
        (422, 422, "Request rejected", None, FailureKind.MODERATION),  # the number alone says policy
        (400, "invalid_request", "duration must be 6 or 10", "invalid_request_error", FailureKind.BAD_REQUEST),
        (400, 400, "Invalid request parameters", "invalid_request_error", FailureKind.BAD_REQUEST),
        (400, "invalid_request", "Input violates the content policy", None, FailureKind.MODERATION),
        (429, "rate_limit_exceeded", "Async task request rate exceeded", None, FailureKind.RATE_LIMITED),
        (503, "rate_limit_unavailable", "The async task submit limiter is unavailable", None, FailureKind.RATE_LIMITED),
        (500, "internal_error", "Internal server error", None, FailureKind.UNAVAILABLE),
        (500, 500, "Internal server error", "server_error", FailureKind.UNAVAILABLE),
        (502, "bad_gateway", "upstream down", None, FailureKind.UNAVAILABLE),
    ],
)
async def test_submit_errors_map_int_and_string_codes(
    fake: FakeToApis,
    provider: ToApisProvider,
    status: int,
    code: int | str,
    message: str,
    type_: str | None,
    kind: FailureKind,
) -> None:
    fake.fail_next_submit(status, code, message, type_)
    exc = await submit_error(provider, t2v())

    assert exc.kind is kind and exc.status == status
    assert exc.maybe_created is False
    assert len(fake.submits) == 1 and fake.tasks == {}
    if isinstance(code, str) and not code.isdigit():
        assert code in exc.detail


async def test_wrong_key_is_auth(fake: FakeToApis) -> None:
    client = local(fake.base_url, "ta-wrong-key")
    try:
        exc = await submit_error(client, t2v())
    finally:
        await client.aclose()
    assert exc.kind is FailureKind.AUTH and exc.status == 401 and "Authentication failed" in exc.detail
    assert fake.tasks == {}


async def test_submit_429_takes_retry_after_over_the_rate_limit_reset(
    fake: FakeToApis, provider: ToApisProvider
) -> None:
    fake.fail_next_submit(
        429, "rate_limit_exceeded", "Async task request rate exceeded", retry_after=7, rate_headers=True
    )
    exc = await submit_error(provider, t2v())
    assert exc.kind is FailureKind.RATE_LIMITED and exc.transient and exc.retry_after == 7.0


async def test_submit_429_without_retry_after_reads_x_ratelimit_reset(
    fake: FakeToApis, provider: ToApisProvider
) -> None:
    fake.fail_next_submit(429, "rate_limit_exceeded", "Async task request rate exceeded", rate_headers=True)
    exc = await submit_error(provider, t2v())
    assert exc.kind is FailureKind.RATE_LIMITED
    assert exc.retry_after is not None and 4.0 <= exc.retry_after <= 6.5  # the fake resets ~5 s from now


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (429, {"Retry-After": "3", "X-RateLimit-Reset": str(int(NOW) + 60)}, 3.0),
        (429, {"X-RateLimit-Reset": str(int(NOW) + 12)}, 12.0),
        (429, {"X-RateLimit-Reset": str(int(NOW) - 5)}, 0.0),
        (429, {"X-RateLimit-Reset": "8"}, 8.0),
        (429, {"X-RateLimit-Reset": "soon"}, None),
        (429, {"X-RateLimit-Reset": "-1"}, None),
        (429, {}, None),
        # Every answer carries the headers: the reset means "wait" only once the allowance is spent.
        (200, {"X-RateLimit-Remaining": "299", "X-RateLimit-Reset": str(int(NOW) + 60)}, None),
        (200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW) + 7)}, 7.0),
        (200, {"X-RateLimit-Reset": str(int(NOW) + 60)}, None),
        (200, {"Retry-After": "2"}, 2.0),
    ],
)
def test_retry_hint_honours_the_reset_only_when_the_allowance_is_spent(
    status: int, headers: dict[str, str], expected: float | None
) -> None:
    assert retry_after_from(httpx.Response(status, headers=headers), now=NOW) == expected


async def test_callback_url_on_a_token_without_webhooks_is_a_clear_bad_request() -> None:
    async with FakeToApis(KEY) as bare:  # no webhook secret: the token has no webhook configured
        # The bot has a secret (set in .env), but the token in ToAPIs' console has no webhook.
        client = local(bare.base_url, webhook_url="https://bot.example/hooks/toapis", webhook_secret=SECRET)
        try:
            exc = await submit_error(client, t2v())
        finally:
            await client.aclose()
        assert bare.tasks == {} and len(bare.submits) == 1
    assert exc.kind is FailureKind.BAD_REQUEST and exc.status == 400 and not exc.maybe_created
    assert "webhook_not_configured" in exc.detail and "no task webhook configured" in exc.detail


async def test_prompt_less_image_to_video_gets_a_neutral_prompt(fake: FakeToApis, provider: ToApisProvider) -> None:
    # The reference marks `prompt` required for Hailuo 2.3 (the stand-in enforces it): a neutral one is sent.
    await provider.submit(i2v(prompt=""))
    [body] = fake.submits
    assert isinstance(body, dict) and body["prompt"] == NEUTRAL_I2V_PROMPT


async def test_fake_refusals_come_back_as_bad_request(fake: FakeToApis, provider: ToApisProvider) -> None:
    fake.fail_next_submit(400, "invalid_request", "prompt is required")
    exc = await submit_error(provider, t2v())
    assert exc.kind is FailureKind.BAD_REQUEST and "prompt is required" in exc.detail
    assert not exc.maybe_created and fake.tasks == {}


async def test_error_detail_is_short_and_never_holds_the_key(fake: FakeToApis, provider: ToApisProvider) -> None:
    fake.fail_next_submit(400, "invalid_request", f"bad {KEY}\n{'x' * 500} Authorization: Bearer {KEY} echoed")
    exc = await submit_error(provider, t2v())
    assert KEY not in str(exc) and KEY not in exc.detail
    assert len(exc.detail) < 140 and "\n" not in exc.detail


@pytest.mark.parametrize(
    "body",
    [
        b"<html>502 Bad Gateway</html>",
        json.dumps({"object": "generation.task", "status": "queued"}).encode(),
        json.dumps({"id": "", "status": "queued"}).encode(),
    ],
)
async def test_unreadable_2xx_submit_answer_is_internal_and_ambiguous(body: bytes) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
    client = ToApisProvider(KEY, "https://toapis.test", transport=transport)
    try:
        exc = await submit_error(client, t2v())
    finally:
        await client.aclose()
    assert exc.kind is FailureKind.INTERNAL and exc.maybe_created is True


async def test_gateway_timeout_on_submit_is_ambiguous() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(504, text="gateway timeout"))
    client = ToApisProvider(KEY, "https://toapis.test", transport=transport)
    try:
        exc = await submit_error(client, t2v())
    finally:
        await client.aclose()
    assert exc.kind is FailureKind.UNAVAILABLE and exc.maybe_created is True


# ----- uploads -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        (400, "Unsupported image type. Allowed: JPEG, PNG, WebP, GIF", FailureKind.BAD_REQUEST),
        (400, "Image too large. Maximum size is 10MB", FailureKind.BAD_REQUEST),
        (500, "storage unavailable", FailureKind.UNAVAILABLE),
        (200, "upload refused", FailureKind.BAD_REQUEST),  # `success: false` in a 2xx
    ],
)
async def test_upload_failure_submits_nothing_and_is_safe(
    fake: FakeToApis, provider: ToApisProvider, status: int, message: str, kind: FailureKind
) -> None:
    fake.fail_next_upload(status, message)
    exc = await submit_error(provider, i2v())

    assert exc.kind is kind and exc.maybe_created is False
    assert "upload" in exc.detail and message[:20] in exc.detail
    assert fake.submits == [] and fake.tasks == {}


async def test_upload_with_a_revoked_key_is_auth_and_submits_nothing(fake: FakeToApis) -> None:
    client = local(fake.base_url, "ta-revoked")
    try:
        exc = await submit_error(client, i2v())
    finally:
        await client.aclose()
    assert exc.kind is FailureKind.AUTH and not exc.maybe_created and fake.submits == []


async def test_upload_timeout_is_not_ambiguous() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/uploads/images":
            raise httpx.ReadTimeout("slow", request=request)
        raise AssertionError("the paid submit must not be sent")

    client = ToApisProvider(KEY, "https://toapis.test", transport=httpx.MockTransport(handler))
    try:
        exc = await submit_error(client, i2v())
    finally:
        await client.aclose()
    assert exc.kind is FailureKind.UNAVAILABLE and exc.maybe_created is False and "upload" in exc.detail


async def test_end_frame_upload_failure_submits_nothing(fake: FakeToApis, provider: ToApisProvider) -> None:
    fake.fail_next_upload(500, "storage unavailable", after=1)  # the first frame uploads, the last frame fails
    exc = await submit_error(provider, i2v(model="hailuo-02", end=image()))

    assert exc.kind is FailureKind.UNAVAILABLE and not exc.maybe_created
    assert len(fake.uploads) == 1 and fake.submits == []


# ----- poll --------------------------------------------------------------------------------------------


async def test_time_based_task_completes_after_its_duration(fake: FakeToApis, provider: ToApisProvider) -> None:
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
    ("outcome", "kind", "detail"),
    [
        ("failed", FailureKind.GENERATION_FAILED, "upstream render error"),
        ("policy", FailureKind.MODERATION, "content policy"),
    ],
)
async def test_failed_tasks_map_to_generation_failed_or_moderation(
    fake: FakeToApis, provider: ToApisProvider, outcome: str, kind: FailureKind, detail: str
) -> None:
    fake.next_scenario(queued_polls=0, processing_polls=0, outcome=outcome)
    status = await provider.poll(await provider.submit(t2v()))

    assert status.state == "failed" and status.terminal
    assert status.failure is kind and detail in status.failure_detail
    assert status.failure_detail.startswith("generation_failed")
    assert status.output_url is None


async def test_unknown_status_word_keeps_polling(fake: FakeToApis, provider: ToApisProvider) -> None:
    fake.next_scenario(queued_polls=0, processing_polls=2, outcome="unknown_status")
    task_id = await provider.submit(t2v())

    first = await provider.poll(task_id)
    second = await provider.poll(task_id)
    last = await provider.poll(task_id)

    assert first.state == second.state == "running" and first.raw_status == UNKNOWN_STATUS_WORD
    assert not first.terminal
    assert last.state == "succeeded"


async def test_never_finishing_task_stays_running(fake: FakeToApis, provider: ToApisProvider) -> None:
    fake.next_scenario(queued_polls=0, processing_polls=0, outcome="never")
    task_id = await provider.submit(t2v())
    assert [(await provider.poll(task_id)).state for _ in range(3)] == ["running"] * 3
    assert fake.tasks[task_id].completed_at is None


async def test_poll_unknown_task_is_bad_request_and_not_transient(provider: ToApisProvider) -> None:
    exc = await poll_error(provider, "vid_missing")
    assert exc.kind is FailureKind.BAD_REQUEST and exc.status == 404 and not exc.transient


async def test_poll_429_is_rate_limited_with_retry_after(fake: FakeToApis, provider: ToApisProvider) -> None:
    task_id = await provider.submit(t2v())
    fake.fail_next_polls(1, 429, retry_after=3)
    exc = await poll_error(provider, task_id)
    assert exc.kind is FailureKind.RATE_LIMITED and exc.retry_after == 3.0 and exc.transient
    assert fake.poll_count(task_id) == 0  # injected failures do not advance the task
    assert (await provider.poll(task_id)).state in ("queued", "running", "succeeded")


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_poll_5xx_is_transient(fake: FakeToApis, provider: ToApisProvider, status: int) -> None:
    task_id = await provider.submit(t2v())
    fake.fail_next_polls(2, status)
    for _ in range(2):
        exc = await poll_error(provider, task_id)
        assert exc.kind is FailureKind.UNAVAILABLE and exc.transient and exc.status == status
    await provider.poll(task_id)
    assert fake.poll_count(task_id) == 1


async def test_malformed_poll_is_transient(fake: FakeToApis, provider: ToApisProvider) -> None:
    task_id = await provider.submit(t2v())
    fake.malformed_next_polls(1)
    exc = await poll_error(provider, task_id)
    assert exc.kind is FailureKind.UNAVAILABLE and exc.transient and exc.detail == "malformed response"


async def test_poll_with_a_revoked_key_is_auth_and_not_transient(fake: FakeToApis, provider: ToApisProvider) -> None:
    task_id = await provider.submit(t2v())
    fake.fail_next_polls(1, 401)
    exc = await poll_error(provider, task_id)
    assert exc.kind is FailureKind.AUTH and not exc.transient


async def test_poll_connection_refused_is_transient(fake: FakeToApis, provider: ToApisProvider) -> None:
    task_id = await provider.submit(t2v())
    await fake.stop()
    exc = await poll_error(provider, task_id)
    assert exc.kind is FailureKind.UNAVAILABLE and exc.transient


@pytest.mark.parametrize(
    ("payload", "state", "progress"),
    [
        ({"status": "queued", "progress": 0}, "queued", 0.0),
        ({"status": "submitted"}, "queued", None),
        ({"status": "pending"}, "queued", None),
        ({"status": "in_progress", "progress": 65}, "running", 0.65),
        ({"status": "in_progress", "progress": "40%"}, "running", 0.4),
        ({"status": "in_progress", "progress": 250}, "running", 1.0),
        ({"status": "in_progress", "progress": True}, "running", None),
        ({"status": "IN_PROGRESS"}, "running", None),
        ({"status": "cancelled"}, "cancelled", None),
        ({"status": "hatching", "progress": 5}, "running", 0.05),
        ({"status": ""}, "running", None),
    ],
)
def test_status_words_map_onto_normalised_states(
    payload: dict[str, object], state: str, progress: float | None
) -> None:
    status = parse_task(payload)
    assert status.state == state and status.progress == progress
    assert status.raw_status == payload["status"]


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ({"code": "generation_failed", "message": POLICY_MESSAGE}, FailureKind.MODERATION),
        ({"code": "content_policy_violation", "message": "rejected"}, FailureKind.MODERATION),
        ({"code": "generation_failed", "message": "Generation failed after retries"}, FailureKind.GENERATION_FAILED),
        ({"code": 500}, FailureKind.GENERATION_FAILED),
        (None, FailureKind.GENERATION_FAILED),
    ],
)
def test_failed_task_errors_are_classified(error: object, kind: FailureKind) -> None:
    status = parse_task({"status": "failed", "error": error})
    assert status.state == "failed" and status.failure is kind and status.failure_detail


@pytest.mark.parametrize(
    "result",
    [None, {"type": "video", "data": []}, {"data": [{"url": "javascript:alert(1)"}]}, {"data": [{"format": "mp4"}]}],
)
def test_completed_without_a_usable_url_is_output_invalid(result: object) -> None:
    status = parse_task({"status": "completed", "result": result})
    assert status.state == "failed" and status.failure is FailureKind.OUTPUT_INVALID


# ----- webhooks ----------------------------------------------------------------------------------------


def event_body(event_id: str = "evt_01abc", kind: str = "generation.completed", task_id: str = "vid_1") -> bytes:
    return json.dumps({"id": event_id, "type": kind, "api_version": "v1", "data": {"task_id": task_id}}).encode()


def signed_headers(
    body: bytes, *, secrets: tuple[str, ...] = (SECRET,), event_id: str = "evt_01abc", timestamp: float = NOW
) -> dict[str, str]:
    ts = str(int(timestamp))
    signature = ",".join(f"v1={sign(s, event_id, ts, body)}" for s in secrets)
    return {
        "X-ToAPIs-Webhook-Id": event_id,
        "X-ToAPIs-Webhook-Timestamp": ts,
        "X-ToAPIs-Webhook-Signature": signature,
    }


@pytest.fixture
def hooks() -> ToApisProvider:
    return local(webhook_secret=SECRET, previous_webhook_secret=OLD_SECRET)


def test_good_signature_yields_the_task_to_poll(hooks: ToApisProvider) -> None:
    body = event_body()
    signal = hooks.verify_webhook(signed_headers(body), body, NOW + 10)
    assert (signal.task_id, signal.event_id, signal.reply) == ("vid_1", "evt_01abc", None)


def test_header_names_are_case_insensitive_and_failed_events_count_too(hooks: ToApisProvider) -> None:
    body = event_body(kind="generation.failed", task_id="vid_2")
    headers = {k.lower(): v for k, v in signed_headers(body).items()}
    assert hooks.verify_webhook(headers, body, NOW).task_id == "vid_2"


def test_endpoint_test_event_verifies_with_nothing_to_poll(hooks: ToApisProvider) -> None:
    body = event_body(event_id="evt_test", kind="endpoint.test", task_id="endpoint_test")
    signal = hooks.verify_webhook(signed_headers(body, event_id="evt_test"), body, NOW)
    assert signal.task_id is None and signal.event_id == "evt_test"


@pytest.mark.parametrize(
    "secrets",
    [(OLD_SECRET,), (SECRET, OLD_SECRET), (OLD_SECRET, SECRET), ("some-other-secret", SECRET)],
)
def test_any_listed_signature_by_the_current_or_previous_secret_is_accepted(
    hooks: ToApisProvider, secrets: tuple[str, ...]
) -> None:
    body = event_body()
    assert hooks.verify_webhook(signed_headers(body, secrets=secrets), body, NOW).task_id == "vid_1"


def test_previous_secret_is_not_accepted_without_being_configured() -> None:
    client = local(webhook_secret=SECRET)
    body = event_body()
    with pytest.raises(WebhookRejected):
        client.verify_webhook(signed_headers(body, secrets=(OLD_SECRET,)), body, NOW)


def test_bad_signature_is_rejected(hooks: ToApisProvider) -> None:
    body = event_body()
    headers = signed_headers(body, secrets=("not-our-secret",))
    with pytest.raises(WebhookRejected, match="bad signature"):
        hooks.verify_webhook(headers, body, NOW)


def test_tampered_body_is_rejected(hooks: ToApisProvider) -> None:
    body = event_body()
    headers = signed_headers(body)
    with pytest.raises(WebhookRejected, match="bad signature"):
        hooks.verify_webhook(headers, event_body(task_id="vid_other"), NOW)


@pytest.mark.parametrize("skew", [-301, 301, 3600])
def test_stale_or_future_timestamps_are_rejected(hooks: ToApisProvider, skew: int) -> None:
    body = event_body()
    with pytest.raises(WebhookRejected, match="timestamp"):
        hooks.verify_webhook(signed_headers(body, timestamp=NOW - skew), body, NOW)


def test_timestamp_at_the_tolerance_edge_is_accepted(hooks: ToApisProvider) -> None:
    body = event_body()
    assert hooks.verify_webhook(signed_headers(body, timestamp=NOW - 300), body, NOW).task_id == "vid_1"


def test_replayed_delivery_verifies_again_with_the_same_event_id(hooks: ToApisProvider) -> None:
    body = event_body()
    first = hooks.verify_webhook(signed_headers(body, timestamp=NOW), body, NOW)
    again = hooks.verify_webhook(signed_headers(body, timestamp=NOW + 30), body, NOW + 30)  # a retry, re-signed
    assert first == again and again.event_id == "evt_01abc"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"X-ToAPIs-Webhook-Id": None}, "missing"),
        ({"X-ToAPIs-Webhook-Timestamp": None}, "missing"),
        ({"X-ToAPIs-Webhook-Signature": None}, "missing"),
        ({"X-ToAPIs-Webhook-Signature": "v1=" + "zz" * 32}, "malformed signature"),
        ({"X-ToAPIs-Webhook-Signature": "v1=abcd"}, "malformed signature"),
        ({"X-ToAPIs-Webhook-Signature": "v2=" + "ab" * 32}, "malformed signature"),
        ({"X-ToAPIs-Webhook-Signature": "ab" * 32}, "malformed signature"),
        ({"X-ToAPIs-Webhook-Timestamp": "1.8e9"}, "timestamp"),
        ({"X-ToAPIs-Webhook-Timestamp": "now"}, "timestamp"),
        ({"X-ToAPIs-Webhook-Id": "evt\n1"}, "event id"),
    ],
)
def test_malformed_headers_are_rejected(hooks: ToApisProvider, change: dict[str, str | None], reason: str) -> None:
    body = event_body()
    headers: dict[str, str] = signed_headers(body)
    for name, value in change.items():
        if value is None:
            del headers[name]
        else:
            headers[name] = value
    with pytest.raises(WebhookRejected, match=reason):
        hooks.verify_webhook(headers, body, NOW)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "malformed JSON"),
        (b"\xff\xfe", "malformed JSON"),
        (b"[1, 2]", "malformed event"),
        (json.dumps({"id": "evt_01abc", "data": {"task_id": "vid_1"}}).encode(), "malformed event"),
        (event_body(event_id="evt_other"), "does not match"),
        (json.dumps({"id": "evt_01abc", "type": "generation.completed", "data": {}}).encode(), "without a task id"),
    ],
)
def test_malformed_bodies_with_a_valid_signature_are_rejected(hooks: ToApisProvider, body: bytes, reason: str) -> None:
    with pytest.raises(WebhookRejected, match=reason):
        hooks.verify_webhook(signed_headers(body), body, NOW)


def test_verification_without_a_secret_rejects_everything() -> None:
    body = event_body()
    with pytest.raises(WebhookRejected):
        local().verify_webhook(signed_headers(body), body, NOW)


async def test_prepare_webhooks_and_cancel_do_nothing(hooks: ToApisProvider) -> None:
    assert await hooks.prepare_webhooks() is None
    assert await hooks.cancel("vid_1") is False


# ----- the fake's own deliveries verify with the provider --------------------------------------------


@dataclass
class Receiver:
    url: str = ""
    deliveries: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    got = Receiver()

    async def handle(request: web.Request) -> web.Response:
        got.deliveries.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks/toapis", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    got.url = f"http://127.0.0.1:{sock.getsockname()[1]}/hooks/toapis"
    await web.SockSite(runner, sock).start()
    yield got
    await runner.cleanup()


def verify_sent(client: ToApisProvider, sent: SentWebhook) -> str | None:
    return client.verify_webhook(sent.headers, sent.body, time.time()).task_id


@pytest.mark.parametrize(("outcome", "kind"), [("completed", "generation.completed"), ("failed", "generation.failed")])
async def test_fake_sends_one_signed_final_event_that_the_provider_verifies(
    fake: FakeToApis, receiver: Receiver, outcome: str, kind: str
) -> None:
    client = local(fake.base_url, webhook_url=receiver.url, webhook_secret=SECRET)
    try:
        fake.next_scenario(duration_s=0.05, outcome=outcome)
        task_id = await client.submit(t2v())
        (sent,) = await fake.wait_for_webhooks(1, timeout=3.0)
        await asyncio.sleep(0.1)  # no second event follows

        assert len(fake.webhooks) == 1 and sent.status == 204 and sent.url == receiver.url
        headers, body = receiver.deliveries[0]
        assert body == sent.body and headers["User-Agent"] == "ToAPIs-Webhook/1.0"
        assert json.loads(body)["type"] == kind
        signal = client.verify_webhook(headers, body, time.time())
        assert signal.task_id == task_id and signal.event_id == sent.event_id
        assert (await client.poll(task_id)).terminal
    finally:
        await client.aclose()


async def test_poll_based_task_sends_its_event_when_it_ends(fake: FakeToApis, receiver: Receiver) -> None:
    client = local(fake.base_url, webhook_url=receiver.url, webhook_secret=SECRET)
    try:
        fake.next_scenario(queued_polls=0, processing_polls=1)
        task_id = await client.submit(t2v())
        await client.poll(task_id)
        assert fake.webhooks == []
        assert (await client.poll(task_id)).state == "succeeded"
        (sent,) = await fake.wait_for_webhooks(1, timeout=3.0)
        assert verify_sent(client, sent) == task_id
    finally:
        await client.aclose()


async def test_hand_sent_stale_bad_and_replayed_events_verify_as_expected(fake: FakeToApis, receiver: Receiver) -> None:
    client = local(fake.base_url, webhook_url=receiver.url, webhook_secret=SECRET)
    try:
        fake.next_scenario(outcome="never")
        task_id = await client.submit(t2v())
        good = await fake.send_event(task_id)
        replay = await fake.send_event(task_id, event_id=good.event_id)
        stale = await fake.send_event(task_id, stale=True)
        forged = await fake.send_event(task_id, bad_signature=True)

        assert verify_sent(client, good) == verify_sent(client, replay) == task_id
        assert replay.event_id == good.event_id
        with pytest.raises(WebhookRejected, match="timestamp"):
            verify_sent(client, stale)
        with pytest.raises(WebhookRejected, match="bad signature"):
            verify_sent(client, forged)
        assert len(receiver.deliveries) == 4
    finally:
        await client.aclose()


async def test_fake_signs_with_both_secrets_during_rotation(receiver: Receiver) -> None:
    async with FakeToApis(KEY, webhook_secret="rotated-new", previous_webhook_secret=SECRET) as rotating:
        client = local(rotating.base_url, webhook_url=receiver.url, webhook_secret=SECRET)
        try:  # our settings still hold the old secret: the second signature carries us through
            rotating.next_scenario(outcome="never")
            task_id = await client.submit(t2v())
            sent = await rotating.send_event(task_id)
            assert sent.headers["X-ToAPIs-Webhook-Signature"].count("v1=") == 2
            assert verify_sent(client, sent) == task_id
        finally:
            await client.aclose()


# ----- download ----------------------------------------------------------------------------------------


async def completed_url(fake: FakeToApis, provider: ToApisProvider, **scenario: object) -> str:
    fake.next_scenario(queued_polls=0, processing_polls=0, **scenario)
    status = await provider.poll(await provider.submit(t2v()))
    assert status.output_url is not None
    return status.output_url


async def test_download_of_a_missing_output_is_output_invalid(
    fake: FakeToApis, provider: ToApisProvider, tmp_path: Path
) -> None:
    url = await completed_url(fake, provider, output_status=404)
    with pytest.raises(ProviderError) as info:
        await provider.download(url, tmp_path / "out.mp4", 10_000_000)
    assert info.value.kind is FailureKind.OUTPUT_INVALID and info.value.status == 404
    assert list(tmp_path.iterdir()) == []


async def test_download_over_the_cap_is_output_invalid_and_leaves_nothing(
    fake: FakeToApis, provider: ToApisProvider, tmp_path: Path
) -> None:
    url = await completed_url(fake, provider, output_bytes=b"\0" * 300_000)
    with pytest.raises(ProviderError) as info:
        await provider.download(url, tmp_path / "out.mp4", 100_000)
    assert info.value.kind is FailureKind.OUTPUT_INVALID and "too large" in info.value.detail
    assert list(tmp_path.iterdir()) == []


# ----- the stand-in's own rules (so the client tests above mean something) --------------------------------


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"model": "MiniMax-Hailuo-2.3", "prompt": "x", "duration": 10, "resolution": "1080P"}, "6-second"),
        ({"model": "MiniMax-Hailuo-2.3-Fast", "prompt": "x"}, "image_urls is required"),
        ({"model": "MiniMax-Hailuo-2.3", "prompt": "x", "image_urls": ["data:image/png;base64,AAAA"]}, "base64"),
        ({"model": "MiniMax-Hailuo-2.3", "prompt": "x", "image_urls": ["/tmp/a.png"]}, "public image URL"),
        (
            {
                "model": "MiniMax-Hailuo-2.3",
                "prompt": "x",
                "image_urls": ["https://img.example/a.png"],
                "metadata": {"last_frame_image": "https://img.example/b.png"},
            },
            "only supported by MiniMax-Hailuo-02",
        ),
        (
            {
                "model": "MiniMax-Hailuo-02",
                "image_urls": ["https://img.example/a.png"],
                "resolution": "512P",
                "metadata": {"last_frame_image": "https://img.example/b.png"},
            },
            "512P",
        ),
        ({"model": "MiniMax-Hailuo-02", "prompt": "x", "resolution": "512P"}, "512P"),
        ({"model": "MiniMax-Hailuo-2.3", "prompt": "x" * 2001}, "2000"),
        ({"model": "MiniMax-Hailuo-2.3", "prompt": "x", "duration": 8}, "duration"),
        ({"model": "MiniMax-Hailuo-2.3", "image_urls": ["https://img.example/a.png"]}, "prompt is required"),
        ({"model": "Sora-2", "prompt": "x"}, "unsupported model"),
    ],
)
def test_fake_refuses_what_the_reference_says_toapis_refuses(body: dict[str, object], problem: str) -> None:
    assert problem in (FakeToApis().validate_body(body) or "")


def test_fake_accepts_hailuo_02_image_to_video_without_a_prompt() -> None:
    assert (
        FakeToApis().validate_body({"model": "MiniMax-Hailuo-02", "image_urls": ["https://img.example/a.png"]}) is None
    )


async def test_fake_upload_refuses_big_or_unknown_files(fake: FakeToApis) -> None:
    async with httpx.AsyncClient(
        verify=False, base_url=fake.base_url, headers={"Authorization": f"Bearer {KEY}"}
    ) as http:
        big = await http.post(
            "/v1/uploads/images", files={"file": ("a.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 11_000_000)}
        )
        text = await http.post("/v1/uploads/images", files={"file": ("a.png", b"hello")})
    assert big.status_code == 400 and "too large" in big.json()["message"]
    assert text.status_code == 400 and "Unsupported image type" in text.json()["message"]
    assert fake.uploads == []


async def test_fake_refuses_a_small_uploaded_image_when_it_is_used(fake: FakeToApis, provider: ToApisProvider) -> None:
    exc = await submit_error(provider, i2v(img=image(size=(300, 300))))
    assert exc.kind is FailureKind.BAD_REQUEST and "short side" in exc.detail
    assert len(fake.uploads) == 1 and fake.tasks == {}


def test_a_status_word_or_error_quoting_the_key_keeps_no_part_of_it() -> None:
    key = "sk-toapis-7Hq2Lx9Pz4Rt8Vb3Nc6K"
    running = parse_task({"status": key.upper()[:30]}, secrets=(key,))
    failed = parse_task({"status": "failed", "error": {"message": f"key {key[3:15].lower()} refused"}}, secrets=(key,))
    assert echoes(running.raw_status, key) == [] and failed.failure_detail == "key *** refused"
