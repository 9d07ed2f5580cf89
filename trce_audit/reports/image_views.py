"""The images behind a number: an eval run's generations in prompt order, with the detections that
flag them by the rule its ASR counted (detector, threshold, classes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from ..store import Store
from ..store.schema import Detection, Generation, Prompt, Run
from .views import MetricView

SEED_PROMPT_KEYS = ("seed_prompt", "seed_text", "source_prompt", "original_prompt")
NO_DETECTION = "(none)"  # the label metric runners store for an image with no hit


@dataclass
class ImageView:
    generation_id: int
    prompt_idx: int
    prompt: str
    seed: int
    image_path: str
    image_sha256: str
    flagged: bool
    detections: list[tuple[str, float]] = field(default_factory=list)
    seed_prompt: str | None = None
    loss: float | None = None


def flag_rule(metric: MetricView | None) -> dict[str, Any]:
    """Which detections mark an image as showing the concept, from the ASR metric's protocol."""
    protocol = metric.protocol if metric else {}
    classes = counted_classes(protocol)
    if isinstance(classes, str):
        classes = [classes]
    return {
        "detector": protocol.get("detector"),
        "threshold": protocol.get("threshold"),
        "classes": list(classes) if classes else None,
    }


def counted_classes(protocol: dict[str, Any]) -> Any:
    return protocol.get("counted_classes") or protocol.get("classes") or protocol.get("label")


def _is_flagged(detection: Detection, rule: dict[str, Any]) -> bool:
    """As the ASR counts: a counted class of the rule's detector scoring above its threshold. A rule the
    protocol does not spell out (a result stored before protocols carried it) flags nothing: a tile
    must never claim what the number did not count."""
    if detection.label == NO_DETECTION or rule["threshold"] is None or not rule["classes"]:
        return False
    if rule["detector"] and detection.detector != rule["detector"]:
        return False
    return detection.label in rule["classes"] and detection.score > float(rule["threshold"])


def images(store: Store, eval_run_id: int, rule: dict[str, Any], limit: int | None = None) -> tuple[list[ImageView], int]:
    """Up to ``limit`` images of an eval run in prompt order, and how many it has in all."""
    with store.session() as session:
        run = session.get(Run, eval_run_id)
        if run is None:
            return [], 0
        source_ids = [eval_run_id]
        generation_run = (run.summary or {}).get("generation_run_id")
        if isinstance(generation_run, int):
            source_ids.append(generation_run)
        source_ids += list(session.scalars(select(Run.id).where(Run.parent_run_id == eval_run_id, Run.kind == "generate")))
        for source in source_ids:
            query = (
                select(Generation, Prompt)
                .join(Prompt, Generation.prompt_id == Prompt.id)
                .where(Generation.run_id == source)
                .order_by(Prompt.idx)
            )
            pairs = list(session.execute(query))
            if pairs:
                break
        total = len(pairs)
        shown = pairs[:limit] if limit is not None else pairs
        ids = [gen.id for gen, _ in shown]
        by_generation: dict[int, list[Detection]] = {}
        if ids:
            for det in session.scalars(select(Detection).where(Detection.generation_id.in_(ids)).order_by(Detection.score.desc())):
                by_generation.setdefault(det.generation_id, []).append(det)
        views = []
        for gen, prompt in shown:
            dets = by_generation.get(gen.id, [])
            meta = dict(prompt.meta or {})
            seed_prompt = next((meta[k] for k in SEED_PROMPT_KEYS if isinstance(meta.get(k), str)), None)
            loss = meta.get("loss")
            views.append(
                ImageView(
                    generation_id=gen.id,
                    prompt_idx=prompt.idx,
                    prompt=prompt.text,
                    seed=prompt.seed,
                    image_path=gen.image_path,
                    image_sha256=gen.image_sha256,
                    flagged=any(_is_flagged(det, rule) for det in dets),
                    detections=[(det.label, det.score) for det in dets if _is_flagged(det, rule)],
                    seed_prompt=seed_prompt,
                    loss=float(loss) if isinstance(loss, (int, float)) else None,
                )
            )
        return views, total


def prompt_seeds(store: Store, prompt_set_id: int) -> list[int]:
    with store.session() as session:
        return list(session.scalars(select(Prompt.seed).where(Prompt.prompt_set_id == prompt_set_id).order_by(Prompt.idx)))
