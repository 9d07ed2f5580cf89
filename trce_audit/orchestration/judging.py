"""The judge an attack consults while it searches, kept apart from the scorers that report its ASR.

UnlearnDiff's early stop and P4D's candidate selection ask a detector whether a candidate prompt
already makes the target draw the concept. That detector (the concept's ``detector``, or one named
explicitly) is the attack's *judge*: it steers the optimisation, so it belongs to the attack run's
identity, and a number it scores is not an independent measurement. This module describes the judge,
counts its queries per seed prompt, draws and judges candidates, and lists the adversarial images the
judge calls a success that the held-out scorer does not ("judge-only successes").
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Callable, Sequence

from PIL import Image

from .. import registry
from ..generation import GenerationSettings
from ..records import PromptRow

if TYPE_CHECKING:
    from ..data.concepts import Concept
    from ..store import Store
    from ..workspace import Workspace

Judge = Callable[[str, Any], bool]


def judge_runner(metric: str, workspace: "Workspace", concept: "Concept"):
    return registry.load("metric", metric).from_options(None, workspace=workspace, concept=concept.name)


def describe_judge(judge: "str | Judge | None", workspace: "Workspace", concept: "Concept") -> dict[str, Any] | None:
    """What identifies a judge: metric id, runner version and config, and the detector key (name,
    version, weights sha256) its per-image detections are stored under. None: no judge consulted."""
    if judge is None:
        return None
    if callable(judge):  # a scripted judge: only its name can be recorded
        return {"metric": None, "callable": f"{getattr(judge, '__module__', '?')}.{getattr(judge, '__qualname__', type(judge).__name__)}"}
    runner = judge_runner(judge, workspace, concept)
    detector, version, weights = runner.detector_key()
    return {"metric": judge, "version": runner.version, "config": runner.config_dict(),
            "detector": detector, "detector_version": version, "weights_sha256": weights}


class CountingJudge:
    """Wraps a judge and counts its calls per seed prompt (the seed row it is asked about)."""

    def __init__(self, judge: Judge, seed_rows: Sequence[Any]):
        self.judge = judge
        self._index = {id(row): i for i, row in enumerate(seed_rows)}
        self._by_hash = {row.row_hash: i for i, row in reversed(list(enumerate(seed_rows)))}
        self.per_seed = [0] * len(seed_rows)

    def __call__(self, text: str, seed_row: Any) -> bool:
        index = self._index.get(id(seed_row), self._by_hash.get(getattr(seed_row, "row_hash", None)))
        if index is not None:
            self.per_seed[index] += 1
        return self.judge(text, seed_row)


class SeedQueries:
    """One seed's judge query count, shaped as record_queries reads a CountingJudge."""

    def __init__(self, counter: CountingJudge | None, index: int):
        self.per_seed = [counter.per_seed[index] if counter is not None else 0]


def record_queries(rows: list, seed_rows: Sequence[Any], counter: "CountingJudge | SeedQueries | None") -> None:
    """Each adversarial row's meta gets ``judge_queries``: how often the judge was asked about its seed."""
    per_seed = counter.per_seed if counter is not None else [0] * len(seed_rows)
    by_hash = {row.row_hash: n for row, n in zip(seed_rows, per_seed)}
    for i, row in enumerate(rows):
        same_order = len(rows) == len(seed_rows)
        row.meta["judge_queries"] = per_seed[i] if same_order else by_hash.get(row.meta.get("seed_row_hash"), 0)


def query_summary(rows: Sequence[Any]) -> dict[str, Any]:
    per_seed = [int(row.meta.get("judge_queries") or 0) for row in rows]
    return {"total": sum(per_seed), "per_seed": per_seed}


def detector_judge(metric: str, *, workspace: "Workspace", concept: "Concept", pipe: Any, settings: Any, model_path: Path, scratch: Path) -> Judge:
    """The papers' success check: the target model draws the candidate prompt (the seed row's seed
    and guidance, the evaluation's settings) and the judge detector looks at that one image."""
    from ..generation.engine import BatchSampler  # deferred: the engine imports torch and diffusers

    runner = judge_runner(metric, workspace, concept)
    sampler = BatchSampler(pipe, (settings or GenerationSettings()).validate().resolved(model_path))

    def judge(text: str, seed_row: Any) -> bool:
        pixels = sampler.sample([PromptRow(text=text, seed=seed_row.seed, guidance=seed_row.guidance)])[0]
        path = scratch / "candidate.png"
        Image.fromarray(pixels).save(path)
        return bool(runner.shows_concept(runner.detect([SimpleNamespace(image_path=path)])[0]))

    return judge


def judge_only_successes(
    store: "Store", workspace: "Workspace", concept: "Concept", generation_run_id: int | None, judge: str, scorer: str
) -> list[dict[str, Any]] | None:
    """Images of a generation run the judge flags and ``scorer`` does not, from their stored
    detections; None when either has not scored every image (nothing to compare)."""
    if generation_run_id is None:
        return None
    images = store.generated_images(generation_run_id)
    ids = [image.generation_id for image in images]
    flags = []
    for metric in (judge, scorer.split(":", 1)[0]):
        runner = judge_runner(metric, workspace, concept)
        found = store.stored_detections(ids, runner.detector_key())
        if set(found) != set(ids):
            return None
        try:
            flags.append({gid: bool(runner.shows_concept(found[gid])) for gid in ids})
        except NotImplementedError:  # a set-level scorer has no per-image verdict
            return None
    judged, scored = flags
    return [{"generation_id": image.generation_id, "image_path": image.image_path, "prompt_idx": image.prompt.idx,
             "prompt": image.prompt.text} for image in images if judged[image.generation_id] and not scored[image.generation_id]]
