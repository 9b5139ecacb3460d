"""The bounded image check (issue rows 1 and 14), in-process: the adversarial corpus is refused with the
right message before anything expensive runs, every budget holds at its edge, real files of every
kind still pass, and PNG pixel data is really checked. `tests/test_image_pool.py` runs the same corpus
in the worker process and measures its CPU time and peak memory."""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Callable

import pytest
from PIL import Image, JpegImagePlugin

from core.errors import UserError
from services.image_structure import MIB, Budget, _more_restarts_than, walk_jpeg
from services.images import TOO_COMPLEX, inspect_image
from tests import hostile_images as hostile
from tests.test_images import encode

DAMAGED = "damaged or incomplete"


@pytest.mark.parametrize("item", hostile.corpus(), ids=lambda item: item.name)
def test_every_hostile_file_is_refused_with_what_to_do(item: hostile.Hostile) -> None:
    with pytest.raises(UserError) as caught:
        inspect_image(item.build(1))
    assert item.expect in caught.value.message
    if item.expect == hostile.TOO_COMPLEX:
        assert caught.value.message == TOO_COMPLEX
        assert "normal JPEG or PNG" in TOO_COMPLEX and "screenshot" in TOO_COMPLEX


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(hostile.progressive_scan_repeat, id="scan-repeat-bomb"),
        pytest.param(hostile.bomb_corrupted_at_end, id="bomb-corrupted-at-end"),
        pytest.param(hostile.jpeg_no_end, id="bomb-without-end"),
        pytest.param(hostile.huge_coefficient_buffer, id="huge-coefficient-buffer"),
        pytest.param(hostile.jpeg_comment_flood, id="comment-flood"),
    ],
)
def test_jpeg_bombs_are_refused_before_a_single_pixel_is_decoded(
    monkeypatch: pytest.MonkeyPatch, build: Callable[[float], bytes]
) -> None:
    decoded: list[tuple[int, int]] = []
    real_load = JpegImagePlugin.JpegImageFile.load

    def spy(self: JpegImagePlugin.JpegImageFile) -> object:
        decoded.append(self.size)
        return real_load(self)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", spy)
    with pytest.raises(UserError):
        inspect_image(build(1))
    assert decoded == []


def test_pillow_parses_each_file_once(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[object] = []
    real_open = Image.open

    def spy(*args: object, **kwargs: object) -> Image.Image:
        opened.append(args[0])
        return real_open(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Image, "open", spy)
    for fmt in ("JPEG", "PNG", "WEBP"):
        inspect_image(encode(fmt, (640, 480), noise=True))
    assert len(opened) == 3


# ----- real files of every kind still pass ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "size", "options"),
    [
        pytest.param("JPEG", (1201, 803), {"progressive": True, "subsampling": 0}, id="progressive-444-odd-size"),
        pytest.param("JPEG", (1201, 803), {"progressive": True, "subsampling": 1}, id="progressive-422"),
        pytest.param("JPEG", (1201, 803), {"progressive": True, "optimize": True}, id="progressive-optimized"),
        pytest.param("JPEG", (1201, 803), {"restart_marker_blocks": 1}, id="restart-every-mcu"),
        pytest.param("JPEG", (1201, 803), {"restart_marker_rows": 1, "progressive": True}, id="restart-rows-progr"),
        pytest.param("JPEG", (640, 480), {"mode": "L", "progressive": True}, id="greyscale-progressive"),
        pytest.param("JPEG", (640, 480), {"mode": "CMYK", "progressive": True}, id="cmyk-progressive"),
        pytest.param("PNG", (301, 457), {"mode": "1"}, id="png-1-bit"),
        pytest.param("PNG", (301, 457), {"mode": "L"}, id="png-grey"),
        pytest.param("PNG", (301, 457), {"mode": "LA"}, id="png-grey-alpha"),
        pytest.param("PNG", (301, 457), {"mode": "P", "bits": 4}, id="png-palette-4-bit"),
        pytest.param("PNG", (301, 457), {"mode": "RGBA"}, id="png-rgba"),
        pytest.param("PNG", (301, 457), {"mode": "I;16"}, id="png-16-bit-grey"),
        pytest.param("PNG", (333, 401), {"compress_level": 0}, id="png-stored-zlib"),
        pytest.param("WEBP", (1201, 803), {"lossless": True}, id="webp-lossless"),
    ],
)
def test_real_files_of_every_kind_pass(fmt: str, size: tuple[int, int], options: dict[str, object]) -> None:
    mode = str(options.pop("mode", "RGB"))
    data = encode(fmt, size, noise=True, mode=mode, **options)
    result = inspect_image(data)
    assert (result.width, result.height) == size


# Adam7: (first column, first row, column step, row step) of each pass, from the PNG specification.
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def adam7_png(width: int, height: int, *, bad_row: int | None = None) -> bytes:
    """An interlaced 8-bit RGB PNG written by hand (Pillow cannot write one), all rows filter type 0."""
    rows = []
    for x0, y0, dx, dy in ADAM7:
        columns = len(range(x0, width, dx))
        rows += [bytes([0]) + random.Random(len(rows)).randbytes(3 * columns) for _ in range(y0, height, dy)]
    if bad_row is not None:
        rows[bad_row] = b"\x07" + rows[bad_row][1:]
    return (
        hostile.PNG_SIGNATURE
        + hostile.ihdr(width, height, interlace=1)
        + (hostile.chunk(b"IDAT", zlib.compress(b"".join(rows))) + hostile.chunk(b"IEND", b""))
    )


def test_interlaced_png_passes_and_matches_what_pillow_decodes() -> None:
    data = adam7_png(333, 401)
    with Image.open(io.BytesIO(data)) as img:
        img.load()  # Pillow agrees the stream is exactly right
    assert (inspect_image(data).width, inspect_image(data).height) == (333, 401)


