"""End to end: hostile inputs, as a hostile user (or a hostile client) would send them, through the real bot.

Each group is one table run against ONE running bot (starting a bot costs about half a second). Every
refused case must be answered privately with what to fix, and leave no trace: no job row, nothing in
the ledger, not one request at the provider, no public message. After each table the bot must still
serve the next user. Inputs that look hostile but are harmless (mentions, markdown, a mislabelled
PNG, invisible characters around real words) must go through, with the card showing them neutralised
and no message able to ping anyone.

A case that fails is reported by its name together with every other failing case of its table.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
from pebble.pool.process import WORKERS_NAME

from cogs.attachments import AttachmentFetcher
from core.jobs import LedgerTotals
from services.image_pool import ImageChecker
from services.image_structure import Budget
from services.images import MAX_DECLARED_BYTES
from tests import hostile_images as hostile
from tests.e2e.harness import BotUnderTest, running_bot
from tests.e2e.test_generation_flows import cards, finished, jpeg
from tests.fakes.discord_server import LOADING, FakeDiscord, FakeInteraction, FakeMessage
from tests.fakes.wavespeed_server import FakeWaveSpeed
from tests.test_images import animated, encode, png_header_only, webp_vp8x_header

NO_PINGS = {"parse": []}
ZWSP = "\u200b"
PRICE_MICROS = 280_000  # Hailuo 2.3, 768P, 6 s on WaveSpeedAI (config.toml)
REPLY_TIMEOUT = 10.0

Command = Literal["video", "animate"]


# ----- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture
async def wavespeed() -> AsyncIterator[FakeWaveSpeed]:
    fake = FakeWaveSpeed("ws-test-key", duration_s=0.4)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def bot(tmp_path: Path, wavespeed: FakeWaveSpeed) -> AsyncIterator[BotUnderTest]:
    fake = FakeDiscord(upload_limit=10 * 1024 * 1024)
    await fake.start()
    try:
        # Generous daily limits: the accepted table runs several jobs at once (one user each anyway).
        async with running_bot(tmp_path, fake, wavespeed_url=wavespeed.base_url, daily_videos=50) as running:
            yield running
            await running.assert_ledger_balanced()
    finally:
        await fake.stop()


# ----- the tables --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    """An attachment as the hostile user uploads it; `declared_size` is what Discord reports (None = real)."""

    data: bytes
    filename: str
    content_type: str | None
    declared_size: int | None = None
    gone_from_cdn: bool = False  # the attachment URL answers 404
    off_the_cdn: bool = False  # a forged attachment whose URL points at another host


@dataclass(frozen=True)
class Refused:
    name: str
    command: Command
    options: dict[str, object]  # Upload values become attachments when the case runs
    expect: tuple[str, ...]  # phrases the private reply must contain: what to fix
    # True: refused at once from what the interaction carries (no defer, nothing downloaded).
    immediate: bool = True
    # discord.py itself refuses the value before our code runs; the bot's error funnel answers.


def good_image() -> Upload:
    return Upload(jpeg(640, 480), "first.jpg", "image/jpeg")


def prompt_cases() -> list[Refused]:
    """/video and /animate refused for their text or option values; nothing needs to be downloaded."""
    animate = {"image": good_image()}
    return [
        Refused("video-empty-string", "video", {"prompt": ""}, ("The prompt is empty",)),
        Refused(
            "video-zero-width-only",
            "video",
            {"prompt": "\u200b\u200c\u200d\u2060\ufeff\u200b"},
            ("The prompt is empty", "Describe what should happen"),
        ),
        Refused("video-control-chars-only", "video", {"prompt": "\x00\x01\x07\x08\x1b\x7f\x9f"}, ("prompt is empty",)),
        Refused(
            "video-bidi-controls-only", "video", {"prompt": "\u202e\u2066\u2069\u061c\u202a"}, ("prompt is empty",)
        ),
        Refused(
            "video-invisible-and-whitespace-only",
            "video",
            {"prompt": " \u200b\n\t\r\n\u3000\u200d \x00 "},
            ("prompt is empty",),
        ),
        Refused(
            "video-2001-chars-past-the-option-max-length",
            "video",
            {"prompt": "a" * 2001},
            ("2,001 characters", "the limit is 2,000", "Shorten it by 1 character"),
        ),
        Refused(
            "video-2000-chars-that-grow-past-the-limit-when-moves-are-written-in-english",
            "video",
            {"prompt": "a" * 1990 + " [左摇]"},  # 1,995 characters; "[Pan left]" makes it 2,001
            ("2,001 characters once camera moves are written", "Shorten it by 1 character"),
        ),
        Refused("video-only-empty-brackets", "video", {"prompt": "[] [ ]"}, ("empty camera bracket", "[Push in]")),
        Refused("video-only-camera-moves", "video", {"prompt": "[Push in]"}, ("only has camera moves", "Add what")),
        Refused("video-punctuation-only", "video", {"prompt": "!!! ... ??? —"}, ("has no words",)),
        Refused("video-unclosed-bracket", "video", {"prompt": "[Pan left a cat"}, ("never closed", "Close it with")),
        Refused(
            "video-stray-closing-bracket",
            "video",
            {"prompt": "a cat Pan left]"},
            ("without a matching `[`", "remove the stray bracket"),
        ),
        Refused(
            "video-nested-brackets",
            "video",
            {"prompt": "a cat [Pan [left]]"},
            ("inside another one", "Close each camera bracket"),
        ),
        Refused(
            "video-misspelt-move-suggests-the-right-one",
            "video",
            {"prompt": "a cat [Pan lefft]"},
            ("`[Pan lefft]` is not a camera directive", "Did you mean `[Pan left]`?"),
        ),
        Refused(
            "video-four-unknown-items",
            "video",
            {"prompt": "a cat [a,b,c,d]"},
            ("`[a]` is not a camera directive", "use ( ) for other text"),
        ),
        Refused(
            "video-four-real-moves-in-one-bracket",
            "video",
            {"prompt": "a cat [Pan left, Pan right, Push in, Pull out]"},
            ("has 4 camera moves; at most 3", "Split them"),
        ),
        Refused(
            "video-markdown-link-is-a-bracket-group-so-refused-as-a-camera-move",
            "video",
            {"prompt": "a cat, see [link](http://x)"},
            ("`[link]` is not a camera directive",),
        ),
        Refused(
            "video-mention-inside-brackets-is-not-a-move",
            "video",
            {"prompt": "a cat [@everyone]"},
            ("is not a camera directive",),
        ),
        Refused(
            "video-camera-option-injects-a-second-bracket",
            "video",
            {"prompt": "a cat", "camera": "Pan left] [Evil"},
            ("`[Evil]` is not a camera directive",),
        ),
        Refused(
            "video-camera-option-with-four-moves",
            "video",
            {"prompt": "a cat", "camera": "Pan left, Pan right, Push in, Pull out"},
            ("at most 3",),
        ),
        # A hostile client can send option values outside the declared choices. discord.py refuses them
        # (TransformerError) before the command runs; the bot's error funnel says what to fix.
        *(
            Refused(
                f"video-forged-{option}-choice-{value}",
                "video",
                {"prompt": "a cat", option: value},
                ("isn't one of the offered choices",),
            )
            for option, value in (("quality", "ultra"), ("quality", "fast"), ("duration", 7), ("model", "hailuo-99"))
        ),
        Refused(
            "video-10-s-with-pro",
            "video",
            {"prompt": "a cat", "quality": "pro", "duration": 10},
            ("10-second clips are only available at 768P", "`standard`"),
        ),
        Refused(
            "animate-bad-prompt-refused-before-the-image-is-downloaded",
            "animate",
            {**animate, "prompt": "the cat [Pan lefft]"},
            ("Did you mean `[Pan left]`?",),
        ),
        Refused(
            "animate-2001-chars",
            "animate",
            {**animate, "prompt": "b" * 2001},
            ("2,001 characters", "the limit is 2,000"),
        ),
        Refused(
            "animate-10-s-with-fast-pro",
            "animate",
            {**animate, "quality": "fast-pro", "duration": 10},
            ("10-second clips are only available at 768P", "`fast`"),
        ),
    ]


def heic() -> bytes:
    return b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)


def mp4() -> bytes:
    return b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(64)


def truncated(fmt: str) -> bytes:
    data = encode(fmt, (400, 400), noise=True)  # incompressible: half the file is half the pixels
    return data[: len(data) // 2]


def image_cases() -> list[Refused]:
    """/animate refused for its image (or end image). Built when the test runs: some inputs are big."""
    size = ("the short side must be more than 300 px",)
    damaged = ("damaged or incomplete", "Export it again")
    complex_ = ("too complex to process", "screenshot")
    wrong = ("JPEG, PNG or WebP", "Convert it to")
    over = MAX_DECLARED_BYTES + 1

    def case(name: str, upload: Upload, expect: tuple[str, ...], *, immediate: bool = False) -> Refused:
        return Refused(name, "animate", {"image": upload}, expect, immediate)

    def end(name: str, upload: Upload, expect: tuple[str, ...], *, immediate: bool = False, **extra: object) -> Refused:
        options = {"image": good_image(), "end_image": upload, "model": "hailuo-02", "quality": "pro", **extra}
        return Refused(name, "animate", options, expect, immediate)

    return [
        case("short-side-exactly-300", Upload(encode("PNG", (300, 600)), "a.png", "image/png"), ("300×600", *size)),
        case("short-side-299", Upload(jpeg(299, 400), "a.jpg", "image/jpeg"), ("299×400", *size)),
        case("wide-webp-short-side-300", Upload(encode("WEBP", (600, 300)), "a.webp", "image/webp"), ("600×300",)),
        case(
            "just-wider-than-5-to-2",
            Upload(jpeg(1001, 400), "wide.jpg", "image/jpeg"),
            ("1001×400, wider than 5:2", "Crop it to at most 1000×400"),
        ),
        case(
            "just-taller-than-2-to-5",
            Upload(encode("PNG", (400, 1001)), "tall.png", "image/png"),
            ("400×1001, taller than 2:5", "Crop it to at most 400×1000"),
        ),
        case(
            "declared-over-20-mb-is-not-even-downloaded",
            Upload(jpeg(), "huge.jpg", "image/jpeg", declared_size=over),
            ("`huge.jpg` is 20.0 MB; the limit is 20 MB", "Upload a smaller image"),
            immediate=True,
        ),
        case(
            "declared-25-mb-with-a-backtick-and-mention-in-the-name",
            Upload(jpeg(), "@everyone`.jpg", "image/jpeg", declared_size=25 * 1024 * 1024),
            ("`@everyone'.jpg` is 25.0 MB",),  # the backtick cannot close the code span
            immediate=True,
        ),
        case(
            "over-20-mb-actual-while-declaring-50-kb-hits-the-download-cap",
            Upload(b"\xff\xd8\xff" + bytes(MAX_DECLARED_BYTES + 1024 * 1024), "small.jpg", "image/jpeg", 50_000),
            ("larger than 20 MB", "Upload a smaller file"),
        ),
        case(
            "declared-zero-bytes",
            Upload(jpeg(), "empty.jpg", "image/jpeg", declared_size=0),
            ("`empty.jpg` is empty (0 bytes)", "Upload the image again"),
            immediate=True,
        ),
        case(
            "zero-bytes-while-declaring-some",
            Upload(b"", "empty.jpg", "image/jpeg", declared_size=1234),
            ("The image file is empty (0 bytes)",),
        ),
        case("gif", Upload(encode("GIF", (640, 480)), "cat.gif", "image/gif"), ("looks like a GIF image", *wrong)),
        case("gif-named-jpg", Upload(encode("GIF", (640, 480)), "cat.jpg", "image/jpeg"), ("a GIF image",)),
        case("animated-png", Upload(animated("PNG"), "anim.png", "image/png"), ("Animated images", "still JPEG")),
        case("animated-webp", Upload(animated("WEBP"), "anim.webp", "image/webp"), ("Animated images",)),
        case("heic-ftyp", Upload(heic(), "IMG_0001.jpg", "image/jpeg"), ("looks like a HEIC photo", *wrong)),
        case("mp4-ftyp", Upload(mp4(), "clip.png", "image/png"), ("looks like an MP4 video", *wrong)),
        case(
            "text-file-named-png",
            Upload(b"this is my holiday picture, honest\n", "holiday.png", "image/png"),
            ("looks like a text file", *wrong),
        ),
        case(
            "pdf-named-cat-jpg-with-jpeg-content-type",
            Upload(b"%PDF-1.7\n" + bytes(200), "cat.jpg", "image/jpeg"),
            ("looks like a PDF document", *wrong),
        ),
        case(
            "svg-named-png",
            Upload(b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "x.png", "image/png"),
            ("looks like an SVG drawing",),
        ),
        case("truncated-jpeg", Upload(truncated("JPEG"), "cut.jpg", "image/jpeg"), damaged),
        case("truncated-png", Upload(truncated("PNG"), "cut.png", "image/png"), damaged),
        case("truncated-webp", Upload(truncated("WEBP"), "cut.webp", "image/webp"), damaged),
        case("jpeg-magic-then-zeros", Upload(b"\xff\xd8\xff" + bytes(4096), "z.jpg", "image/jpeg"), damaged),
        case(
            "random-bytes",
            Upload(b"\x13\x37" + random.Random(7).randbytes(8192), "noise.jpg", "image/jpeg"),
            ("not an image format I recognise", *wrong),
        ),
        case(
            "png-bomb-ihdr-claims-100000x100000",
            Upload(png_header_only(100_000, 100_000), "bomb.png", "image/png"),
            ("over 50 megapixels", "Resize it"),
        ),
        case(
            "webp-bomb-vp8x-claims-16384x16384",
            Upload(webp_vp8x_header(16_384, 16_384), "bomb.webp", "image/webp"),
            ("268 megapixels", "the limit is 50 megapixels"),
        ),
        # Issue rows 1 and 14: the attacks seen, refused privately within the worker's limits.
        case(
            "observed-progressive-jpeg-one-scan-repeated-4000-times",
            Upload(hostile.progressive_scan_repeat(), "bomb.jpg", "image/jpeg"),
            (*complex_, "normal JPEG or PNG"),
        ),
        case(
            "observed-jpeg-of-20-mib-of-empty-comment-segments",
            Upload(hostile.jpeg_comment_flood(), "comments.jpg", "image/jpeg"),
            complex_,
        ),
        case(
            "observed-png-of-20-mib-of-empty-ancillary-chunks",
            Upload(hostile.png_empty_chunk_flood(), "chunks.png", "image/png"),
            complex_,
        ),
        case(
            "observed-bomb-corrupted-at-its-end",
            Upload(hostile.bomb_corrupted_at_end(), "corrupt.jpg", "image/jpeg"),
            damaged,
        ),
        case(
            "observed-png-with-valid-crcs-and-garbage-pixels",
            Upload(hostile.png_garbage_pixels(), "garbage.png", "image/png"),
            damaged,
        ),
        case(
            "attachment-url-on-another-host",
            Upload(jpeg(), "elsewhere.jpg", "image/jpeg", off_the_cdn=True),
            ("could not download your image", "upload it again"),
        ),
        case(
            "attachment-gone-from-the-cdn",
            Upload(jpeg(), "gone.jpg", "image/jpeg", gone_from_cdn=True),
            ("could not download your image", "upload it again"),
        ),
        end(
            "end-image-too-small-while-image-is-fine",
            Upload(jpeg(250, 400), "last.jpg", "image/jpeg"),
            ("Your end image:", "250×400", *size),
        ),
        end(
            "end-image-is-a-gif", Upload(encode("GIF", (640, 480)), "last.png", "image/png"), ("Your end image:", "GIF")
        ),
        end(
            "end-image-declared-over-20-mb-neither-image-downloaded",
            Upload(jpeg(), "last.jpg", "image/jpeg", declared_size=over),
            ("`last.jpg` is 20.0 MB; the limit is 20 MB",),
            immediate=True,
        ),
        end(
            "end-image-with-hailuo-2-3",
            Upload(jpeg(), "last.jpg", "image/jpeg"),
            ("An end frame needs the Hailuo 02 model",),
            immediate=True,
            model="hailuo-2.3",
        ),
        end(
            "end-image-at-a-quality-wavespeed-cannot-end-on",
            Upload(jpeg(), "last.jpg", "image/jpeg"),
            ("takes an end frame at quality `standard`", "Try `quality: pro`"),
            quality="standard",
        ),
    ]


# ----- running one refused case -----------------------------------------------------------------------------


def attach(fake: FakeDiscord, upload: Upload) -> dict[str, object]:
    attachment = fake.add_attachment(
        upload.data, upload.filename, upload.content_type, declared_size=upload.declared_size
    )
    if upload.gone_from_cdn:
        attachment["url"] = attachment["proxy_url"] = str(attachment["url"]) + "-deleted"
    if upload.off_the_cdn:
        attachment["url"] = attachment["proxy_url"] = str(attachment["url"]).replace(
            fake.base_url, "https://cdn.discordapp.com.attacker.example"
        )
    return attachment


def answered(interaction: FakeInteraction) -> Callable[[], bool]:
    """The private reply is final: not the "thinking…" placeholder any more, and it says something."""

    def check() -> bool:
        reply = interaction.original()
        return reply is not None and not reply.flags & LOADING and bool(reply.content)

    return check


async def count(bot: BotUnderTest, sql: str, user_id: int) -> int:
    row = await bot.app.db.fetchone(sql, (user_id,))
    assert row is not None
    return int(row[0])


async def run_refused(bot: BotUnderTest, wavespeed: FakeWaveSpeed, case: Refused, user_id: int) -> list[str]:
    """Run one case; return what went wrong (empty when the refusal was private, clear and free)."""
    fake = bot.discord
    options = {key: attach(fake, v) if isinstance(v, Upload) else v for key, v in case.options.items()}
    attachment_ids = [str(v["id"]) for v in options.values() if isinstance(v, dict)]
    # Global state is compared with what it was before this case, so a leak is blamed on its own case.
    provider_before, messages_before = len(wavespeed.requests), set(fake.messages)
    reserved_before = (await bot.app.store.ledger_totals()).reserved
    interaction = await fake.invoke(case.command, options, user_id=user_id)
    try:
        await fake.wait_until(answered(interaction), timeout=REPLY_TIMEOUT)
    except TimeoutError:
        reply = interaction.original()
        return [f"case {case.name}: no private reply within {REPLY_TIMEOUT} s (reply so far: {reply!r})"]
    reply = interaction.original()
    assert reply is not None
    problems: list[str] = []
    if not reply.ephemeral:
        problems.append("the reply is public")
    missing = [phrase for phrase in case.expect if phrase not in reply.content]
    if missing:
        problems.append(f"the reply lacks {missing}: {reply.content!r}")
    if "went wrong" in reply.content or "Traceback" in reply.content:
        problems.append(f"an internal error reached the user: {reply.content!r}")
    if reply.allowed_mentions != NO_PINGS:
        problems.append(f"the reply may ping: allowed_mentions={reply.allowed_mentions!r}")
    if interaction.dead:
        problems.append("the interaction was not acknowledged within Discord's 3 s")
    if case.immediate:
        if interaction.response_type != 4:
            problems.append(f"expected an answer at once (type 4), got response type {interaction.response_type}")
        fetched = [r.path for r in fake.requests if r.path.startswith("/attachments/") and r.method == "GET"]
        downloaded = [aid for aid in attachment_ids if any(f"/{aid}/" in path for path in fetched)]
        if downloaded:
            problems.append(f"attachments {downloaded} were downloaded although the refusal needed no bytes")
    elif interaction.response_type != 5 or interaction.deferred_ephemeral is not True:
        problems.append(f"expected an ephemeral defer, got type {interaction.response_type}")
    if interaction.followups:
        problems.append(f"follow-up messages were posted: {[m.id for m in interaction.followups]}")
    if (jobs := await count(bot, "SELECT COUNT(*) FROM jobs WHERE user_id = ?", user_id)) != 0:
        problems.append(f"{jobs} job row(s) were recorded")
    if (rows := await count(bot, "SELECT COUNT(*) FROM ledger WHERE user_id = ?", user_id)) != 0:
        problems.append(f"{rows} ledger row(s) were written")
    if (reserved := (await bot.app.store.ledger_totals()).reserved - reserved_before) != 0:
        problems.append(f"{reserved} micro-dollars were reserved")
    if called := [(r.method, r.path) for r in wavespeed.requests[provider_before:]]:
        problems.append(f"the provider was called: {called}")
    if public := [m.id for i, m in fake.messages.items() if i not in messages_before and not m.ephemeral]:
        problems.append(f"public messages were posted: {public}")
    return [f"case {case.name}: {problem}" for problem in problems]


async def run_table(bot: BotUnderTest, wavespeed: FakeWaveSpeed, table: list[Refused], first_user: int) -> None:
    names = [case.name for case in table]
    assert len(set(names)) == len(names), "case names must be unique"
    failures: list[str] = []
    for offset, case in enumerate(table):
        failures += await run_refused(bot, wavespeed, case, first_user + offset)
    assert not failures, "\n".join(failures)
    # And nothing surfaced late, after a case had been checked.
    fake = bot.discord
    assert wavespeed.requests == [] and wavespeed.submits == []
    assert [m.id for m in fake.messages.values() if not m.ephemeral] == []
    assert await bot.app.db.fetchall("SELECT id FROM jobs") == []
    assert await bot.app.store.ledger_totals() == LedgerTotals(0, 0, 0, 0)
    assert unsafe_sends(fake) == []


# ----- checks shared by the tables ---------------------------------------------------------------------------


def text_sends(fake: FakeDiscord) -> dict[str, object]:
    """Every request the bot made carrying text (content or embeds) -> the allowed_mentions it sent."""
    found: dict[str, object] = {}
    for index, record in enumerate(fake.requests):
        if record.method not in ("POST", "PATCH") or not isinstance(record.json, dict):
            continue
        body = record.json.get("data") if record.path.endswith("/callback") else record.json
        if isinstance(body, dict) and (body.get("content") or body.get("embeds")):
            found[f"#{index} {record.method} {record.path}"] = body.get("allowed_mentions")
    return found


def unsafe_sends(fake: FakeDiscord) -> list[str]:
    """Requests carrying text without allowed_mentions parse [] (fails loudly if none carried text at all)."""
    sends = text_sends(fake)
    assert sends, "the bot sent no text at all: the no-ping check would be vacuous"
    return [f"{send}: allowed_mentions={mentions!r}" for send, mentions in sends.items() if mentions != NO_PINGS]


def unsafe_messages(fake: FakeDiscord) -> list[str]:
    return [
        f"message {m.id} ({'ephemeral' if m.ephemeral else 'public'}): allowed_mentions={m.allowed_mentions!r}"
        for m in fake.messages.values()
        if (m.content or m.embeds) and m.allowed_mentions != NO_PINGS
    ]


async def next_user_is_served(bot: BotUnderTest, wavespeed: FakeWaveSpeed, user_id: int) -> None:
    """After the whole table: a plain /video from someone else is accepted, generated and delivered."""
    fake = bot.discord
    submits_before = len(wavespeed.submits)
    interaction = await fake.invoke("video", {"prompt": "a lighthouse in a storm [Push in]"}, user_id=user_id)
    await fake.wait_until(lambda: len(finished(fake)) == 1, timeout=30)
    await bot.wait_jobs_done()
    [card] = cards(fake)
    assert card.embeds[0]["title"] == "Done · job #1", card.embeds[0]  # job #1: no refused case left a row
    assert card.attachments and card.attachments[0]["data"][4:8] == b"ftyp"
    receipt = interaction.original()
    assert receipt is not None and receipt.ephemeral and "Job #1 accepted ($0.28)" in receipt.content
    assert len(wavespeed.submits) == submits_before + 1
    totals = await bot.app.store.ledger_totals()
    assert (totals.reserved, totals.settled, totals.refunded) == (PRICE_MICROS, PRICE_MICROS, 0)
    assert unsafe_sends(fake) == [] and unsafe_messages(fake) == []


# ----- the tests ----------------------------------------------------------------------------------------------


async def test_hostile_prompts_and_options_are_refused_privately_and_free(
    bot: BotUnderTest, wavespeed: FakeWaveSpeed
) -> None:
    await run_table(bot, wavespeed, prompt_cases(), first_user=5000)
    await next_user_is_served(bot, wavespeed, user_id=4999)


async def test_hostile_images_are_refused_privately_and_free(bot: BotUnderTest, wavespeed: FakeWaveSpeed) -> None:
    await run_table(bot, wavespeed, image_cases(), first_user=6000)
    await next_user_is_served(bot, wavespeed, user_id=5999)


# ----- a bomb in the worker pool holds up no one else ------------------------------------------------------


def lift_the_structure_budget(bot: BotUnderTest, **limits: object) -> AttachmentFetcher:
    """Make the bot's checker let bombs reach the decoder, so that only the worker's own limits (CPU,
    memory, wall clock) stop them: the second line of defence, under test here."""
    fetcher = bot.bot.get_cog("GenerateCog").attachments  # type: ignore[union-attr]
    assert isinstance(fetcher, AttachmentFetcher)
    budget = Budget(segments=10**6, jpeg_scans=10**6, jpeg_block_passes=10**12, jpeg_coefficient_bytes=10**12)
    fetcher.checker = ImageChecker(budget=budget, **limits)  # type: ignore[arg-type]
    return fetcher


def first_request(fake: FakeDiscord, method: str, fragment: str) -> int:
    """The index of the first request to the stand-in with this method whose path contains `fragment`."""
    return next(i for i, r in enumerate(fake.requests) if r.method == method and fragment in r.path)


async def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    try:
        async with asyncio.timeout(timeout):
            while True:
                if condition():
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


async def test_bombs_being_decoded_do_not_hold_up_another_members_video(bot: BotUnderTest) -> None:
    fake = bot.discord
    checker = lift_the_structure_budget(bot).checker  # default limits: 2 s of CPU, then the kernel kills
    bomb = hostile.progressive_scan_repeat()  # needs ~20-46 s of CPU to decode
    bombs = [
        await fake.invoke("animate", {"image": attach(fake, Upload(bomb, "bomb.jpg", "image/jpeg"))}, user_id=uid)
        for uid in (8100, 8101)
    ]
    await wait_for(lambda: checker.running == 2, "both workers are decoding a bomb")
    video = await fake.invoke("video", {"prompt": "a lighthouse in a storm"}, user_id=8102)
    await fake.wait_until(answered(video), timeout=30)
    for interaction in bombs:
        await fake.wait_until(answered(interaction), timeout=60)
        reply = interaction.original()
        assert reply is not None and reply.ephemeral and "too complex to process" in reply.content, reply
    receipt = video.original()
    assert receipt is not None and "accepted" in receipt.content, receipt
    assert not video.dead and video.response_type == 5  # deferred within Discord's 3 s
    # The /video was acknowledged while both bombs were still being decoded: its defer reached the
    # stand-in before either bomb's refusal did.
    refusals = [first_request(fake, "PATCH", f"/{i.token}/messages/@original") for i in bombs]
    assert first_request(fake, "POST", f"/interactions/{video.id}/") < min(refusals)
    await bot.wait_jobs_done()


async def test_stopping_the_bot_during_an_image_check_kills_the_worker_at_once(bot: BotUnderTest) -> None:
    fake = bot.discord
    # No CPU limit and no timeout to speak of: only the shutdown can end this check.
    checker = lift_the_structure_budget(bot, cpu_seconds=3600, timeout=3600).checker
    upload = Upload(hostile.progressive_scan_repeat(), "bomb.jpg", "image/jpeg")
    await fake.invoke("animate", {"image": attach(fake, upload)}, user_id=8200)
    await wait_for(lambda: checker.running == 1, "a worker is decoding the bomb")
    async with asyncio.timeout(10):  # what SIGTERM allows the whole bot
        await bot.bot.close()  # what stop_gracefully ends with: it unloads the cogs
    assert checker.pending == 0
    assert [p for p in multiprocessing.active_children() if p.name == WORKERS_NAME] == []


@dataclass(frozen=True)
class Accepted:
    """Looks hostile, is harmless: must be generated and delivered, shown neutralised, pinging no one."""

    name: str
    command: Command
    options: dict[str, object]
    sent_prompt: str  # what the provider must receive
    shown: tuple[str, ...] = ()  # fragments the finished card's description must contain
    not_shown: tuple[str, ...] = ()  # fragments it must not contain
    image_mime: str | None = None  # the data URL type the provider must receive as `image`
    end_image_mime: str | None = None  # ... and as `end_image`


def accepted_cases() -> list[Accepted]:
    mentions = "@everyone @here look: <@123> and <@&456> in <#789>"
    return [
        Accepted(
            "mentions-in-the-prompt",
            "video",
            {"prompt": f"a cat says {mentions}"},
            sent_prompt=f"a cat says {mentions}",
            shown=(f"@{ZWSP}everyone", f"@{ZWSP}here", f"<{ZWSP}@123>", f"<{ZWSP}@&456>", f"<{ZWSP}#789>"),
            not_shown=("@everyone", "@here", "<@123>", "<@&456>", "<#789>"),
        ),
        Accepted(
            "code-fence",
            "video",
            {"prompt": "a dog ```\nrm -rf /"},
            sent_prompt="a dog ```\nrm -rf /",
            shown=("\\`\\`\\`",),
            not_shown=("```",),
        ),
        Accepted(
            "bold-and-spoiler",
            "video",
            {"prompt": "**a bold fox** ||hidden|| __under__ ~~gone~~"},
            sent_prompt="**a bold fox** ||hidden|| __under__ ~~gone~~",
            shown=("\\*\\*a bold fox\\*\\*", "\\|\\|hidden\\|\\|", "\\_\\_under\\_\\_", "\\~\\~gone\\~\\~"),
        ),
        Accepted(
            "quote-heading-and-subtext-lines",
            "video",
            {"prompt": "> a quoted owl\n# HEADING\n-# small\n1. listed"},
            sent_prompt="> a quoted owl\n# HEADING\n-# small\n1. listed",
            shown=("> \\> a quoted owl", "\n\\# HEADING", "\n\\-# small", "\n1\\. listed"),
            not_shown=("\n# HEADING", "\n-# small"),
        ),
        Accepted(
            "invisible-and-control-characters-around-real-words",
            "video",
            {"prompt": "\u202ea\x00 cat\u200b on a\x07 mat\ufeff\u2066"},
            sent_prompt="a cat on a mat",
        ),
        Accepted(
            "real-png-named-jpg-with-a-gif-content-type",
            "animate",
            {"image": Upload(encode("PNG", (640, 480)), "photo.jpg", "image/gif"), "prompt": "png in disguise"},
            sent_prompt="png in disguise",
            image_mime="image/png",
        ),
        Accepted(
            "real-jpeg-named-exe-with-no-content-type",
            "animate",
            {"image": Upload(jpeg(640, 480), "setup.exe", None), "prompt": "jpeg in disguise"},
            sent_prompt="jpeg in disguise",
            image_mime="image/jpeg",
        ),
        Accepted(
            "control-the-end-image-pair-refused-above-differs-only-by-its-end-image",
            "animate",
            {
                "image": good_image(),
                "end_image": Upload(encode("PNG", (640, 480)), "last.jpg", "image/jpeg"),
                "model": "hailuo-02",
                "quality": "pro",
                "prompt": "first to last",
            },
            sent_prompt="first to last",
            image_mime="image/jpeg",
            end_image_mime="image/png",
        ),
    ]


async def test_hostile_looking_but_harmless_inputs_go_through_without_pinging_anyone(
    bot: BotUnderTest, wavespeed: FakeWaveSpeed
) -> None:
    fake = bot.discord
    table = accepted_cases()
    interactions: dict[str, FakeInteraction] = {}
    for offset, case in enumerate(table):  # one user each, all at once: quotas are not under test here
        options = {key: attach(fake, v) if isinstance(v, Upload) else v for key, v in case.options.items()}
        interactions[case.name] = await fake.invoke(case.command, options, user_id=7000 + offset)
    await fake.wait_until(lambda: len(finished(fake)) == len(table), timeout=30)
    await bot.wait_jobs_done()

    failures: list[str] = []
    by_prompt = {submitted(submit, "prompt"): submit for submit in wavespeed.submits}
    for offset, case in enumerate(table):
        problems: list[str] = []
        receipt = interactions[case.name].original()
        if receipt is None or not receipt.ephemeral or "accepted" not in receipt.content:
            problems.append(f"no private receipt: {receipt and receipt.content!r}")
        rows = await bot.app.db.fetchall("SELECT id, status FROM jobs WHERE user_id = ?", (7000 + offset,))
        if [row["status"] for row in rows] != ["delivered"]:
            problems.append(f"jobs: {[tuple(row) for row in rows]}")
        submit = by_prompt.get(case.sent_prompt)
        if submit is None:
            problems.append(f"the provider never got the prompt {case.sent_prompt!r}; got {list(by_prompt)}")
        else:
            for key, mime in (("image", case.image_mime), ("end_image", case.end_image_mime)):
                sent = submitted(submit, key)
                if mime is not None and not sent.startswith(f"data:{mime};base64,"):
                    problems.append(f"the provider got `{key}` as {sent[:30]!r}")
        card = next(
            (m for m in finished(fake) if rows and m.embeds[0]["title"] == f"Done · job #{rows[0]['id']}"), None
        )
        if card is None:
            problems.append("no Done card")
        else:
            problems += card_problems(card, case)
        failures += [f"case {case.name}: {problem}" for problem in problems]
    failures += unsafe_sends(fake) + unsafe_messages(fake)
    assert not failures, "\n".join(failures)
    assert len(wavespeed.submits) == len(table)
    totals = await bot.app.store.ledger_totals()
    assert totals.refunded == 0 and totals.settled == totals.reserved >= PRICE_MICROS * len(table)


def submitted(submit: dict[str, object], key: str) -> str:
    body = submit["json"]
    assert isinstance(body, dict), submit
    return str(body.get(key))


def card_problems(card: FakeMessage, case: Accepted) -> list[str]:
    embed = card.embeds[0]
    description = str(embed.get("description", ""))
    problems = [
        f"the card does not show {fragment!r}: {description!r}"
        for fragment in case.shown
        if fragment not in description
    ]
    problems += [
        f"the card shows {fragment!r} raw: {description!r}" for fragment in case.not_shown if fragment in description
    ]
    if [f["name"] for f in embed.get("fields", [])] != ["Settings", "Cost", "Requested by"]:
        problems.append(f"the card's fields are broken: {embed.get('fields')!r}")
    if card.content:
        problems.append(f"the card has message content (could ping): {card.content!r}")
    if not card.attachments or card.attachments[0]["data"][4:8] != b"ftyp":
        problems.append("the card has no mp4")
    return problems


# Discord's limits on an autocomplete answer: at most 25 choices, each name 1-100 characters and each
# string value at most 100 characters; Discord refuses the whole answer otherwise (50035), so the
# user sees "Loading options failed".
MAX_CHOICES, MAX_CHOICE_CHARS = 25, 100

HOSTILE_CAMERA_TEXT = {
    "empty": "",
    "only-separators": ",,,,,,，，、、",
    "stray-brackets": "[Pan left]] [",
    "zero-width": "\u200b\u200d\ufeff",
    "mention": "@everyone, Pan",
    "four-moves": "Pan left, Pan right, Push in, Zoom",
    "long-unknown-move-then-a-real-one": "x" * 200 + ", Pan",
    "real-move-then-a-long-unknown-one": "Pan left, " + "y" * 150,
    "huge": "a" * 6000,
}


async def test_camera_autocomplete_answers_hostile_text_within_discord_limits(bot: BotUnderTest) -> None:
    fake = bot.discord
    failures: list[str] = []
    for name, current in HOSTILE_CAMERA_TEXT.items():
        try:
            choices = await fake.autocomplete("video", "camera", current, options={"prompt": "a cat"})
        except TimeoutError:
            failures.append(f"case {name}: no autocomplete answer")
            continue
        if len(choices) > MAX_CHOICES:
            failures.append(f"case {name}: {len(choices)} choices")
        for choice in choices:
            label, value = str(choice.get("name", "")), choice.get("value")
            if not 1 <= len(label) <= MAX_CHOICE_CHARS or not isinstance(value, str) or len(value) > MAX_CHOICE_CHARS:
                failures.append(f"case {name}: choice over Discord's limits ({len(label)} chars): {label[:40]!r}…")
                break
    assert not failures, "\n".join(failures)
