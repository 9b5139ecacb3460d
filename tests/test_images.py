"""Input images: format from magic bytes, header-only dimensions, provider rules, damage and bombs."""

from __future__ import annotations

import io
import random
import struct
import time
import warnings
import zlib

import pytest
from PIL import Image, JpegImagePlugin, PngImagePlugin, WebPImagePlugin

from core.errors import UserError
from services import images
from services.images import MAX_DECLARED_BYTES, check_declared, inspect_image

DAMAGED = "damaged or incomplete"


# ----- building test files in memory -------------------------------------------------------------------


def encode(fmt: str, size: tuple[int, int], *, noise: bool = False, mode: str = "RGB", **options: object) -> bytes:
    """An image file; `noise` makes it incompressible so that cutting it in half cuts pixel data."""
    if noise:
        width, height = size
        image = Image.frombytes("RGB", size, random.Random(0).randbytes(width * height * 3))
    else:
        image = Image.new("RGB", size, (40, 120, 200))
    image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (400, 400), colour) for colour in ("red", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR (with a correct CRC) claims width×height, with no pixel data at all."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")


def jpeg_with_orientation(size: tuple[int, int], orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode("JPEG", size, exif=exif.tobytes())


# ----- check_declared -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [
        pytest.param(None, id="unknown"),
        pytest.param(1, id="one-byte"),
        pytest.param(MAX_DECLARED_BYTES, id="exactly-20-mb"),
    ],
)
def test_declared_size_accepted(size: int | None) -> None:
    check_declared(size, "cat.jpg")


@pytest.mark.parametrize(
    ("size", "fragment"),
    [
        pytest.param(0, "is empty (0 bytes)", id="zero"),
        pytest.param(MAX_DECLARED_BYTES + 1, "the limit is 20 MB", id="one-byte-over"),
        pytest.param(25 * 1024 * 1024, "is 25.0 MB", id="25-mb"),
    ],
)
def test_declared_size_refused_before_download(size: int, fragment: str) -> None:
    with pytest.raises(UserError) as caught:
        check_declared(size, "holiday.png")
    assert fragment in caught.value.message
    assert "`holiday.png`" in caught.value.message


def test_declared_refusal_cannot_break_out_of_its_code_span() -> None:
    with pytest.raises(UserError) as caught:
        check_declared(0, "a`b`c.png")
    assert caught.value.message.count("`") == 2


# ----- accepted images ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "mime", "size"),
    [
        pytest.param(encode("JPEG", (640, 480)), "image/jpeg", (640, 480), id="jpeg"),
        pytest.param(encode("PNG", (640, 480)), "image/png", (640, 480), id="png"),
        pytest.param(encode("WEBP", (640, 480)), "image/webp", (640, 480), id="webp"),
        pytest.param(encode("JPEG", (301, 600)), "image/jpeg", (301, 600), id="short-side-301"),
        pytest.param(encode("PNG", (400, 1000)), "image/png", (400, 1000), id="exactly-2-to-5"),
        pytest.param(encode("WEBP", (1000, 400)), "image/webp", (1000, 400), id="exactly-5-to-2"),
        pytest.param(encode("JPEG", (640, 480), progressive=True), "image/jpeg", (640, 480), id="progressive-jpeg"),
        pytest.param(encode("JPEG", (640, 480), noise=True), "image/jpeg", (640, 480), id="jpeg-noise"),
        pytest.param(encode("PNG", (400, 400), noise=True), "image/png", (400, 400), id="png-noise"),
        pytest.param(encode("WEBP", (400, 400), noise=True), "image/webp", (400, 400), id="webp-noise"),
        pytest.param(encode("PNG", (640, 480), save_all=True), "image/png", (640, 480), id="single-frame-apng"),
        pytest.param(encode("JPEG", (640, 480), mode="L"), "image/jpeg", (640, 480), id="greyscale-jpeg"),
        pytest.param(encode("JPEG", (640, 480), mode="CMYK"), "image/jpeg", (640, 480), id="cmyk-jpeg"),
        pytest.param(encode("PNG", (640, 480), mode="RGBA"), "image/png", (640, 480), id="rgba-png"),
        pytest.param(encode("PNG", (640, 480), mode="P"), "image/png", (640, 480), id="palette-png"),
        pytest.param(encode("PNG", (640, 480), mode="I;16"), "image/png", (640, 480), id="16-bit-png"),
        pytest.param(encode("WEBP", (640, 480), lossless=True), "image/webp", (640, 480), id="lossless-webp"),
        pytest.param(encode("WEBP", (640, 480), mode="RGBA"), "image/webp", (640, 480), id="webp-with-alpha"),
    ],
)
def test_valid_image_accepted_with_real_format_and_size(data: bytes, mime: str, size: tuple[int, int]) -> None:
    result = inspect_image(data)
    assert (result.mime, (result.width, result.height)) == (mime, size)
    assert result.data == data


