"""Input images for image-to-video: real format from the bytes, header dimensions, provider rules.

Rules (docs/providers/minimax.md §4): JPEG, PNG or WebP; at most 20 MB; short side more than 300 px; aspect ratio
from 2:5 to 5:2, both ends included (some resellers say strictly between; we follow the official
"2:5…5:2"). "MB" here is MiB (20 × 1024 × 1024 bytes), the same number the download cap uses.

Safety, since the bytes come from strangers (every check below has bounded cost; the bot runs it in a
worker process with CPU, memory and wall-clock limits on top: `services.image_pool`):
- The format comes from magic bytes only; the file name and content type are never trusted.
- The structure is walked first (`services.image_structure`), with a `Budget` on every count: JPEG
  segments, scans, fill bytes and decode work; PNG and WebP chunks. Floods of tiny structures (4,000
  progressive scans in 0.4 MB, millions of empty COM segments or PNG chunks) are refused as "too
  complex" before any decoder sees them, and a missing end marker or a bad chunk CRC as damaged.
- Dimensions come from Pillow's lazy header parse (`Image.open` without `load()`), and the image is
  refused above MAX_PIXELS (50 MP) or MAX_SIDE (16384 px) before any pixel is decoded. WebP's canvas
  size is read from its first 30 bytes *before* Pillow opens it, because Pillow's WebP open already
  allocates the canvas. Pillow's global
  `MAX_IMAGE_PIXELS` is left alone (it is process-wide); its DecompressionBombError (for headers claiming
  more than ~179 MP) is caught and given the same message. For 90–179 MP Pillow may log its warning first.
- Pillow parses the file once; the pixels are then really decoded, at bounded cost: JPEG at 1/8 scale
  (`draft`), which still reads every byte of every scan, after the walk's estimate of libjpeg's work and
  coefficient memory passed the budget; PNG by inflating the whole IDAT stream in 1 MiB steps and
  checking its length and every row's filter byte (no bitmap is built, so memory stays flat); WebP
  through libwebp's demuxer, which Pillow runs on open and which refuses incomplete chunks, plus a full
  decode up to DECODE_BUDGET_PIXELS (16 MP; WebP has no reduced-scale decode in Pillow).
- Animated PNG (APNG) and animated WebP are refused: the provider wants a single first frame. A JPEG
  with extra MPO frames (phone depth/preview images) is a normal still photo and is accepted.
- Reported width × height follow the EXIF orientation, i.e. what the user sees.
"""

from __future__ import annotations

import io
import mmap
import struct

from PIL import Image, UnidentifiedImageError

from core.errors import UserError
from core.spec import ImageInput
from core.text import N_, tr
from services.image_structure import (
    Budget,
    Damaged,
    JpegLayout,
    PngLayout,
    TooComplex,
    check_jpeg_work,
    check_png_pixels,
    walk_jpeg,
    walk_png,
    walk_webp,
)

MAX_DECLARED_BYTES = 20 * 1024 * 1024
MIN_SHORT_SIDE = 300  # exclusive: the short side must be more than this
MAX_PIXELS = 50_000_000
MAX_SIDE = 16_384
DECODE_BUDGET_PIXELS = 16_000_000  # full WebP decode only up to here (≈64 MB of RGBA)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PIL_FORMAT = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
_DAMAGED = N_(
    "The image file is damaged or incomplete. Export it again (or take a screenshot of it) and upload the new file."
)
TOO_COMPLEX = N_(
    "This image is too complex to process. Save it again as a normal JPEG or PNG (or take a screenshot of it) "
    "and upload the new file."
)
DEFAULT_BUDGET = Budget()
# Everything Pillow's parsers are known to raise on hostile or broken input.
_PIL_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes UnidentifiedImageError and "image file is truncated"
    SyntaxError,
    ValueError,
    struct.error,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
)
# EXIF orientations 5–8 are rotated by 90°: the displayed width and height are swapped.
_ROTATED = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION = 0x0112

# ISO-BMFF brands (bytes 8–12 after "ftyp") that we can name in the refusal.
_HEIC, _HEIF, _AVIF = N_("a HEIC photo"), N_("a HEIF photo"), N_("an AVIF image")
_FTYP_BRANDS = {
    b"heic": _HEIC,
    b"heix": _HEIC,
    b"heim": _HEIC,
    b"heis": _HEIC,
    b"hevc": _HEIC,
    b"mif1": _HEIF,
    b"msf1": _HEIF,
    b"avif": _AVIF,
    b"avis": _AVIF,
    b"qt  ": N_("a QuickTime video"),
}


def _size_mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def _name(filename: str) -> str:
    flat = " ".join(filename.replace("`", "'").split()) or "file"
    return flat if len(flat) <= 60 else flat[:59] + "…"


def check_declared(size: int | None, filename: str) -> None:
    """Refuse before downloading when Discord's declared size is already wrong. None = unknown, allowed:
    the download itself is capped at MAX_DECLARED_BYTES."""
    if size is None:
        return
    if size <= 0:
        raise UserError(tr("`{name}` is empty (0 bytes). Upload the image again.", name=_name(filename)))
    if size > MAX_DECLARED_BYTES:
        raise UserError(
            tr(
                "`{name}` is {size}; the limit is 20 MB. "
                "Upload a smaller image, or save it as JPEG to make it lighter.",
                name=_name(filename),
                size=_size_mb(size),
            )
        )


