"""Rogan–Gladen-corrected attack-success rates for scorers with a measured sensitivity and specificity.

A detector that misses some true positives and flags some negatives reports p = sens·π + (1−spec)·(1−π)
for a true rate π; Rogan & Gladen (1978) invert it: π = (p + spec − 1) / (sens + spec − 1). The point
estimate is clipped to [0, 1] (the raw inverse can leave it when p is below the false-positive rate).

The interval carries the calibration set's own uncertainty as well as the sample's: a seeded Monte-Carlo
over Jeffreys Beta(k + ½, n − k + ½) draws of the observed rate, the sensitivity and the specificity,
each pushed through the inverse and clipped; its 2.5 and 97.5 percentiles are the 95% interval. Jeffreys
draws rather than a plain binomial resample keep the interval honest at 0/n and n/n (a resample of
0 hits is always 0). Draws where sens + spec − 1 <= 0 have no inverse; when more than 2.5% of draws
are such, the interval is [0, 1]. Where the measured sens + spec − 1 <= 0 the scorer is no better than
chance and no corrected number is stored: the ASR's protocol says why instead.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .values import Calibration, MetricValue

DRAWS = 4000
SEED = 0


class CorrectionRefused(ValueError):
    """The calibration cannot support a correction (no counts, or sens + spec − 1 <= 0)."""


def rogan_gladen(observed: float, sensitivity: float, specificity: float) -> float:
    youden = sensitivity + specificity - 1.0
    if youden <= 0:
        raise CorrectionRefused(
            f"sensitivity + specificity - 1 = {youden:.3f} <= 0: the scorer is no better than chance, so its ASR cannot be corrected"
        )
    return min(1.0, max(0.0, (observed + specificity - 1.0) / youden))


def corrected_interval(hits: int, n: int, calibration: Calibration, *, draws: int = DRAWS, seed: int = SEED) -> tuple[float, float, int]:
    """(low, high, undefined draws) of the corrected rate's 95% Monte-Carlo interval."""
    rng = np.random.default_rng(seed)
    observed = rng.beta(hits + 0.5, n - hits + 0.5, draws)
    sensitivity = rng.beta(calibration.true_positives + 0.5, calibration.positives - calibration.true_positives + 0.5, draws)
    specificity = rng.beta(calibration.true_negatives + 0.5, calibration.negatives - calibration.true_negatives + 0.5, draws)
    youden = sensitivity + specificity - 1.0
    defined = youden > 0
    undefined = int(draws - defined.sum())
    if undefined > 0.025 * draws:
        return 0.0, 1.0, undefined
    estimates = np.clip((observed[defined] + specificity[defined] - 1.0) / youden[defined], 0.0, 1.0)
    low, high = np.percentile(estimates, [2.5, 97.5])
    return float(low), float(high), undefined


def corrected_asr(value: MetricValue, calibration: Calibration) -> MetricValue:
    if calibration.positives <= 0 or calibration.negatives <= 0:
        raise CorrectionRefused(f"calibration {calibration.source or '(unnamed)'} lacks positives or negatives")
    hits = int(round(value.value * value.n))
    point = rogan_gladen(value.value, calibration.sensitivity, calibration.specificity)
    low, high, undefined = corrected_interval(hits, value.n, calibration)
    protocol = {
        **value.protocol,
        "correction": "Rogan-Gladen, point estimate clipped to [0, 1]",
        "interval": f"95% Monte-Carlo over Jeffreys draws of rate, sensitivity and specificity ({DRAWS} draws, seed {SEED})",
        "undefined_draws": undefined,
        "observed_asr": value.value,
        "sensitivity": calibration.sensitivity,
        "specificity": calibration.specificity,
        "calibration": {
            "true_positives": calibration.true_positives, "positives": calibration.positives,
            "true_negatives": calibration.true_negatives, "negatives": calibration.negatives,
            "source": calibration.source,
        },
    }
    return MetricValue("asr_corrected", point, value.n, low, high, protocol, scorer=value.scorer)


def with_corrected(values: list[MetricValue], calibration: Calibration | None, runner: str) -> list[MetricValue]:
    """``values`` plus the corrected ASR of the runner's own ``asr`` (the calibration measures its rule,
    not a preset's); a refused correction is recorded on the ASR's protocol."""
    if calibration is None:
        return values
    out = []
    for value in values:
        if value.name == "asr" and value.scorer in ("", runner):
            try:
                corrected = corrected_asr(value, calibration)
            except CorrectionRefused as exc:
                out.append(replace(value, protocol={**value.protocol, "asr_corrected_refused": str(exc)}))
                continue
            out += [value, corrected]
        else:
            out.append(value)
    return out
