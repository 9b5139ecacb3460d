"""What a user asked for, in provider-neutral terms (no discord, no httpx)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["t2v", "i2v"]
# Quality names the user picks; each maps to a resolution (and, for the fast tiers, a cheaper model).
Quality = Literal["standard", "pro", "fast", "fast-pro"]

MODEL_HAILUO_23 = "hailuo-2.3"
MODEL_HAILUO_02 = "hailuo-02"
MODELS = (MODEL_HAILUO_23, MODEL_HAILUO_02)
MODEL_LABELS = {MODEL_HAILUO_23: "Hailuo 2.3", MODEL_HAILUO_02: "Hailuo 02"}
# Only Hailuo 02 makes first-and-last-frame clips (docs/providers/minimax.md §5).
END_FRAME_MODELS = (MODEL_HAILUO_02,)

RESOLUTION_BY_QUALITY: dict[str, str] = {
    "standard": "768P",
    "pro": "1080P",
    "fast": "768P",
    "fast-pro": "1080P",
}
QUALITIES_BY_MODE: dict[str, tuple[str, ...]] = {
    "t2v": ("standard", "pro"),
    "i2v": ("standard", "pro", "fast", "fast-pro"),
}
# What each model offers, by mode. Hailuo 02 has no cheaper "fast" tiers at 768P/1080P.
QUALITIES_BY_MODEL: dict[str, dict[str, tuple[str, ...]]] = {
    MODEL_HAILUO_23: QUALITIES_BY_MODE,
    MODEL_HAILUO_02: {"t2v": ("standard", "pro"), "i2v": ("standard", "pro")},
}
DURATIONS = (6, 10)
# 10 s clips exist only at 768P (docs/providers/minimax.md §5).
DURATIONS_BY_RESOLUTION: dict[str, tuple[int, ...]] = {"768P": (6, 10), "1080P": (6,)}


@dataclass(frozen=True)
class ImageInput:
    """A validated input image: its real format (from its bytes) and header dimensions."""

    data: bytes
    mime: str  # image/jpeg | image/png | image/webp
    width: int
    height: int

    @property
    def extension(self) -> str:
        return {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}[self.mime]


@dataclass(frozen=True)
class GenerationSpec:
    """A validated request. `prompt` is already normalised (camera directives in canonical English)."""

    mode: Mode
    quality: Quality
    duration: int
    prompt: str
    optimize_prompt: bool = True
    model: str = MODEL_HAILUO_23
    image: ImageInput | None = field(default=None, repr=False)
    end_image: ImageInput | None = field(default=None, repr=False)  # last frame (Hailuo 02 only)

    @property
    def resolution(self) -> str:
        return RESOLUTION_BY_QUALITY[self.quality]

    @property
    def variant(self) -> str:
        """Price/endpoint key, e.g. `t2v-standard`, `i2v-fast-pro`."""
        return f"{self.mode}-{self.quality}"

    @property
    def price_key(self) -> str:
        """Key into the price table of config.toml, e.g. `i2v-standard-10s`."""
        return f"{self.variant}-{self.duration}s"
