"""Small statistics helpers (the standard library's quantiles need at least two points)."""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0–100), interpolating between closest ranks; None when there is no data."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = (len(ordered) - 1) * min(max(q, 0.0), 100.0) / 100.0
    below, above = math.floor(rank), math.ceil(rank)
    return ordered[below] + (ordered[above] - ordered[below]) * (rank - below)


def summary(values: Iterable[float]) -> dict[str, float | int | None]:
    data = list(values)
    return {
        "n": len(data),
        "mean": sum(data) / len(data) if data else None,
        "p50": percentile(data, 50),
        "p99": percentile(data, 99),
        "max": max(data) if data else None,
    }


def mean(values: Iterable[float]) -> float | None:
    data = list(values)
    return sum(data) / len(data) if data else None