# ----- format ------------------------------------------------------------------------------------------


def sniff(data: bytes) -> str | None:
    """The MIME type from magic bytes, or None if it is not one of the accepted formats."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(_PNG_SIGNATURE):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _cut_inside_signature(data: bytes) -> bool:
    """A file so short that it ends inside an accepted format's magic bytes: damaged, not foreign."""
    return len(data) < 12 and any(
        signature.startswith(data[: len(signature)]) for signature in (_PNG_SIGNATURE, b"\xff\xd8\xff", b"RIFF")
    )


def _looks_like_text(data: bytes) -> bool:
    head = data[:512]
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(char.isprintable() or char in "\r\n\t" for char in decoded)


def _what_it_seems(data: bytes) -> str:
    """A human name for a file we do not accept, so the refusal says what we saw (a catalogue template)."""
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return N_("a GIF image")
    if data[4:8] == b"ftyp":
        return _FTYP_BRANDS.get(data[8:12], N_("an MP4 video"))
    if data[:4] == b"RIFF":
        riff = {b"AVI ": N_("an AVI video"), b"WAVE": N_("a WAV sound file")}
        return riff.get(data[8:12], N_("a RIFF file that is not WebP"))
    simple = [
        (b"\x1aE\xdf\xa3", N_("a WebM/MKV video")),
        (b"BM", N_("a BMP image")),
        (b"II*\x00", N_("a TIFF image")),
        (b"MM\x00*", N_("a TIFF image")),
        (b"%PDF", N_("a PDF document")),
        (b"\xff\x0a", N_("a JPEG XL image")),
        (b"\x00\x00\x00\x0cJXL ", N_("a JPEG XL image")),
        (b"\x00\x00\x01\x00", N_("an ICO icon")),
        (b"8BPS", N_("a Photoshop file")),
        (b"PK\x03\x04", N_("a ZIP archive (or an Office document)")),
    ]
    for magic, name in simple:
        if data.startswith(magic):
            return name
    if data.lstrip()[:5].lower() in (b"<svg ", b"<?xml"):
        return N_("an SVG drawing")
    if _looks_like_text(data):
        return N_("a text file")
    return N_("not an image format I recognise")


def _refuse_format(data: bytes) -> UserError:
    return UserError(
        tr(
            "This file looks like {kind}, not a JPEG, PNG or WebP image. "
            "Convert it to JPEG, PNG or WebP (a screenshot works too) and upload it again.",
            kind=tr(_what_it_seems(data)),
        )
    )


# ----- checks ------------------------------------------------------------------------------------------