def test_png_renamed_jpg_is_accepted_as_png() -> None:
    data = encode("PNG", (640, 480))
    check_declared(len(data), "photo.jpg")  # the name is not looked at
    result = inspect_image(data)
    assert result.mime == "image/png"
    assert result.extension == "png"


def test_phone_mpo_jpeg_is_a_still_photo() -> None:
    data = encode("MPO", (640, 480), save_all=True, append_images=[Image.new("RGB", (640, 480))])
    assert Image.open(io.BytesIO(data)).format == "MPO"  # really has two frames
    assert inspect_image(data).mime == "image/jpeg"


@pytest.mark.parametrize(
    ("orientation", "size"),
    [
        pytest.param(1, (1000, 400), id="upright"),
        pytest.param(6, (400, 1000), id="rotated-90"),
        pytest.param(8, (400, 1000), id="rotated-270"),
        pytest.param(3, (1000, 400), id="rotated-180"),
    ],
)
def test_dimensions_follow_exif_orientation(orientation: int, size: tuple[int, int]) -> None:
    result = inspect_image(jpeg_with_orientation((1000, 400), orientation))
    assert (result.width, result.height) == size


# ----- refused: format ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "seems"),
    [
        pytest.param(encode("GIF", (640, 480)), "a GIF image", id="gif"),
        pytest.param(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(64), "an MP4 video", id="mp4"),
        pytest.param(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64), "a HEIC photo", id="heic"),
        pytest.param(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1" + bytes(64), "an AVIF image", id="avif"),
        pytest.param(encode("BMP", (640, 480)), "a BMP image", id="bmp"),
        pytest.param(encode("TIFF", (640, 480)), "a TIFF image", id="tiff"),
        pytest.param(b"%PDF-1.7\n" + bytes(100), "a PDF document", id="pdf"),
        pytest.param(b"this is my holiday picture, honest\n", "a text file", id="text-named-png"),
        pytest.param(b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "an SVG drawing", id="svg"),
        pytest.param(b"\x13\x37" + random.Random(1).randbytes(4096), "not an image format I recognise", id="random"),
    ],
)
def test_other_formats_refused_naming_what_they_seem(data: bytes, seems: str) -> None:
    with pytest.raises(UserError) as caught:
        inspect_image(data)
    assert f"looks like {seems}" in caught.value.message
    assert "JPEG, PNG or WebP" in caught.value.message


def test_zero_bytes_refused() -> None:
    with pytest.raises(UserError, match="empty"):
        inspect_image(b"")


def test_downloaded_file_over_20_mb_refused() -> None:
    with pytest.raises(UserError, match="the limit is 20 MB"):
        inspect_image(b"\xff\xd8\xff" + bytes(MAX_DECLARED_BYTES))


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_animated_images_refused(fmt: str) -> None:
    with pytest.raises(UserError, match="Animated images"):
        inspect_image(animated(fmt))


# ----- refused: dimensions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(
            encode("JPEG", (250, 400)),
            "Your image is 250×400; the short side must be more than 300 px. Upload a larger image.",
            id="too-small",
        ),
        pytest.param(
            encode("PNG", (300, 600)), "Your image is 300×600; the short side must be more", id="short-side-300"
        ),
        pytest.param(encode("WEBP", (600, 300)), "Your image is 600×300; the short side must be more", id="wide-300"),
        pytest.param(
            encode("PNG", (400, 1001)),
            "Your image is 400×1001, taller than 2:5. Crop it to at most 400×1000",
            id="tall",
        ),
        pytest.param(
            encode("JPEG", (1001, 400)),
            "Your image is 1001×400, wider than 5:2. Crop it to at most 1000×400",
            id="wide",
        ),
        pytest.param(png_header_only(8000, 8000), "8000×8000 (64 megapixels); the limit is 50 megapixels", id="64-mp"),
        pytest.param(png_header_only(16385, 3000), "each side must be at most 16384 px", id="side-over-16384"),
    ],
)
def test_size_rules_refused_with_the_actual_size(data: bytes, message: str) -> None:
    with pytest.raises(UserError) as caught:
        inspect_image(data)
    assert message in caught.value.message


def test_decompression_bomb_header_refused_fast_without_decoding() -> None:
    data = png_header_only(100_000, 100_000)  # 10 gigapixels claimed in 57 bytes
    started = time.perf_counter()
    with pytest.raises(UserError, match="enormous"):
        inspect_image(data)
    assert time.perf_counter() - started < 1.0


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_header_between_our_cap_and_pillows_error_is_refused_too() -> None:
    # 12000×12000 = 144 MP: Pillow only warns here, our 50 MP cap must still refuse it.
    with pytest.raises(UserError, match="144 megapixels"):
        inspect_image(png_header_only(12_000, 12_000))


