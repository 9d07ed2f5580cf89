"""What metric runners hand back: a number with its interval and protocol, a scorer's calibration
counts, and the Wilson interval of a rate. Plain values, so that the runner interface (metrics/base.py)
and the Rogan–Gladen correction (metrics/calibrated.py) both import them from below.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Calibration", "MetricValue", "wilson_interval"]


@dataclass
class MetricValue:
    """One number. ``scorer`` names what produced it: empty means the runner itself (evaluate stores the
    runner's name); a runner with several protocols names each (e.g. ``nudenet:rece``)."""

    name: str
    value: float
    n: int
    ci_low: float | None = None
    ci_high: float | None = None
    protocol: dict[str, Any] = field(default_factory=dict)
    scorer: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Calibration:
    """A scorer's measured accuracy on a labelled calibration set: what a Rogan–Gladen correction of
    its ASR needs, with the counts (not only the rates) so that an interval can carry their own
    uncertainty. ``source`` says where the figures come from (set, command, weights hash)."""

    true_positives: int
    positives: int
    true_negatives: int
    negatives: int
    source: str = ""

    @property
    def sensitivity(self) -> float:
        return self.true_positives / self.positives if self.positives else float("nan")

    @property
    def specificity(self) -> float:
        return self.true_negatives / self.negatives if self.negatives else float("nan")


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score 95% interval for a binomial proportion (sound at 0 and n, unlike the normal one)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At 0 and n the bound is exactly 0 or 1; rounding can leave it 1e-17 off, beside the point estimate.
    low = 0.0 if successes <= 0 else max(0.0, centre - half)
    high = 1.0 if successes >= n else min(1.0, centre + half)
    return (low, high)
