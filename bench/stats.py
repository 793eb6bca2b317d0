"""Small statistics and number formatting shared by the sections."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sample."""
    if not values:
        raise ValueError("percentile of an empty sample")
    ordered = sorted(values)
    rank = max(math.ceil(p / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt(value: float | None, digits: int = 2, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:.{digits}f}"
    return f"{text} {unit}" if unit else text


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"
