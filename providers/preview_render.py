"""What the preview provider draws: the title card, the badge, the camera motion and the ffmpeg graph.

Pure functions (Pillow and string building, no subprocess), so they can be tested and tuned apart from
the task bookkeeping in `providers.preview`. The camera is a still image zoomed by `scale` (evaluated per
frame) and framed by `crop` (x/y per frame), with eased moves one bracket group after another.
"""

from __future__ import annotations

import functools
import io
import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

from core import camera
from core.errors import UserError
from core.spec import GenerationSpec

FRAME_HEIGHTS = {"768P": 768, "1080P": 1080}
LABEL_TEXT = "PREVIEW"
LABEL_RGB = (220, 38, 38)
CARD_TOP_RGB = (12, 16, 38)
CARD_BOTTOM_RGB = (46, 18, 64)
# Pillow's built-in font is ASCII-only; a system font (looked up in the usual font folders) shows
# accents and Cyrillic, and a CJK one Chinese prompts instead of empty boxes. The CJK fonts come first
# (they have Latin too); scripts/setup.sh and the Docker image install WenQuanYi Micro Hei (~5 MB).
FONT_CANDIDATES = ("NotoSansCJK-Regular.ttc", "wqy-microhei.ttc", "NotoSans-Regular.ttf", "DejaVuSans.ttf")
# A system font when one is found, else Pillow's own (both draw and measure text alike).
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
_BRACKETS = re.compile(r"[\[［【][^\]］】]*[\]］】]")


# --- camera motion ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Move:
    """What one camera move does over its segment, in abstract units (see `motion_paths`)."""

    zoom: float = 0.0  # zoom levels; one level multiplies the zoom by `zoom_step`
    x: float = 0.0  # view to the right (+) or left (-); 2 units sweep the whole free margin
    y: float = 0.0  # view down (+) or up (-)
    shake: bool = False


MOVES: dict[str, Move] = {
    "Push in": Move(zoom=1),
    "Zoom in": Move(zoom=1),
    "Pull out": Move(zoom=-1),
    "Zoom out": Move(zoom=-1),
    "Pan left": Move(x=-2),
    "Truck left": Move(x=-2),
    "Pan right": Move(x=2),
    "Truck right": Move(x=2),
    "Pedestal up": Move(y=-2),
    "Tilt up": Move(y=-2),
    "Pedestal down": Move(y=2),
    "Tilt down": Move(y=2),
    "Shake": Move(shake=True),
    "Tracking shot": Move(zoom=0.3, x=0.6),  # a slow drift
    "Static shot": Move(zoom=0.12),  # a barely visible zoom, so the clip still reads as video
}
I2V_ZOOM_STEP = 1.3
T2V_ZOOM_STEP = 1.1  # the title card only breathes: its text must stay in frame
MAX_ZOOM_LEVELS = 2.0
PAN_MARGIN = 1.2  # the still is this much larger than the frame when the view has to travel
SHAKE_AMPLITUDE = 0.012  # of the frame height


@dataclass(frozen=True)
class Motion:
    """Values at the segment boundaries (n segments → n + 1 values) and which segments shake."""

    zoom: tuple[float, ...]
    x: tuple[float, ...]
    y: tuple[float, ...]
    shake: tuple[bool, ...]

    @property
    def travels(self) -> bool:
        return any(self.shake) or len(set(self.x)) > 1 or len(set(self.y)) > 1


def motion_paths(groups: list[list[str]]) -> Motion:
    """Accumulate the groups (moves in one group happen at once, groups one after another), then fit the
    paths to what the frame allows: pans sweep at most the free margin, zoom starts at 1× and is capped."""
    segments = [[MOVES.get(name, MOVES["Static shot"]) for name in group] for group in groups] or [
        [MOVES["Static shot"]]
    ]
    zoom, x, y = [0.0], [0.0], [0.0]
    for moves in segments:
        zoom.append(zoom[-1] + sum(m.zoom for m in moves))
        x.append(x[-1] + sum(m.x for m in moves))
        y.append(y[-1] + sum(m.y for m in moves))
    return Motion(
        zoom=_fit(zoom, low=0.0, span=MAX_ZOOM_LEVELS, centre=False),
        x=_fit(x, low=-1.0, span=2.0, centre=True),
        y=_fit(y, low=-1.0, span=2.0, centre=True),
        shake=tuple(any(m.shake for m in moves) for moves in segments),
    )


def _fit(path: list[float], *, low: float, span: float, centre: bool) -> tuple[float, ...]:
    """Shift (and if needed shrink) a path into [low, low + span]; centred paths sit in the middle."""
    lowest, extent = min(path), max(path) - min(path)
    scale = min(1.0, span / extent) if extent else 1.0
    offset = low + (span - extent * scale) / 2 if centre else low
    return tuple(offset + (value - lowest) * scale for value in path)


