"""Prices per provider/model/variant/duration, in integer micro-dollars."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation

from core.errors import UserError
from core.spec import DURATIONS_BY_RESOLUTION, RESOLUTION_BY_QUALITY, GenerationSpec
from core.text import tr


def required_price_keys(offers: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """What config.toml must price for a provider offering these (model, variant) pairs, by model:
    every `<mode>-<quality>-<duration>s` the variant's resolution allows."""
    keys: dict[str, list[str]] = {}
    for model, variant in sorted(offers):
        quality = variant.split("-", 1)[1]
        for duration in DURATIONS_BY_RESOLUTION[RESOLUTION_BY_QUALITY[quality]]:
            keys.setdefault(model, []).append(f"{variant}-{duration}s")
    return keys


class PriceTable:
    def __init__(self, prices: Mapping[str, Mapping[str, Mapping[str, int]]], free: Iterable[str] = ()) -> None:
        self._prices = prices
        self._free = frozenset(free)  # providers whose `capabilities.free` is set: every clip costs 0

    def price_micros(self, provider: str, spec: GenerationSpec) -> int:
        if provider in self._free:
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


MAX_ADMIN_USD = 1_000_000  # far above real use, far below overflow: catches a slipped "1e30"


def parse_usd(text: str, *, what: str) -> int:
    """An admin's dollar amount ("2", "0.28", "$1.50") in micros, or UserError naming `what` (an option
    name or a limit key; pass a Text, e.g. `tr("amount")`, to have an option name translated too)."""
    cleaned = text.strip().removeprefix("$").strip()
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise UserError(
            tr("`{what}` must be a dollar amount like `2.50` (got `{got}`).", what=what, got=text.strip()[:40])
        ) from None
    if not amount.is_finite() or amount < 0:
        raise UserError(tr("`{what}` must be a positive dollar amount like `2.50`.", what=what))
    if amount > MAX_ADMIN_USD:
        raise UserError(tr("`{what}` can be at most ${limit:,}.", what=what, limit=MAX_ADMIN_USD))
    micros = amount * 1_000_000
    if micros != micros.to_integral_value():
        raise UserError(tr("`{what}` has more than 6 decimal places.", what=what))
    return int(micros)