def _check_pixels(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise UserError(tr(_DAMAGED))
    if width * height > MAX_PIXELS:
        raise UserError(
            tr(
                "Your image is {width}×{height} ({megapixels} megapixels); the limit is {limit} megapixels. "
                "Resize it (e.g. to 1920 px on the long side) and upload it again.",
                width=width,
                height=height,
                megapixels=round(width * height / 1e6),
                limit=MAX_PIXELS // 1_000_000,
            )
        )
    if max(width, height) > MAX_SIDE:
        raise UserError(
            tr(
                "Your image is {width}×{height}; each side must be at most {limit} px. Resize it and upload it again.",
                width=width,
                height=height,
                limit=MAX_SIDE,
            )
        )


def check_rules(width: int, height: int) -> None:
    """The provider's size rules: short side > 300 px, aspect ratio from 2:5 to 5:2 inclusive."""
    if min(width, height) <= MIN_SHORT_SIDE:
        raise UserError(
            tr(
                "Your image is {width}×{height}; the short side must be more than {limit} px. Upload a larger image.",
                width=width,
                height=height,
                limit=MIN_SHORT_SIDE,
            )
        )
    # Integer arithmetic so exactly 2:5 and 5:2 are accepted without float rounding.
    if 2 * width > 5 * height:
        raise UserError(
            tr(
                "Your image is {width}×{height}, wider than 5:2. Crop it to at most {most_width}×{height} "
                "(or anything closer to square) and upload it again.",
                width=width,
                height=height,
                most_width=5 * height // 2,
            )
        )
    if 2 * height > 5 * width:
        raise UserError(
            tr(
                "Your image is {width}×{height}, taller than 2:5. Crop it to at most {width}×{most_height} "
                "(or anything closer to square) and upload it again.",
                width=width,
                height=height,
                most_height=5 * width // 2,
            )
        )


def _oriented(img: Image.Image) -> tuple[int, int]:
    width, height = img.size
    if "exif" not in img.info:
        # No EXIF in the header. (PNG's getexif() would decode the whole image to look after IDAT.)
        return width, height
    try:
        orientation = img.getexif().get(_EXIF_ORIENTATION)
    except _PIL_ERRORS:
        orientation = None  # a broken EXIF block is not our problem; the pixels are checked below
    return (height, width) if orientation in _ROTATED else (width, height)


def _walk(data: bytes, mime: str, budget: Budget) -> JpegLayout | PngLayout | None:
    if mime == "image/jpeg":
        return walk_jpeg(data, budget)
    if mime == "image/png":
        return walk_png(data, budget)
    walk_webp(data, budget)
    return None


def _decode(img: Image.Image, layout: JpegLayout | PngLayout | None, budget: Budget) -> None:
    """Decode what Pillow can decode cheaply, on the parse that read the header (PNG: see below)."""
    width, height = img.size
    if isinstance(layout, JpegLayout):
        check_jpeg_work(layout, budget)
        img.draft("RGB", (max(width // 8, 1), max(height // 8, 1)))
        img.load()
    elif layout is None and width * height <= DECODE_BUDGET_PIXELS:  # WebP
        img.load()


def _is_animated(img: Image.Image, mime: str) -> bool:
    if mime == "image/jpeg":
        return False  # MPO "frames" are depth maps/previews, not animation
    return bool(getattr(img, "is_animated", False)) or getattr(img, "n_frames", 1) > 1


def _webp_canvas(data: bytes) -> tuple[int, int] | None:
    """WebP canvas size from the first 30 bytes (VP8 / VP8L / VP8X), or None if it cannot be read.

    Needed because Pillow's WebP plugin creates libwebp's decoder, which allocates the whole canvas,
    inside Image.open: a 40-byte file claiming 16383×16383 would cost gigabytes before we see its size."""
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _decoder_memory(layout: JpegLayout | PngLayout | None, canvas: tuple[int, int] | None) -> int:
    """Roughly what the decoder allocates at once: libjpeg's coefficient buffer, libwebp's canvas."""
    if isinstance(layout, JpegLayout):
        return layout.coefficient_bytes if layout.buffered else 0
    if layout is None and canvas is not None:
        return canvas[0] * canvas[1] * 4
    return 0


def _could_map(size: int) -> bool:
    """Whether `size` bytes of address space can be had now (reserved, never touched)."""
    if size <= 0:
        return True
    try:
        with mmap.mmap(-1, size):
            return True
    except OSError:
        return False


def _open_and_check(data: bytes, mime: str, budget: Budget) -> ImageInput:
    layout = _walk(data, mime, budget)  # before any parser that loops in Python over what it finds
    canvas = _webp_canvas(data) if mime == "image/webp" else None
    if canvas is not None:
        _check_pixels(*canvas)
    try:
        return _parse_and_decode(data, mime, layout, budget)
    except OSError:
        # libjpeg and libwebp report a failed allocation as a broken stream. Under the worker's memory
        # limit (services.image_pool) that is the limit speaking, not damage: say so.
        if not _could_map(_decoder_memory(layout, canvas)):
            raise TooComplex("decoder out of memory") from None
        raise


def _parse_and_decode(data: bytes, mime: str, layout: JpegLayout | PngLayout | None, budget: Budget) -> ImageInput:
    with Image.open(io.BytesIO(data), formats=[_PIL_FORMAT[mime]]) as img:
        _check_pixels(*img.size)  # before anything that could decode pixels
        width, height = _oriented(img)
        if _is_animated(img, mime):
            raise UserError(
                tr(
                    "Animated images can't be used as the first frame. Upload a still JPEG, PNG or WebP "
                    "(e.g. export the frame you want)."
                )
            )
        check_rules(width, height)
        _decode(img, layout, budget)
    if isinstance(layout, PngLayout):
        check_png_pixels(data, layout)
    return ImageInput(data=data, mime=mime, width=width, height=height)


def inspect_image(data: bytes, budget: Budget = DEFAULT_BUDGET) -> ImageInput:
    """Validate an uploaded image and describe it; every problem is a UserError, never a traceback.
    The work is bounded by `budget` (and by the file size); see the module docstring."""
    if not data:
        raise UserError(tr("The image file is empty (0 bytes). Upload the image again."))
    if len(data) > MAX_DECLARED_BYTES:
        raise UserError(
            tr("The image is {size}; the limit is 20 MB. Upload a smaller image.", size=_size_mb(len(data)))
        )
    mime = sniff(data)
    if mime is None and _cut_inside_signature(data):
        raise UserError(tr(_DAMAGED))
    if mime is None:
        raise _refuse_format(data)
    try:
        return _open_and_check(data, mime, budget)
    except TooComplex:
        raise UserError(tr(TOO_COMPLEX)) from None
    except Damaged:
        raise UserError(tr(_DAMAGED)) from None
    except Image.DecompressionBombError:
        raise UserError(
            tr(
                "The image claims to be enormous (over {limit} megapixels). "
                "Resize it (e.g. to 1920 px on the long side) and upload it again.",
                limit=MAX_PIXELS // 1_000_000,
            )
        ) from None
    except UnidentifiedImageError:
        raise UserError(tr(_DAMAGED)) from None
    except MemoryError:  # the worker's memory limit (or this machine's) was reached
        raise UserError(tr(TOO_COMPLEX)) from None
    except _PIL_ERRORS:
        raise UserError(tr(_DAMAGED)) from None
