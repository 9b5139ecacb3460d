"""The adversarial image corpus: each file is built in memory, from nothing but the format's rules, the way
an attacker builds it (no file is committed). Used by the tests, the fuzz target and `bench/images.py`.

Every builder takes a `scale` (1 = the full-size attack as observed; smaller values give the same shape
in a smaller file, for fast fuzzing seeds). `corpus()` lists them all with what the check must answer.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

MIB = 1024 * 1024
LIMIT = 20 * MIB  # the download cap: an attacker fills it exactly

# ----- JPEG, written marker by marker ----------------------------------------------------------------------

SOI, EOI = b"\xff\xd8", b"\xff\xd9"


def segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def dqt() -> bytes:
    return segment(0xDB, b"\x00" + bytes([1] * 64))  # table 0: every step 1


def sof(marker: int, width: int, height: int, components: int = 1, sampling: int = 0x11) -> bytes:
    """A frame header; marker 0xC0 = baseline, 0xC2 = progressive. Every component uses table 0."""
    comps = b"".join(bytes((index + 1, sampling if index == 0 else 0x11, 0)) for index in range(components))
    return segment(marker, struct.pack(">BHHB", 8, height, width, components) + comps)


def dht(table_class: int, symbols: bytes) -> bytes:
    """A Huffman table with one code per symbol, the first symbol the 1-bit code `0`."""
    counts = [0] * 16
    counts[0] = 1
    for index in range(1, len(symbols)):
        counts[min(index, 15)] += 1
    return segment(0xC4, bytes([table_class << 4]) + bytes(counts) + symbols)


def sos(component_ids: bytes, ss: int, se: int, ah_al: int = 0) -> bytes:
    spec = b"".join(bytes((cid, 0x00)) for cid in component_ids)
    return segment(0xDA, bytes([len(component_ids)]) + spec + bytes((ss, se, ah_al)))


class BitWriter:
    def __init__(self) -> None:
        self.bits: list[str] = []

    def write(self, value: int, length: int) -> None:
        self.bits.append(format(value, f"0{length}b") if length else "")

    def stuffed(self) -> bytes:
        """The entropy-coded bytes: padded with 1 bits, every 0xFF followed by a stuffed 0x00."""
        text = "".join(self.bits)
        text += "1" * (-len(text) % 8)
        raw = int(text, 2).to_bytes(len(text) // 8, "big") if text else b""
        return raw.replace(b"\xff", b"\xff\x00")


def eob_runs(blocks: int) -> bytes:
    """An AC scan that skips `blocks` blocks with the longest end-of-band runs (symbol 0xE0 = EOB14)."""
    writer = BitWriter()
    while blocks > 0:
        run = min(blocks, 32_767)
        if run >= 1 << 14:
            writer.write(0, 1)  # code of symbol 0xE0
            writer.write(run - (1 << 14), 14)
        else:  # a shorter final run: EOB14 with a smaller remainder is not allowed, so pad the run up
            writer.write(0, 1)
            writer.write(0, 14)
        blocks -= run
    return writer.stuffed()


def dc_zero_scan(blocks: int) -> bytes:
    """A DC first scan where every block's difference is category 0 (code `0`): one bit per block."""
    return b"\x00" * (blocks // 8) + (bytes([(1 << (8 - blocks % 8)) - 1]) if blocks % 8 else b"")


def progressive_scan_repeat(scale: float = 1, *, scans: int = 4_000, side: int = 7_000) -> bytes:
    """The 0.39 MB bomb: a 7000×7000 progressive greyscale JPEG whose one tiny AC scan (a few end-of-band
    runs covering every block) is repeated thousands of times. Each repeat costs libjpeg a pass over all
    765,625 blocks, so decoding is ~46 s of CPU although the file is tiny."""
    scans = max(2, int(scans * scale))
    blocks = (side // 8) ** 2
    head = SOI + dqt() + sof(0xC2, side, side) + dht(0, b"\x00") + dht(1, b"\xe0")
    dc = sos(b"\x01", 0, 0) + dc_zero_scan(blocks)
    ac = sos(b"\x01", 1, 63) + eob_runs(blocks)
    return head + dc + ac * scans + EOI


def bomb_corrupted_at_end(scale: float = 1) -> bytes:
    """A scan-repeat bomb with as many scans as a normal file may have (90), whose last bytes are broken:
    the old check found out only after decoding every scan, so it could be sent again and again."""
    data = progressive_scan_repeat(scale, scans=90)
    return data[:-2] + b"\x00\x00"


def huge_coefficient_buffer(scale: float = 1) -> bytes:
    """A progressive 7000×7000 colour JPEG (4:4:4) with two tiny scans: valid, but libjpeg must hold
    every coefficient of every block (~294 MB) before it can output a row."""
    side = max(64, int(7_000 * scale**0.5))
    blocks = (side // 8) ** 2
    head = SOI + dqt() + sof(0xC2, side, side, components=3) + dht(0, b"\x00") + dht(1, b"\xe0")
    writer = BitWriter()
    writer.write(0, 3 * blocks)  # interleaved DC scan: three category-0 codes per MCU
    dc = sos(b"\x01\x02\x03", 0, 0) + writer.stuffed()
    return head + dc + sos(b"\x01", 1, 63) + eob_runs(blocks) + EOI


def small_jpeg(width: int = 640, height: int = 480) -> bytes:
    """A real baseline JPEG from Pillow, to wrap hostile structure around."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 140, 30)).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def jpeg_comment_flood(scale: float = 1) -> bytes:
    """20 MiB of empty COM segments (FF FE 00 02) between SOI and a real image: ~5 million segments,
    each one a turn of Pillow's Python marker loop and a list entry."""
    image = small_jpeg()
    count = int((LIMIT - len(image)) // 4 * scale)
    return SOI + b"\xff\xfe\x00\x02" * count + image[2:]


def jpeg_app_flood(scale: float = 1) -> bytes:
    """The same with APP15 segments carrying one byte each."""
    image = small_jpeg()
    count = int((LIMIT - len(image)) // 5 * scale)
    return SOI + b"\xff\xef\x00\x03\x00" * count + image[2:]


def jpeg_fill_bytes(scale: float = 1) -> bytes:
    """SOI and then 20 MiB of 0xFF fill bytes before the first marker: legal padding, one Python loop
    turn per byte in Pillow's header parser."""
    image = small_jpeg()
    return SOI + b"\xff" * int((LIMIT - len(image)) * scale) + image[2:]


def jpeg_junk_between_segments(scale: float = 1) -> bytes:
    """20 MiB of non-marker junk bytes after the first segment (libjpeg skips them with a warning; Pillow
    one byte per Python loop turn)."""
    image = small_jpeg()
    first = 4 + int.from_bytes(image[4:6], "big")  # SOI and the APP0 segment
    return image[:first] + b"\x00" * int((LIMIT - len(image)) * scale) + image[first:]


def jpeg_restart_flood(scale: float = 1) -> bytes:
    """A real image whose scan data is followed by millions of restart markers (FF D0..D7) before EOI."""
    image = small_jpeg()
    count = int((LIMIT - len(image)) // 2 * scale)
    return image[:-2] + b"\xff\xd0" * count + EOI


def jpeg_tables_between_scans(scale: float = 1) -> bytes:
    """A real image with millions of empty DHT segments after its scan (libjpeg reads them all)."""
    image = small_jpeg()
    count = int((LIMIT - len(image)) // 4 * scale)
    return image[:-2] + b"\xff\xc4\x00\x02" * count + EOI


def jpeg_huge_header(scale: float = 1) -> bytes:
    """A baseline frame header claiming 65500×65500 with almost nothing after it."""
    return SOI + dqt() + sof(0xC0, 65_500, 65_500) + dht(0, b"\x00") + dht(1, b"\x00") + sos(b"\x01", 0, 63) + EOI


def jpeg_no_end(scale: float = 1) -> bytes:
    """A 90-scan bomb cut before its end (no EOI): refusable without decoding a single scan."""
    return progressive_scan_repeat(scale, scans=90)[:-2]


# ----- PNG ---------------------------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def ihdr(width: int, height: int, depth: int = 8, colour: int = 2, interlace: int = 0) -> bytes:
    return chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace))


def png_rows(width: int, height: int, row_filter: int = 0, fill: int = 0, bytes_per_pixel: int = 3) -> bytes:
    """The raw (filtered) scanlines of a non-interlaced image: each row a filter byte then its pixels."""
    row = bytes([row_filter]) + bytes([fill]) * (width * bytes_per_pixel)
    return row * height


def png(width: int, height: int, raw: bytes, *, before_idat: bytes = b"", idat_size: int = 1 << 16) -> bytes:
    compressed = zlib.compress(raw, 6)
    idats = b"".join(chunk(b"IDAT", compressed[i : i + idat_size]) for i in range(0, len(compressed), idat_size))
    return PNG_SIGNATURE + ihdr(width, height) + before_idat + idats + chunk(b"IEND", b"")


def png_empty_chunk_flood(scale: float = 1) -> bytes:
    """20 MiB of empty ancillary chunks (valid CRCs) before a real image: ~1.7 million chunks, each one
    a Python exception and a log call in Pillow's PNG parser."""
    image = png(640, 480, png_rows(640, 480))
    empty = chunk(b"bxOm", b"")
    count = int((LIMIT - len(image)) // len(empty) * scale)
    return image[:33] + empty * count + image[33:]


def png_text_flood(scale: float = 1) -> bytes:
    """The same with one-byte tEXt chunks, which Pillow keeps (a dict entry each)."""
    image = png(640, 480, png_rows(640, 480))
    text = chunk(b"tEXt", b"k\x00v")
    count = int((LIMIT - len(image)) // len(text) * scale)
    return image[:33] + text * count + image[33:]


def png_idat_flood(scale: float = 1) -> bytes:
    """A real image whose compressed data is cut into one-byte IDAT chunks, padded with empty ones."""
    raw = png_rows(640, 480)
    compressed = zlib.compress(raw, 6)
    ones = b"".join(chunk(b"IDAT", compressed[i : i + 1]) for i in range(len(compressed)))
    empty = chunk(b"IDAT", b"")
    count = int(max(0, LIMIT - len(ones) - 100) // len(empty) * scale)
    return PNG_SIGNATURE + ihdr(640, 480) + ones + empty * count + chunk(b"IEND", b"")


def png_garbage_pixels(scale: float = 1) -> bytes:
    """640×480 whose IDAT is random bytes with a valid CRC: every chunk checks out, no pixel is real."""
    garbage = random.Random(14).randbytes(max(64, int(200_000 * scale)))
    return PNG_SIGNATURE + ihdr(640, 480) + chunk(b"IDAT", garbage) + chunk(b"IEND", b"")


def png_bad_filter_bytes(scale: float = 1) -> bytes:
    """Valid zlib, the right length, but the rows start with filter type 9 (only 0–4 exist)."""
    return png(640, 480, png_rows(640, 480, row_filter=9))


def png_short_pixels(scale: float = 1) -> bytes:
    """Valid zlib holding only half the rows the header promises."""
    return png(640, 480, png_rows(640, 240))


def png_decompression_bomb(scale: float = 1) -> bytes:
    """A 1000×1000 header over a zlib stream of 256 MiB of zeros (ratio ~1000:1): 85 times the pixel
    data the header allows, in a quarter of a megabyte."""
    compressor = zlib.compressobj(9)
    block = bytes(MIB)
    parts = [compressor.compress(block) for _ in range(max(4, int(256 * scale)))]
    stream = b"".join(parts) + compressor.flush()
    return PNG_SIGNATURE + ihdr(1000, 1000) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")


def png_huge_header(scale: float = 1) -> bytes:
    """IHDR claiming 100000×100000 (10 gigapixels) with a little data."""
    return PNG_SIGNATURE + ihdr(100_000, 100_000) + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")


def png_ztxt_bomb(scale: float = 1) -> bytes:
    """A zTXt chunk that inflates to 64 MiB of text before a real image."""
    compressor = zlib.compressobj(9)
    text = b"".join(compressor.compress(bytes(MIB)) for _ in range(max(2, int(64 * scale)))) + compressor.flush()
    image = png(640, 480, png_rows(640, 480))
    return image[:33] + chunk(b"zTXt", b"comment\x00\x00" + text) + image[33:]


# ----- WebP ----------------------------------------------------------------------------------------------------


def riff(body: bytes) -> bytes:
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


def webp_chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("<I", len(payload)) + payload + (b"\x00" if len(payload) % 2 else b"")


def vp8x(width: int, height: int, flags: int = 0) -> bytes:
    canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return webp_chunk(b"VP8X", bytes([flags, 0, 0, 0]) + canvas)


def webp_huge_canvas(scale: float = 1) -> bytes:
    """VP8X claiming the largest canvas (16384×16384, 268 MP) and nothing else."""
    return riff(vp8x(16_384, 16_384))


def webp_huge_vp8l(scale: float = 1) -> bytes:
    """A lossless bitstream header claiming 16384×16384."""
    bits = (16_383) | (16_383 << 14)
    return riff(webp_chunk(b"VP8L", b"\x2f" + bits.to_bytes(4, "little") + bytes(16)))


def small_webp(width: int = 640, height: int = 480) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 140, 30)).save(buffer, "WEBP", quality=80)
    return buffer.getvalue()


def webp_chunk_flood(scale: float = 1) -> bytes:
    """VP8X, 20 MiB of empty unknown chunks (8 bytes each), then a real image: libwebp's demuxer
    allocates a record for each of ~2.6 million chunks."""
    image = small_webp()[12:]  # its VP8 chunk
    count = int((LIMIT - len(image) - 64) // 8 * scale)
    return riff(vp8x(640, 480) + webp_chunk(b"ZZZZ", b"") * count + image)


# ----- the corpus ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    name: str
    build: Callable[[float], bytes]
    expect: str  # a fragment of the refusal
    observed: bool = False  # one of the attacks seen in the wild (issue rows 1 and 14)


TOO_COMPLEX = "too complex to process"
DAMAGED = "damaged or incomplete"
ENORMOUS = "megapixels"


def corpus() -> list[Hostile]:
    return [
        Hostile("jpeg-progressive-scan-repeat", progressive_scan_repeat, TOO_COMPLEX, observed=True),
        Hostile("jpeg-bomb-corrupted-at-end", bomb_corrupted_at_end, DAMAGED, observed=True),
        Hostile("jpeg-scan-repeat-without-end", jpeg_no_end, DAMAGED),
        Hostile("jpeg-huge-coefficient-buffer", huge_coefficient_buffer, TOO_COMPLEX),
        Hostile("jpeg-comment-flood", jpeg_comment_flood, TOO_COMPLEX, observed=True),
        Hostile("jpeg-app-segment-flood", jpeg_app_flood, TOO_COMPLEX),
        Hostile("jpeg-fill-byte-flood", jpeg_fill_bytes, TOO_COMPLEX),
        Hostile("jpeg-junk-between-segments", jpeg_junk_between_segments, TOO_COMPLEX),
        Hostile("jpeg-restart-marker-flood", jpeg_restart_flood, TOO_COMPLEX),
        Hostile("jpeg-tables-between-scans", jpeg_tables_between_scans, TOO_COMPLEX),
        Hostile("jpeg-header-65500x65500", jpeg_huge_header, ENORMOUS),
        Hostile("png-empty-chunk-flood", png_empty_chunk_flood, TOO_COMPLEX, observed=True),
        Hostile("png-text-chunk-flood", png_text_flood, TOO_COMPLEX),
        Hostile("png-one-byte-idat-flood", png_idat_flood, TOO_COMPLEX),
        Hostile("png-garbage-pixels-valid-crc", png_garbage_pixels, DAMAGED, observed=True),
        Hostile("png-bad-filter-bytes", png_bad_filter_bytes, DAMAGED),
        Hostile("png-half-the-rows", png_short_pixels, DAMAGED),
        Hostile("png-decompression-bomb", png_decompression_bomb, DAMAGED),
        Hostile("png-header-100000x100000", png_huge_header, ENORMOUS),
        Hostile("png-ztxt-bomb", png_ztxt_bomb, DAMAGED),
        Hostile("webp-vp8x-16384x16384", webp_huge_canvas, ENORMOUS),
        Hostile("webp-vp8l-16384x16384", webp_huge_vp8l, ENORMOUS),
        Hostile("webp-chunk-flood", webp_chunk_flood, TOO_COMPLEX),
    ]
