"""An attack's seed prompts as executor calls: one seed a shard, optimised on a worker that keeps the
loaded target (and original) pipeline and judge between seeds; the driver stores each seed's row as
it comes back, so a killed run resumes at the next seed and any number of workers gives the serial
run's set (a seed's search depends on its own index only: ``Attack.run``'s contract).

Only prompt-tier attacks go out: their rows are text. An embedding- or weights-tier attack writes
files its rows refer to (a learned embedding, checkpoints) that belong in the driver's workspace, and
its seeds share one search, so it runs in the driver's process whatever the executor.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..attacks.base import AttackContext
from ..generation import GenerationSettings
from ..hashing import hash_obj
from ..models.determinism import deterministic, unrepeatable_ops, where_it_ran
from ..models.resolve import load_pipeline
from . import judging  # called through its module: tests replace detector_judge there

if TYPE_CHECKING:
    from ..data.concepts import Concept
    from ..models.resolve import ModelRef
    from ..workspace import Workspace
    from .attack_job import AttackJob


def distributable(attack_obj: Any, executor: Any) -> bool:
    return executor is not None and attack_obj.tier == "prompt"


@dataclass(frozen=True)
class AttackSeedJob:
    attack: Any
    target: "ModelRef"
    original: "ModelRef | None"
    concept: "Concept"
    seed_rows: tuple
    judge: Any  # a metric id, a callable judge or None
    settings: Any  # the generation settings the judge draws with
    workspace: "Workspace"
    corpus: tuple[str, ...]
    device: str
    allow_pickle: bool

    @property
    def cache_key(self) -> tuple:
        # what the kept state (pipelines, judge) depends on; the attack and its seeds come with each call
        judge = self.judge if isinstance(self.judge, (str, type(None))) else f"callable:{id(self.judge)}"
        settings = hash_obj(self.settings if isinstance(self.settings, (dict, type(None))) else vars(self.settings))
        original = self.original.fingerprint if self.original else None
        return ("attack", self.target.fingerprint, original, judge, self.concept.name, settings, self.device)

    def setup(self) -> Any:
        target = load_pipeline(self.target, device=self.device, allow_pickle=self.allow_pickle)
        original = load_pipeline(self.original, device=self.device, allow_pickle=self.allow_pickle) if self.original else None
        judge = self.judge
        if isinstance(judge, str):
            scratch = Path(tempfile.mkdtemp(prefix="trce-audit-judge-"))  # the judge's images, on this worker
            judge = judging.detector_judge(judge, workspace=self.workspace, concept=self.concept, pipe=target,
                                           settings=GenerationSettings.from_value(self.settings) or GenerationSettings(),
                                           model_path=Path(self.target.path), scratch=scratch)
        return target, original, judge

    def run(self, state: Any, indices: list[int]) -> tuple[list[tuple[int, Any, int]], dict[str, Any], dict[str, Any]]:
        """[(seed index, adversarial row, judge queries for it)], the search's run-level stats and
        where it ran (models/determinism.where_it_ran)."""
        target, original, judge = state
        rows = list(self.seed_rows)
        counter = judging.CountingJudge(judge, rows) if judge is not None else None
        found: list[tuple[int, Any]] = []
        context = AttackContext(device=self.device, judge=counter, corpus=list(self.corpus),
                                on_seed=lambda index, row: found.append((index, row)), model_dir=Path(self.target.path),
                                generation=GenerationSettings.from_value(self.settings))
        with deterministic() as determinism:
            result = self.attack.run(target, self.concept, rows, original_pipe=original, context=context, indices=list(indices))
        found_rows = [(i, row, counter.per_seed[i] if counter else 0) for i, row in found]
        return found_rows, {**result.stats, **unrepeatable_ops(determinism)}, where_it_ran()


def optimise_on_executor(job: "AttackJob", seed_rows: list, missing: list[int], corpus: list[str],
                         store_seed: Callable[[int, Any, int], None]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Optimise the ``missing`` seeds one shard each on ``job.executor``; ``store_seed(index, row,
    judge_queries)`` as each returns. Returns the run-level stats and the runtime (where it ran) of
    the lowest seed's call (the stats are the same for every call; taking one fixed seed's keeps the
    record independent of timing)."""
    work = AttackSeedJob(job.attack, job.target, job.original, job.concept, tuple(seed_rows),
                         job.judge, job.settings, job.workspace, tuple(corpus),
                         getattr(job.executor, "device", job.device), job.allow_pickle)  # ray: the actor's own cuda
    stats: dict[str, Any] = {}
    runtime: dict[str, Any] = {}
    first = None
    done = len(seed_rows) - len(missing)
    for shard, (found, shard_stats, shard_runtime) in job.executor.map_unordered(work, [[i] for i in missing]):
        for index, row, queries in found:
            store_seed(index, row, queries)
        if first is None or missing[shard] < first:
            first, stats, runtime = missing[shard], dict(shard_stats), dict(shard_runtime)
        done += 1
        if job.progress:
            job.progress(done, len(seed_rows), f"{job.attack.name} seeds")
    return stats, runtime
