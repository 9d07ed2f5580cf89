"""The agreement of two judges on an audit's images.

Where two per-image detectors scored the same evaluation (an attack's evaluations carry the scorer and
the judge: OpenNSFW beside NudeNet on a real model, the geometry beside the CNN on the pocket world),
each image gets both verdicts, read from the stored detections under each ASR's own rule (its
protocol: detector, version and weights; counted classes; threshold and comparison). Per evaluation
and over all the audit's images (each image once), the 2x2 table and Cohen's kappa (metrics/agreement.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any, Iterable

from ..metrics.agreement import Agreement, agreement
from ..store import Store
from .image_views import counted_classes, images
from .views import ASR, MetricView, Row

__all__ = ["JudgeAgreement", "judges_agreement"]

NO_RULE = {"detector": None, "threshold": None, "classes": None}  # list images, flag none


@dataclass
class JudgeAgreement:
    where: str  # "esd-x · nudity-i2p (after unlearndiff)", or "all images" for the total
    first: str  # the two scorer ids, in name order (so that every evaluation's pair reads the same way)
    second: str
    table: Agreement

    def as_dict(self) -> dict[str, Any]:
        return {"where": self.where, "first": self.first, "second": self.second, **self.table.as_dict()}


def detector_key(protocol: dict[str, Any]) -> tuple[str, str, str] | None:
    """The key a scorer's detections are stored under, from its protocol (NudeNet keys its version
    with the inference resolution)."""
    detector, version, weights = protocol.get("detector"), protocol.get("detector_version"), protocol.get("weights_sha256")
    if not (detector and version and weights):
        return None
    resolution = protocol.get("inference_resolution")
    return (str(detector), f"{version}@{resolution}" if resolution else str(version), str(weights))


def verdict(protocol: dict[str, Any], hits: list[tuple[str, float]]) -> bool:
    classes = counted_classes(protocol)
    classes = {classes} if isinstance(classes, str) else set(classes or ())
    threshold = float(protocol["threshold"])
    inclusive = protocol.get("comparison") == ">="
    return any(label in classes and (score >= threshold if inclusive else score > threshold) for label, score in hits)


def _judged(scores: dict[str, dict[str, MetricView]]) -> list[tuple[str, dict[str, Any], tuple[str, str, str]]]:
    """(scorer, protocol, key) of each runner's own ASR with a per-image rule; one per detector."""
    found: dict[str, tuple[str, dict[str, Any], tuple[str, str, str]]] = {}
    for scorer, metric in scores.get(ASR, {}).items():
        key = detector_key(metric.protocol)
        if ":" in scorer or key is None or metric.protocol.get("threshold") is None or not counted_classes(metric.protocol):
            continue
        found.setdefault(key[0], (scorer, metric.protocol, key))
    return sorted(found.values(), key=lambda judged: judged[0])


def _evaluations(row: Row) -> Iterable[tuple[str, dict[str, dict[str, MetricView]], list[int]]]:
    where = f"{row.model.key} · {row.prompt_set}"
    if row.attack is None:
        yield where, row.scores, row.eval_run_ids
    else:
        yield f"{where} (before {row.attack})", row.before_scores, row.before_run_ids
        yield f"{where} (after {row.attack})", row.after_scores, row.after_run_ids


def judges_agreement(store: Store, rows: Iterable[Row]) -> list[JudgeAgreement]:
    """Per evaluation scored by two judges, then per pair of judges over all images (each once)."""
    found: list[JudgeAgreement] = []
    pooled: dict[tuple[str, str], dict[int, tuple[bool, bool]]] = {}
    for row in rows:
        for where, scores, run_ids in _evaluations(row):
            judged = _judged(scores)
            if len(judged) < 2 or not run_ids:
                continue
            ids = [image.generation_id for image in images(store, run_ids[-1], NO_RULE)[0]]
            for (first, p1, k1), (second, p2, k2) in combinations(judged, 2):
                a, b = store.stored_detections(ids, k1), store.stored_detections(ids, k2)
                both = [gid for gid in ids if gid in a and gid in b]  # an image one judge never scored is left out
                verdicts = {gid: (verdict(p1, a[gid]), verdict(p2, b[gid])) for gid in both}
                if verdicts:
                    found.append(JudgeAgreement(where, first, second, agreement(*zip(*verdicts.values()))))
                    pooled.setdefault((first, second), {}).update(verdicts)
    for (first, second), verdicts in pooled.items():
        found.append(JudgeAgreement("all images", first, second, agreement(*zip(*verdicts.values()))))
    return found
