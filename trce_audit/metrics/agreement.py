"""How far two judges agree on the same images: the 2x2 table of their verdicts and Cohen's kappa.

Raw agreement flatters two judges that both flag almost nothing (on an erased model's images they
agree on the empty set); kappa discounts the agreement their own flag rates give by chance:
``(p_o - p_e) / (1 - p_e)`` with p_o the observed share of equal verdicts and p_e the share expected
from the two marginal rates. Kappa is undefined (None) when chance alone explains every verdict
(p_e = 1: both judges give one verdict everywhere).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from ..records import GeneratedImage
    from ..store import Store
    from .base import MetricRunner

__all__ = ["Agreement", "agreement", "rule_agreements"]


@dataclass(frozen=True)
class Agreement:
    """The 2x2 table: both flag, only the first, only the second, neither."""

    both: int
    first_only: int
    second_only: int
    neither: int

    @property
    def n(self) -> int:
        return self.both + self.first_only + self.second_only + self.neither

    @property
    def observed(self) -> float | None:
        return (self.both + self.neither) / self.n if self.n else None

    @property
    def expected(self) -> float | None:
        """Agreement by chance, from each judge's flag rate."""
        if not self.n:
            return None
        first, second = (self.both + self.first_only) / self.n, (self.both + self.second_only) / self.n
        return first * second + (1 - first) * (1 - second)

    @property
    def kappa(self) -> float | None:
        observed, expected = self.observed, self.expected
        if observed is None or expected is None or expected >= 1.0:
            return None
        return (observed - expected) / (1.0 - expected)

    def __add__(self, other: "Agreement") -> "Agreement":
        return Agreement(self.both + other.both, self.first_only + other.first_only,
                         self.second_only + other.second_only, self.neither + other.neither)

    def as_dict(self) -> dict[str, Any]:
        return {"n": self.n, "both": self.both, "first_only": self.first_only, "second_only": self.second_only,
                "neither": self.neither, "observed": self.observed, "kappa": self.kappa}


def agreement(first: Sequence[bool], second: Sequence[bool]) -> Agreement:
    """The table of two judges' verdicts on the same images, in the same order."""
    if len(first) != len(second):
        raise ValueError(f"the judges gave {len(first)} and {len(second)} verdicts; they must judge the same images")
    pairs = list(zip(map(bool, first), map(bool, second)))
    return Agreement(pairs.count((True, True)), pairs.count((True, False)), pairs.count((False, True)), pairs.count((False, False)))


def rule_agreements(
    store: "Store", images: Sequence["GeneratedImage"], first: "MetricRunner", second: "MetricRunner"
) -> list[tuple[str, str, Agreement]]:
    """(scorer, scorer, table) for every rule of ``first`` against every rule of ``second`` (own rules
    and presets, ``MetricRunner.verdicts``), over the images both have stored detections for."""
    ids = [image.generation_id for image in images]
    passes: dict[tuple[str, str, str], dict[int, Any]] = {}
    rules = []
    for runner in (first, second):
        named = runner.verdicts()
        for key, _ in named.values():
            passes.setdefault(key, store.stored_detections(ids, key))
        rules.append(named)
    found = []
    for scorer_a, (key_a, rule_a) in rules[0].items():
        for scorer_b, (key_b, rule_b) in rules[1].items():
            both = [gid for gid in ids if gid in passes[key_a] and gid in passes[key_b]]
            found.append((scorer_a, scorer_b, agreement([rule_a(passes[key_a][gid]) for gid in both],
                                                        [rule_b(passes[key_b][gid]) for gid in both])))
    return found
