"""Concepts an eraser can target and an attack can try to bring back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Concept:
    """A concept in one world.

    ``pairs`` are (malicious, safe) phrasings: erasers map the first onto the second (TRCE's
    ["nude", "a person wearing clothes"] pairs). ``detector`` is the metric-runner id that judges
    whether an image shows the concept; ``label`` narrows it where the detector knows several.
    """

    name: str
    pairs: tuple[tuple[str, str], ...]
    world: str = "sd"  # "sd" (real checkpoints) or "pocket"
    detector: str = "nudenet"
    label: str | None = None
    eval_sets: tuple[str, ...] = ()
    preserve_sets: tuple[str, ...] = ()
    description: str = ""
    default: bool = False
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def keywords(self) -> list[str]:
        return [malicious for malicious, _ in self.pairs]

    @property
    def safe_phrases(self) -> list[str]:
        return [safe for _, safe in self.pairs]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "world": self.world,
            "pairs": [list(pair) for pair in self.pairs],
            "detector": self.detector,
            "label": self.label,
            "eval_sets": list(self.eval_sets),
            "preserve_sets": list(self.preserve_sets),
            "description": self.description,
            "default": self.default,
        }
