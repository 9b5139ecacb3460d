"""Prices per provider/model/variant/duration, in integer micro-dollars."""

from __future__ import annotations

from services.spec import (
    DURATIONS_BY_RESOLUTION,
    MODEL_HAILUO_23,
    QUALITIES_BY_MODE,
    RESOLUTION_BY_QUALITY,
    GenerationSpec,
)

FREE_PROVIDERS = ("preview",)


def all_price_keys() -> list[str]:
    """Every `<mode>-<quality>-<duration>s` combination that exists for Hailuo 2.3."""
    keys = []
    for mode, qualities in QUALITIES_BY_MODE.items():
        for quality in qualities:
            for duration in DURATIONS_BY_RESOLUTION[RESOLUTION_BY_QUALITY[quality]]:
                keys.append(f"{mode}-{quality}-{duration}s")
    return keys


def required_price_keys(provider: str) -> dict[str, list[str]]:
    """What config.toml must price for a paid provider, by model."""
    if provider in FREE_PROVIDERS:
        return {}
    return {MODEL_HAILUO_23: all_price_keys()}


class PriceTable:
    def __init__(self, prices: dict[str, dict[str, dict[str, int]]]) -> None:
        self._prices = prices

    def price_micros(self, provider: str, spec: GenerationSpec) -> int:
        if provider in FREE_PROVIDERS:
            return 0
        try:
            return self._prices[provider][spec.model][spec.price_key]
        except KeyError:
            # Settings validation makes this unreachable for configured providers.
            raise LookupError(f"no price for {provider}/{spec.model}/{spec.price_key}") from None


def format_usd(micros: int) -> str:
    """280000 -> '$0.28'; keeps sub-cent precision only when there is some."""
    dollars, rest = divmod(micros, 1_000_000)
    if rest % 10_000 == 0:
        return f"${dollars}.{rest // 10_000:02d}"
    return f"${dollars}.{rest:06d}".rstrip("0")