def eased(values: tuple[float, ...], duration: float) -> str:
    """An ffmpeg expression of `t`: `values` reached at equal steps, eased in and out (smoothstep)."""
    step = duration / (len(values) - 1)
    terms = [f"{values[0]:.4f}"]
    for i, (a, b) in enumerate(itertools.pairwise(values)):
        if b != a:
            u = f"clip((t-{i * step:.4f})/{step:.4f},0,1)"
            terms.append(f"{b - a:+.4f}*{u}*{u}*(3-2*{u})")
    return "".join(terms)


def shake_expr(shake: tuple[bool, ...], duration: float, pixels: float, phase: float) -> str:
    """Handheld jitter in pixels during the shaking segments (two incommensurate sines)."""
    step = duration / len(shake)
    masks = [f"between(t,{i * step:.4f},{(i + 1) * step:.4f})" for i, on in enumerate(shake) if on]
    if not masks:
        return "0"
    wobble = f"{pixels:.2f}*(sin(2*PI*5.3*t+{phase})+0.5*sin(2*PI*11.7*t+{2 * phase}))"
    return f"{wobble}*min(1,{'+'.join(masks)})"


# --- stills -------------------------------------------------------------------------------------------


@functools.cache
def load_font(size: int) -> Font:
    for name in FONT_CANDIDATES:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def even(value: float) -> int:
    """Nearest even integer ≥ 2 (H.264 in 4:2:0 needs even frame sizes)."""
    return max(2, 2 * math.floor(value / 2 + 0.5))


def frame_size(spec: GenerationSpec) -> tuple[int, int]:
    """The resolution's height; the width is 16:9 for a text prompt, the image's aspect for an image."""
    height = FRAME_HEIGHTS[spec.resolution]
    aspect = spec.image.width / spec.image.height if spec.image else 16 / 9
    return even(height * aspect), height


