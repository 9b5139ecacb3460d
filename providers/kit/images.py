"""Getting a checked input image into the form a provider takes: a data URL, PNG, or a JPEG under a
size cap. The re-encodes are blocking (Pillow): run them in a worker thread."""

from __future__ import annotations

import base64
import io
import math
from typing import TYPE_CHECKING

from core.provider import ProviderError
from core.tasks import FailureKind

if TYPE_CHECKING:
    from PIL import Image

JPEG_QUALITIES = (90, 80, 70)
# Hailuo wants the short side over 300 px: an image is never shrunk below that.
MIN_SHORT_SIDE = 301


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def reencode_png(data: bytes) -> bytes:
    """The same image as PNG (for providers that document JPEG and PNG only)."""
    from PIL import Image  # imported lazily: only some inputs need it

    try:
        with Image.open(io.BytesIO(data)) as img:
            out = io.BytesIO()
            img.save(out, format="PNG")
    except (OSError, ValueError) as exc:
        raise ProviderError(FailureKind.BAD_REQUEST, "input image could not be converted") from exc
    return out.getvalue()


def shrink_to_jpeg(data: bytes, max_bytes: int, *, min_short_side: int = MIN_SHORT_SIDE) -> bytes:
    """Re-encode an image as JPEG until it fits `max_bytes`: lower quality first, then fewer pixels.

    EXIF orientation is applied, since the JPEG carries no EXIF, and transparency is flattened onto white."""
    from PIL import Image, ImageOps  # imported lazily: only oversized inputs need it

    try:
        with Image.open(io.BytesIO(data)) as original:
            img = ImageOps.exif_transpose(original)
            img = _flatten(img)
            for _ in range(8):
                for quality in JPEG_QUALITIES:
                    encoded = _jpeg(img, quality)
                    if len(encoded) <= max_bytes:
                        return encoded
                scale = max(0.5, min(0.9, math.sqrt(max_bytes / len(encoded)) * 0.95))
                size = (round(img.width * scale), round(img.height * scale))
                if min(size) < min_short_side:
                    break
                img = img.resize(size, Image.Resampling.LANCZOS)
    except (OSError, ValueError) as exc:
        raise ProviderError(FailureKind.BAD_REQUEST, "input image could not be re-encoded") from exc
    raise ProviderError(FailureKind.BAD_REQUEST, "input image could not be made small enough to upload")


def _flatten(img: Image.Image) -> Image.Image:
    from PIL import Image

    if img.mode in ("RGB", "L"):
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")


def _jpeg(img: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()
