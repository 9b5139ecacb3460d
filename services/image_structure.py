"""The structure of an uploaded image, walked before any decoder sees it, with a budget on every count.

Why: the expensive attacks on an image check are not big pixels but many small structures that a decoder
handles one by one: thousands of progressive JPEG scans that each make libjpeg pass over every block
(a 0.4 MB file costing ~46 s), millions of empty COM/APPn segments or PNG chunks that Pillow parses in
a Python loop (20 s and ~800 MB for a 20 MiB file), fill or junk bytes that Pillow skips one at a time.
These walks look at every segment and chunk once, with C-speed scanning (`re`, `bytes.count`,
`zlib.crc32`), and stop as soon as a count is over its `Budget`, so their own cost is bounded too.

They also catch what a decoder would only find at the end (a JPEG without its end marker, a PNG chunk
with a bad CRC), so a damaged bomb is refused before it is decoded, not after.

`TooComplex` and `Damaged` are turned into the user's messages by `services.images`.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

MIB = 1024 * 1024


class TooComplex(Exception):
    """Over a structural budget: refused without decoding."""


class Damaged(Exception):
    """Broken structure: truncated, a bad length or CRC, a marker out of place."""


@dataclass(frozen=True)
class Budget:
    """How much structure one image may have. Normal files use a small fraction of each number.

    segments: JPEG marker segments (APPn, COM, tables, scan headers), PNG chunks other than pixel data,
        WebP chunks other than image data. Cameras write ~10; a 20 MiB extended-XMP JPEG ~330.
    pixel_chunks: PNG IDAT/fdAT chunks and WebP image/frame chunks (encoders use 8–64 KiB chunks).
    padding_bytes: JPEG fill (0xFF) and junk bytes between segments, which Pillow skips one by one.
    jpeg_scans: libjpeg-turbo leaves the scan limit to the application (TJPARAM_SCANLIMIT, djpeg
        -maxscans); its own fuzz targets use 500 and NVIDIA's nvImageCodec 256. Encoders write 1 scan
        (baseline), 6–10 (libjpeg's progressive script), at most a few dozen (mozjpeg); 100 is generous.
    jpeg_block_passes: the work libjpeg does whatever the scans contain: over all scans, the 8×8
        blocks each scan covers. A 48 MP 4:2:0 progressive photo needs ~6 M; the 4,000-scan bomb 3 G.
    jpeg_coefficient_bytes: a progressive (or multi-scan) JPEG is decoded into a buffer of every
        coefficient of every block (128 bytes a block) before the first row comes out, whatever the
        output scale. 160 MiB admits a 48 MP 4:2:0 or a 27 MP 4:4:4 progressive photo.
    """

    segments: int = 2_000
    pixel_chunks: int = 65_536
    padding_bytes: int = 4_096
    jpeg_scans: int = 100
    jpeg_block_passes: int = 40_000_000
    jpeg_coefficient_bytes: int = 160 * MIB


# ----- JPEG -----------------------------------------------------------------------------------------------

_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_SOS, _EOI, _SOI, _TEM = 0xDA, 0xD9, 0xD8, 0x01
_RST = range(0xD0, 0xD8)
# The end of entropy-coded data: 0xFF followed by anything but a stuffed 0x00, a restart marker or
# another fill byte (a run of fill bytes matches at its last 0xFF, so the scan is linear).
_MARKER_AFTER_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_RESTARTS = [bytes((0xFF, marker)) for marker in _RST]
# Any marker: 0xFF then a byte that is neither a stuffed 0x00 nor another fill byte.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xff]")


@dataclass(frozen=True)
class _Component:
    id: int
    h: int
    v: int
    blocks_wide: int  # libjpeg's width_in_blocks / height_in_blocks
    blocks_high: int


@dataclass(frozen=True)
class JpegLayout:
    segments: int
    progressive: bool
    scans: int
    block_passes: int  # Σ over scans of the blocks each scan covers
    coefficient_bytes: int  # the whole-image coefficient buffer libjpeg needs if it buffers

    @property
    def buffered(self) -> bool:
        """libjpeg keeps every coefficient when the image arrives in more than one scan."""
        return self.progressive or self.scans > 1


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _frame(payload: bytes) -> tuple[list[_Component], tuple[int, int]]:
    """Components, MCUs across and down, from a SOF payload."""
    if len(payload) < 6:
        raise Damaged("short frame header")
    _precision, height, width, count = struct.unpack_from(">BHHB", payload)
    if width == 0 or height == 0 or not 1 <= count <= 4 or len(payload) < 6 + 3 * count:
        raise Damaged("bad frame header")
    raw = [payload[6 + 3 * i : 9 + 3 * i] for i in range(count)]
    sampling = [(c[1] >> 4, c[1] & 15) for c in raw]
    if any(not (1 <= h <= 4 and 1 <= v <= 4) for h, v in sampling):
        raise Damaged("bad sampling factors")
    h_max, v_max = max(h for h, _ in sampling), max(v for _, v in sampling)
    components = [
        _Component(c[0], h, v, _ceil_div(_ceil_div(width * h, h_max), 8), _ceil_div(_ceil_div(height * v, v_max), 8))
        for c, (h, v) in zip(raw, sampling, strict=True)
    ]
    return components, (_ceil_div(width, 8 * h_max), _ceil_div(height, 8 * v_max))


def _scan_blocks(payload: bytes, components: list[_Component], mcus: tuple[int, int]) -> tuple[int, int]:
    """(blocks the scan covers, its MCU count) from a SOS payload."""
    if not payload or len(payload) < 1 + 2 * payload[0] + 3 or not 1 <= payload[0] <= 4:
        raise Damaged("bad scan header")
    by_id = {c.id: c for c in components}
    try:
        chosen = [by_id[payload[1 + 2 * i]] for i in range(payload[0])]
    except KeyError:
        raise Damaged("scan names a component the frame does not have") from None
    if len(chosen) == 1:  # non-interleaved: one block per MCU
        blocks = chosen[0].blocks_wide * chosen[0].blocks_high
        return blocks, blocks
    count = mcus[0] * mcus[1]
    return count * sum(c.h * c.v for c in chosen), count


def walk_jpeg(data: bytes, budget: Budget) -> JpegLayout:
    """Every marker from SOI to EOI, counted; the entropy-coded data between them skipped at C speed."""
    view = memoryview(data)
    n, pos = len(data), 2
    segments = scans = block_passes = padding = 0
    components: list[_Component] = []
    mcus = (0, 0)
    progressive = False
    while True:
        # The next marker. What comes before it (junk bytes, extra 0xFF fill bytes, stray 0xFF00 pairs)
        # libjpeg skips with a warning and Pillow's header parser one Python loop turn per byte, so it
        # has a small budget. Normal files have none.
        window = min(n, pos + budget.padding_bytes - padding + 2)  # never scan further than the budget
        found = _NEXT_MARKER.search(data, pos, window)
        if found is None:
            raise TooComplex("padding bytes") if window < n else Damaged("no end-of-image marker")
        padding += found.start() - pos
        if padding > budget.padding_bytes:
            raise TooComplex("padding bytes")
        marker = data[found.start() + 1]
        pos = found.end()
        if marker == _EOI:
            break
        if marker in _RST or marker == _TEM:
            padding += 2  # stray standalone markers: libjpeg skips them, so they are padding too
            continue
        if marker == _SOI:
            raise Damaged("marker out of place")
        if pos + 2 > n:
            raise Damaged("truncated segment")
        length = (data[pos] << 8) | data[pos + 1]
        if length < 2 or pos + length > n:
            raise Damaged("bad segment length")
        segments += 1
        if segments > budget.segments:
            raise TooComplex("segments")
        payload = bytes(view[pos + 2 : pos + length]) if marker in _SOF or marker == _SOS else b""
        pos += length
        if marker in _SOF:
            if components:
                raise Damaged("two frame headers")
            components, mcus = _frame(payload)
            progressive = marker in _PROGRESSIVE
        elif marker == _SOS:
            if not components:
                raise Damaged("scan before the frame header")
            scans += 1
            if scans > budget.jpeg_scans:
                raise TooComplex("scans")
            blocks, mcu_count = _scan_blocks(payload, components, mcus)
            block_passes += blocks
            found = _MARKER_AFTER_SCAN.search(data, pos)
            if found is None:
                raise Damaged("scan data runs to the end of the file")
            # Restart markers come at most once per MCU; millions of them are an attack, not an image.
            if _more_restarts_than(data, pos, found.start(), mcu_count):
                raise TooComplex("restart markers")
            pos = found.start()
    if not scans:
        raise Damaged("no image data")
    coefficients = sum(
        _ceil_div(c.blocks_wide, c.h) * c.h * _ceil_div(c.blocks_high, c.v) * c.v * 128 for c in components
    )
    return JpegLayout(segments, progressive, scans, block_passes, coefficients)


def _more_restarts_than(data: bytes, start: int, end: int, limit: int) -> bool:
    """Whether data[start:end] holds more than `limit` restart markers, counted at C speed, in 1 MiB
    steps so a flood is caught in its first step. Most scans have fewer 0xFF bytes than MCUs at all."""
    if data.count(b"\xff", start, end) <= limit:
        return False
    found = 0
    for step in range(start, end, MIB):
        stop = min(end, step + MIB + 1)  # one byte of overlap: a marker across the seam counts once
        found += sum(data.count(marker, step, stop) for marker in _RESTARTS)
        if found > limit:
            return True
    return False


def check_jpeg_work(layout: JpegLayout, budget: Budget) -> None:
    """Refuse a JPEG whose decode would cost more than the budget (called once the size is known good)."""
    if layout.block_passes > budget.jpeg_block_passes:
        raise TooComplex("block passes")
    if layout.buffered and layout.coefficient_bytes > budget.jpeg_coefficient_bytes:
        raise TooComplex("coefficient buffer")


# ----- PNG ------------------------------------------------------------------------------------------------

_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_PNG_DEPTHS = {0: {1, 2, 4, 8, 16}, 2: {8, 16}, 3: {1, 2, 4, 8}, 4: {8, 16}, 6: {8, 16}}
# Adam7: (first column, first row, column step, row step) of each of the seven passes.
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_INFLATE_STEP = 1 * MIB  # inflate output per call: the memory the pixel check holds at once


@dataclass(frozen=True)
class PngLayout:
    width: int
    height: int
    depth: int
    colour: int
    interlaced: bool
    idat: tuple[tuple[int, int], ...]  # (offset, length) of each IDAT payload, in order


def walk_png(data: bytes, budget: Budget) -> PngLayout:
    """Every chunk from IHDR to IEND: lengths, CRCs and counts."""
    view = memoryview(data)
    n, pos = len(data), 8
    header: tuple[int, ...] | None = None
    idat: list[tuple[int, int]] = []
    others = pixel_chunks = 0
    while True:
        if pos + 12 > n:
            raise Damaged("no IEND chunk")
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > n:
            raise Damaged("bad chunk length")
        if zlib.crc32(view[pos + 4 : pos + 8 + length]) != int.from_bytes(view[end - 4 : end], "big"):
            raise Damaged("bad chunk CRC")
        if header is None:
            if kind != b"IHDR" or length != 13:
                raise Damaged("IHDR is not first")
            header = struct.unpack_from(">IIBBBBB", data, pos + 8)
        elif kind in (b"IDAT", b"fdAT"):
            pixel_chunks += 1
            if pixel_chunks > budget.pixel_chunks:
                raise TooComplex("pixel chunks")
            if kind == b"IDAT":
                idat.append((pos + 8, length))
        elif kind == b"IEND":
            break
        else:
            others += 1
            if others > budget.segments:
                raise TooComplex("chunks")
        pos = end
    assert header is not None
    width, height, depth, colour, compression, filtering, interlace = header
    if width == 0 or height == 0 or depth not in _PNG_DEPTHS.get(colour, ()):
        raise Damaged("bad IHDR")
    if compression != 0 or filtering != 0 or interlace not in (0, 1):
        raise Damaged("bad IHDR")
    return PngLayout(width, height, depth, colour, bool(interlace), tuple(idat))


def _png_passes(layout: PngLayout) -> list[tuple[int, int]]:
    """(bytes per filtered row including its filter byte, rows) of each pass that has pixels."""
    bits = _PNG_CHANNELS[layout.colour] * layout.depth
    grid = _ADAM7 if layout.interlaced else ((0, 0, 1, 1),)
    passes = []
    for x0, y0, dx, dy in grid:
        columns = _ceil_div(layout.width - x0, dx) if layout.width > x0 else 0
        rows = _ceil_div(layout.height - y0, dy) if layout.height > y0 else 0
        if columns and rows:
            passes.append((1 + _ceil_div(columns * bits, 8), rows))
    return passes


def check_png_pixels(data: bytes, layout: PngLayout) -> None:
    """Inflate the whole IDAT stream, MIB by MIB, and check what a decoder would: the stream is valid
    zlib and complete, it holds exactly the bytes the header promises, and every row starts with a
    filter type 0–4. Memory stays at one step of output whatever the image size; no bitmap is built."""
    view = memoryview(data)
    passes = _png_passes(layout)
    expected = sum(stride * rows for stride, rows in passes)
    # Offsets of each pass's first filter byte in the raw stream.
    starts, offset = [], 0
    for stride, rows in passes:
        starts.append(offset)
        offset += stride * rows
    inflater = zlib.decompressobj()
    produced = 0
    try:
        for start, length in layout.idat:
            pending: bytes | memoryview = view[start : start + length]
            while pending and not inflater.eof:
                out = inflater.decompress(pending, _INFLATE_STEP)
                pending = inflater.unconsumed_tail
                _check_filters(out, produced, passes, starts)
                produced += len(out)
                if produced > expected:
                    raise Damaged("more pixel data than the header allows")
            if inflater.eof:
                break
        while not inflater.eof:  # output held back by the step limit
            out = inflater.decompress(b"", _INFLATE_STEP)
            if not out:
                break
            _check_filters(out, produced, passes, starts)
            produced += len(out)
            if produced > expected:
                raise Damaged("more pixel data than the header allows")
    except zlib.error:
        raise Damaged("bad zlib stream") from None
    if not inflater.eof or produced != expected:
        raise Damaged("pixel data incomplete")


def _check_filters(out: bytes, at: int, passes: list[tuple[int, int]], starts: list[int]) -> None:
    """The filter bytes that fall in `out` (raw offsets at … at+len(out)) must all be 0–4."""
    end = at + len(out)
    for (stride, rows), first in zip(passes, starts, strict=True):
        last = first + stride * (rows - 1)
        if last < at or first >= end:
            continue
        # The first filter byte of this pass at or after `at`.
        index = first if first >= at else first + _ceil_div(at - first, stride) * stride
        if index > last or index >= end:
            continue
        stop = min(end, last + 1)
        if out[index - at : stop - at : stride].translate(None, b"\x00\x01\x02\x03\x04"):
            raise Damaged("bad row filter type")


# ----- WebP -----------------------------------------------------------------------------------------------

_WEBP_IMAGE_CHUNKS = frozenset({b"VP8 ", b"VP8L", b"ALPH", b"ANMF"})


def walk_webp(data: bytes, budget: Budget) -> None:
    """Every RIFF chunk: counted, and none running past the RIFF size (libwebp's demuxer keeps a record
    of each chunk, so millions of empty ones cost memory as well as time)."""
    riff_end = 8 + int.from_bytes(data[4:8], "little")
    if riff_end > len(data) or riff_end < 12:
        raise Damaged("RIFF size beyond the file")
    pos = 12
    others = images = 0
    while pos + 8 <= riff_end:
        kind = data[pos : pos + 4]
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        pos += 8 + size + (size & 1)
        if kind in _WEBP_IMAGE_CHUNKS:
            images += 1
            if images > budget.pixel_chunks:
                raise TooComplex("frames")
        else:
            others += 1
            if others > budget.segments:
                raise TooComplex("chunks")
    if pos > riff_end + 1:  # a chunk running past the end (one byte of missing padding is tolerated)
        raise Damaged("chunk beyond the RIFF size")
