"""Training-seed spread: for an eraser an audit trained under several seeds, each seed's number on each
prompt set (ASR, after attack where attacked, and preservation), their mean and range, and whether the
seeds' 95% intervals share a point. Intervals that do not overlap say the seeds differ by more than
the images' sampling noise: the eraser's training, not the measurement, moved the number."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .views import ASR, PRESERVATION_METRICS, MetricView, Row


@dataclass
class SeedSpread:
    group: str  # the eraser's model key, shared by its seeds
    prompt_set: str
    attack: str | None
    metric: str  # "asr" (the gated ASR: after the attack on an attack row) or a preservation metric
    seeds: list[tuple[int, MetricView]]

    @property
    def values(self) -> list[float]:
        return [metric.value for _, metric in self.seeds]

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    @property
    def intervals_overlap(self) -> bool | None:
        """Whether every seed's interval shares one point (intervals on a line overlap pairwise exactly
        then); None where a seed's number has no interval (FID, CLIP score)."""
        if any(metric.ci_low is None or metric.ci_high is None for _, metric in self.seeds):
            return None
        return max(m.ci_low for _, m in self.seeds) <= min(m.ci_high for _, m in self.seeds)  # type: ignore[type-var]

    def as_dict(self) -> dict:
        return {
            "model": self.group, "prompt_set": self.prompt_set, "attack": self.attack, "metric": self.metric,
            "seeds": {str(seed): metric.value for seed, metric in self.seeds},
            "mean": self.mean, "low": self.low, "high": self.high, "intervals_overlap": self.intervals_overlap,
        }


def seed_spreads(rows: Iterable[Row]) -> list[SeedSpread]:
    """One spread per (eraser, prompt set, attack, metric) measured under two or more training seeds."""
    found: dict[tuple[str, str, str | None, str], list[tuple[int, MetricView]]] = {}
    for row in rows:
        if row.model.seed is None:
            continue
        measured = {ASR: row.gated_asr} if row.attack else {ASR: row.asr, **{n: row.metrics.get(n) for n in PRESERVATION_METRICS}}
        for name, metric in measured.items():
            if metric is not None:
                found.setdefault((row.model.group_key, row.prompt_set, row.attack, name), []).append((row.model.seed, metric))
    return [SeedSpread(*key, sorted(seeds, key=lambda item: item[0])) for key, seeds in found.items() if len(seeds) > 1]