def label_box(frame_height: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the PREVIEW badge in the frame; the width fits the text."""
    font = load_font(_label_font_size(frame_height))
    margin, pad = round(frame_height * 0.03), round(frame_height * 0.02)
    text_w = math.ceil(font.getlength(LABEL_TEXT))
    return margin, margin, margin + text_w + 2 * pad, margin + round(frame_height * 0.06)


def _label_font_size(frame_height: int) -> int:
    return max(10, round(frame_height * 0.036))


def render_label(frame_height: int) -> Image.Image:
    """The badge as an RGBA image the size of its box (overlaid by ffmpeg at the box's corner)."""
    left, top, right, bottom = label_box(frame_height)
    badge = Image.new("RGBA", (right - left, bottom - top), (0, 0, 0, 0))
    draw = ImageDraw.Draw(badge)
    draw.rounded_rectangle((0, 0, badge.width - 1, badge.height - 1), radius=badge.height // 5, fill=LABEL_RGB)
    font = load_font(_label_font_size(frame_height))
    draw.text((badge.width / 2, badge.height / 2), LABEL_TEXT, font=font, fill="white", anchor="mm")
    return badge


def render_card(prompt: str, groups: list[list[str]], size: tuple[int, int]) -> Image.Image:
    """A title card: the prompt (without its camera brackets) on a dark gradient, and the moves below."""
    width, height = size
    mask = Image.linear_gradient("L").resize(size)
    card = Image.composite(Image.new("RGB", size, CARD_BOTTOM_RGB), Image.new("RGB", size, CARD_TOP_RGB), mask)
    draw = ImageDraw.Draw(card)
    text = " ".join(_BRACKETS.sub(" ", prompt).split()) or "(camera moves only)"
    font, font_size, lines = _fit_text(text, max_width=width * 0.8, max_height=height * 0.6, frame_height=height)
    line_h = font_size * 1.3
    top = (height - line_h * len(lines)) / 2
    for i, line in enumerate(lines):
        draw.text((width / 2, top + line_h * (i + 0.5)), line, font=font, fill=(236, 236, 244), anchor="mm")
    if groups:
        moves = " then ".join(", ".join(group) for group in groups)
        small = load_font(max(10, height // 32))
        draw.text((width / 2, height * 0.85), f"Camera: {moves}", font=small, fill=(170, 170, 200), anchor="mm")
    return card


def _fit_text(text: str, *, max_width: float, max_height: float, frame_height: int) -> tuple[Font, int, list[str]]:
    """The largest font (and its size) that fits the text in the box; at the smallest size, cut with an
    ellipsis."""
    size = max(12, frame_height // 12)
    while True:
        font = load_font(size)
        lines = _wrap(text, font, max_width)
        fits = int(max_height // (size * 1.3))
        if len(lines) <= fits:
            return font, size, lines
        if size <= max(12, frame_height // 40):
            return font, size, [*lines[: fits - 1], lines[fits - 1].rstrip(".,;: ") + " …"]
        size = int(size * 0.85)


def _wrap(text: str, font: Font, max_width: float) -> list[str]:
    """Greedy word wrap; a word wider than a line (a URL, text without spaces) is cut where it overflows."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}" if line else word
        if font.getlength(candidate) <= max_width:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = ""
        for char in word:  # linear in the word's length: prompts can be 2000 characters without a space
            if line and font.getlength(line + char) > max_width:
                lines.append(line)
                line = ""
            line += char
    return [*lines, line] if line else lines


def prepare_image(data: bytes, size: tuple[int, int]) -> Image.Image:
    """The input image upright (EXIF orientation), in RGB, resized to `size`."""
    with Image.open(io.BytesIO(data)) as opened:
        # JPEG can decode at 1/2..1/8 scale: a 50 MP photo then costs a fraction of the time and memory.
        # Both sides ask for the long side, so a rotated (EXIF) photo keeps enough pixels either way.
        opened.draft("RGB", (max(size), max(size)))
        image = ImageOps.exif_transpose(opened).convert("RGB")
    return image.resize(size, Image.Resampling.BICUBIC)


# --- rendering ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderPlan:
    frame: tuple[int, int]
    still: tuple[int, int]  # the still's size before zooming: ≥ the frame, larger when the view travels
    motion: Motion
    zoom_step: float
    duration: float
    fps: int


def plan_render(spec: GenerationSpec, fps: int) -> RenderPlan:
    frame = frame_size(spec)
    if spec.mode == "t2v":
        motion, step = motion_paths([["Push in"]]), T2V_ZOOM_STEP
    else:
        motion, step = motion_paths(directives(spec.prompt)), I2V_ZOOM_STEP
    margin = PAN_MARGIN if motion.travels else 1.0
    still = (2 * math.ceil(frame[0] * margin / 2), 2 * math.ceil(frame[1] * margin / 2))
    return RenderPlan(frame, still, motion, step, float(spec.duration), fps)


def write_stills(spec: GenerationSpec, plan: RenderPlan, folder: Path) -> tuple[Path, Path]:
    """Write the still to animate and the badge as PNGs (blocking: run it in a thread)."""
    if spec.image is not None:
        still = prepare_image(spec.image.data, plan.still)
    else:
        still = render_card(spec.prompt, directives(spec.prompt), plan.still)
    still_path, label_path = folder / "still.png", folder / "label.png"
    still.save(still_path, compress_level=1)  # written once, read once: speed over size
    render_label(plan.frame[1]).save(label_path)
    return still_path, label_path


def _position(zoomed: str, frame: int, travel: str, shake: str) -> str:
    """Where the view starts along one axis: -1..1 of the free margin around the centre, plus shake."""
    return f"clip(({zoomed}-{frame})/2*(1+{travel})+{shake},0,{zoomed}-{frame})"


def directives(prompt: str) -> list[list[str]]:
    """The prompt's camera groups. Prompts are validated before they get here; a bad one gets no moves."""
    try:
        return camera.parse_directives(prompt)
    except UserError:
        return []


def render_args(plan: RenderPlan, still: Path, label: Path, output: Path) -> list[str]:
    """ffmpeg arguments: loop the still, zoom it (scale per frame) and move the view (crop per frame),
    then overlay the badge. Frames stay in 4:4:4 until the end so the crop can move by single pixels."""
    width, height = plan.frame
    frames = round(plan.duration * plan.fps)
    m, d = plan.motion, plan.duration
    zoom = f"pow({plan.zoom_step},{eased(m.zoom, d)})"
    # The zoomed size is spelled out again for crop: crop keeps the input size it was configured
    # with, so its `iw`/`ih` go stale once scale starts changing the frame size.
    zoomed_w, zoomed_h = f"2*ceil({plan.still[0]}*{zoom}/2)", f"2*ceil({plan.still[1]}*{zoom}/2)"
    shake_px = height * SHAKE_AMPLITUDE
    x = _position(zoomed_w, width, eased(m.x, d), shake_expr(m.shake, d, shake_px, 0.0))
    y = _position(zoomed_h, height, eased(m.y, d), shake_expr(m.shake, d, shake_px, 1.3))
    left, top, _, _ = label_box(height)
    graph = (
        f"[0:v]format=yuv444p,loop=loop={frames - 1}:size=1,setpts=N/{plan.fps}/TB,"
        f"scale=w='{zoomed_w}':h='{zoomed_h}':eval=frame:flags=bilinear,"
        f"crop=w={width}:h={height}:x='{x}':y='{y}'[cam];"
        f"[cam][1:v]overlay=x={left}:y={top}:format=yuv444,format=yuv420p[out]"
    )
    return [
        "-y", "-loglevel", "error", "-nostats", "-progress", "pipe:1",
        "-framerate", str(plan.fps), "-i", str(still), "-i", str(label),
        "-filter_complex", graph, "-map", "[out]", "-frames:v", str(frames), "-r", str(plan.fps),
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "28", "-pix_fmt", "yuv420p",
        "-movflags", "+faststart", "-an", "-f", "mp4", str(output),
    ]  # fmt: skip