@pytest.mark.parametrize("row", [0, 57, -1])
def test_interlaced_png_with_one_bad_filter_byte_is_damaged(row: int) -> None:
    with pytest.raises(UserError, match=DAMAGED):
        inspect_image(adam7_png(333, 401, bad_row=row))


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda raw: raw[:-1], id="one-byte-short"),
        pytest.param(lambda raw: raw + b"\x00", id="one-byte-long"),
        pytest.param(lambda raw: raw[: 3 * 1924] + b"\x05" + raw[3 * 1924 + 1 :], id="filter-5-on-row-3"),
    ],
)
def test_png_pixel_stream_must_be_exactly_right(damage: Callable[[bytes], bytes]) -> None:
    raw = hostile.png_rows(641, 480)  # 1 + 641×3 = 1924 bytes a row
    inspect_image(hostile.png(641, 480, raw))
    with pytest.raises(UserError, match=DAMAGED):
        inspect_image(hostile.png(641, 480, damage(raw)))


def test_png_with_its_pixel_data_split_over_many_idat_chunks_passes() -> None:
    raw = bytes(random.Random(3).randbytes(1924 * 480))
    raw = b"".join(b"\x00" + raw[i * 1924 + 1 : (i + 1) * 1924] for i in range(480))
    assert inspect_image(hostile.png(641, 480, raw, idat_size=777)).mime == "image/png"


# ----- every budget holds at its edge ---------------------------------------------------------------------


def small_progressive(scans: int) -> bytes:
    """A 64×64 progressive greyscale JPEG: a DC scan, then `scans - 1` AC scans."""
    return hostile.progressive_scan_repeat(scans=scans - 1, side=304)


@pytest.mark.parametrize(("scans", "refused"), [(100, False), (101, True)])
def test_scan_limit(scans: int, refused: bool) -> None:
    check(small_progressive(scans), refused)


def with_segments(count: int) -> bytes:
    image = hostile.small_jpeg()
    own = walk_jpeg(image, Budget()).segments
    return hostile.SOI + b"\xff\xfe\x00\x02" * (count - own) + image[2:]


@pytest.mark.parametrize(("count", "refused"), [(2_000, False), (2_001, True)])
def test_segment_limit(count: int, refused: bool) -> None:
    check(with_segments(count), refused)


@pytest.mark.parametrize(("fill", "refused"), [(4_096, False), (4_097, True)])
def test_fill_byte_limit(fill: int, refused: bool) -> None:
    image = hostile.small_jpeg()
    check(image[:2] + b"\xff" * fill + image[2:], refused)


@pytest.mark.parametrize(("count", "refused"), [(2_000, False), (2_001, True)])
def test_png_chunk_limit(count: int, refused: bool) -> None:
    image = hostile.png(640, 480, hostile.png_rows(640, 480))
    check(image[:33] + hostile.chunk(b"tEXt", b"k\x00v") * count + image[33:], refused)


def test_jpeg_decode_work_and_coefficient_memory_have_budgets() -> None:
    progressive = encode("JPEG", (1200, 800), progressive=True)
    baseline = encode("JPEG", (1200, 800))
    tight = Budget(jpeg_coefficient_bytes=100_000)
    check(progressive, refused=True, budget=tight)  # progressive: libjpeg buffers every coefficient
    check(baseline, refused=False, budget=tight)  # baseline: one row of blocks at a time
    check(progressive, refused=True, budget=Budget(jpeg_block_passes=10_000))


def test_restart_markers_beyond_one_per_mcu_are_refused() -> None:
    image = encode("JPEG", (640, 480), restart_marker_blocks=1)
    check(image, refused=False)
    check(image[:-2] + b"\xff\xd0" * 5_000 + hostile.EOI, refused=True)


def check(data: bytes, refused: bool, budget: Budget | None = None) -> None:
    if not refused:
        inspect_image(data, budget or Budget())
        return
    with pytest.raises(UserError) as caught:
        inspect_image(data, budget or Budget())
    assert caught.value.message == TOO_COMPLEX


# ----- row 14: PNG pixels are really checked --------------------------------------------------------------


def test_png_whose_every_crc_is_valid_but_whose_pixels_are_garbage_is_refused() -> None:
    data = hostile.png_garbage_pixels()
    # Each chunk's CRC checks out: the old verify() accepted it.
    with Image.open(io.BytesIO(data)) as img:
        img.verify()
    with pytest.raises(UserError, match=DAMAGED):
        inspect_image(data)


def test_png_chunk_lengths_and_crcs_are_still_checked() -> None:
    good = hostile.png(640, 480, hostile.png_rows(640, 480))
    bad_crc = good[:-5] + bytes([good[-5] ^ 1]) + good[-4:]
    claims_more = good[:33] + struct.pack(">I", 1 << 30) + good[37:]
    for data in (bad_crc, claims_more, good[:-12]):  # (the last one has no IEND)
        with pytest.raises(UserError, match=DAMAGED):
            inspect_image(data)


@pytest.mark.parametrize("at", [0, MIB - 2, MIB - 1, MIB, 2 * MIB - 1])
def test_restart_markers_are_counted_once_wherever_they_fall(at: int) -> None:
    data = bytearray(3 * MIB)
    data[at : at + 2] = b"\xff\xd3"
    data[-2:] = b"\xff\xd7"
    data[2 * MIB + 100 : 2 * MIB + 110] = b"\xff\x00" * 5  # stuffed bytes: 0xFF that are not markers
    assert not _more_restarts_than(bytes(data), 0, len(data), 2)
    assert _more_restarts_than(bytes(data), 0, len(data), 1)