# ----- refused: damage ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_half_refused_as_damaged(fmt: str) -> None:
    data = encode(fmt, (400, 400), noise=True)
    with pytest.raises(UserError, match=DAMAGED):
        inspect_image(data[: len(data) // 2])


@pytest.mark.parametrize("cut", [2, 64])
def test_jpeg_missing_its_last_bytes_refused(cut: int) -> None:
    data = encode("JPEG", (400, 400), noise=True)
    with pytest.raises(UserError, match=DAMAGED):
        inspect_image(data[:-cut])


def test_webp_missing_its_last_bytes_refused() -> None:
    data = encode("WEBP", (400, 400), noise=True)
    with pytest.raises(UserError, match=DAMAGED):
        inspect_image(data[:-8])


def test_png_with_a_corrupted_byte_fails_its_crc() -> None:
    data = bytearray(encode("PNG", (400, 400), noise=True))
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(UserError, match=DAMAGED):
        inspect_image(bytes(data))


def test_png_header_without_pixel_data_refused() -> None:
    with pytest.raises(UserError, match=DAMAGED):
        inspect_image(png_header_only(640, 480))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\xff\xd8\xff" + bytes(100), id="jpeg-magic-then-zeros"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"\xff" * 100, id="png-magic-then-garbage"),
        pytest.param(b"RIFF\x10\x00\x00\x00WEBPVP8 \x00\x00\x00\x00", id="webp-empty-vp8"),
        pytest.param(b"RIFF\xff\xff\xff\x7fWEBP", id="webp-claims-2-gb"),
        pytest.param(png_header_only(0, 480), id="png-zero-width"),
        pytest.param(b"\x89PN", id="cut-inside-png-signature"),
        pytest.param(b"\xff\xd8", id="cut-inside-jpeg-signature"),
        pytest.param(b"RIFF\x00\x01", id="cut-inside-riff-header"),
    ],
)
def test_garbage_after_valid_magic_is_a_clean_user_error(data: bytes) -> None:
    with pytest.raises(UserError, match=DAMAGED):
        inspect_image(data)


# ----- bounded work ---------------------------------------------------------------------------------------


def webp_vp8x_header(width: int, height: int) -> bytes:
    """A WebP whose VP8X chunk claims a width×height canvas, and nothing else."""
    payload = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + len(payload).to_bytes(4, "little") + payload
    return b"RIFF" + len(body).to_bytes(4, "little") + body


@pytest.mark.parametrize(
    ("width", "height", "fragment"),
    [
        pytest.param(12_000, 12_000, "144 megapixels", id="144-mp"),
        pytest.param(16_384, 16_384, "268 megapixels", id="max-webp-canvas"),
    ],
)
def test_webp_canvas_checked_before_pillow_allocates_it(width: int, height: int, fragment: str) -> None:
    # Pillow would warn (or raise) about a bomb if it opened the file; warnings are errors here.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserError, match=fragment):
            inspect_image(webp_vp8x_header(width, height))


def test_png_pixels_are_checked_without_pillow_building_a_bitmap(monkeypatch: pytest.MonkeyPatch) -> None:
    # The pixel data is inflated and checked in steps (tests/test_image_limits.py); a full-size bitmap,
    # up to 50 MP × 8 bytes, is never built.
    def refuse_decoding(self: Image.Image) -> None:
        raise AssertionError("Pillow decoded the PNG into a bitmap")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", refuse_decoding)
    exif = Image.Exif()
    exif[0x0112] = 6
    assert inspect_image(encode("PNG", (640, 480), noise=True)).mime == "image/png"
    assert inspect_image(encode("PNG", (640, 480), exif=exif.tobytes())).mime == "image/png"


def test_jpeg_is_checked_at_one_eighth_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded_sizes: list[tuple[int, int]] = []
    real_load = JpegImagePlugin.JpegImageFile.load

    def spy(self: JpegImagePlugin.JpegImageFile) -> object:
        decoded_sizes.append(self.size)
        return real_load(self)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", spy)
    result = inspect_image(encode("JPEG", (1600, 1200)))
    assert (result.width, result.height) == (1600, 1200)
    assert decoded_sizes == [(200, 150)]


@pytest.mark.parametrize(
    ("budget", "decodes"), [pytest.param(0, 0, id="over-budget"), pytest.param(10**9, 1, id="within")]
)
def test_webp_fully_decoded_only_within_budget(monkeypatch: pytest.MonkeyPatch, budget: int, decodes: int) -> None:
    calls: list[tuple[int, int]] = []
    real_load = WebPImagePlugin.WebPImageFile.load

    def spy(self: WebPImagePlugin.WebPImageFile) -> object:
        calls.append(self.size)
        return real_load(self)

    monkeypatch.setattr(WebPImagePlugin.WebPImageFile, "load", spy)
    monkeypatch.setattr(images, "DECODE_BUDGET_PIXELS", budget)
    data = encode("WEBP", (400, 400), noise=True)
    assert inspect_image(data).mime == "image/webp"
    assert len(calls) == decodes
    with pytest.raises(UserError, match=DAMAGED):  # truncation is caught even without the decode
        inspect_image(data[:-8])
