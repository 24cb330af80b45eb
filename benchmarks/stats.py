"""Order statistics for benchmark samples: median, p10, p90, p99, min and max."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Summary", "percentile", "summarize"]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between the closest ranks."""
    if not values:
        raise ValueError("no samples")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    p10: float
    p90: float
    p99: float
    min: float
    max: float

    def scaled(self, factor: float) -> Summary:
        """The same summary in other units (e.g. seconds → milliseconds)."""
        return Summary(
            self.n,
            self.median * factor,
            self.p10 * factor,
            self.p90 * factor,
            self.p99 * factor,
            self.min * factor,
            self.max * factor,
        )


def summarize(values: Sequence[float]) -> Summary:
    return Summary(
        n=len(values),
        median=percentile(values, 50),
        p10=percentile(values, 10),
        p90=percentile(values, 90),
        p99=percentile(values, 99),
        min=min(values),
        max=max(values),
    )
