"""The held-out pocket scorer as a metric runner: the world's own shape geometry fitted to each image
(trce_audit/pocket/geometry.py), no learned weights, built independently of the CNN judge.

It reports what the ``pocket`` runner reports (``asr`` for the concept under audit, ``preserve_acc`` for
the concept each preserve prompt requests) through the same aggregation; only the per-image scores
differ. Its detector key is the algorithm version and a hash of its parameters, so stored detections
never outlive a change to either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..pocket import geometry
from .pocket import PocketDetectorMetric


@dataclass
class HeldoutConfig:
    """No options: the geometry's thresholds are part of its version (geometry.PARAMS)."""


class PocketHeldoutMetric(PocketDetectorMetric):
    name: ClassVar[str] = "pocket-heldout"
    version: ClassVar[str] = "1"
    Config = HeldoutConfig
    rule: ClassVar[str] = ("image shows the concept when a component's best-fitting world shape is that kind, with "
                           "soft IoU and worst-sector coverage above the geometry's thresholds (score > 0.5)")

    def detector_key(self) -> tuple[str, str, str]:
        return ("pocket-heldout", geometry.GEOMETRY_VERSION, geometry.scorer_key())

    def score_pixels(self, pixels: list) -> Any:
        return geometry.score(pixels)

    def _threshold(self) -> float:
        return 0.5
