"""One attack run once its inputs are resolved and its run is started: what it attacks with what, and
how it measures (a child eval run per prompt set) and summarises ASR."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..errors import ConfigError
from ..generation import GenerationSettings
from . import eval_runs, judging  # called through their modules: tests replace evaluate and the judge there
from .asr import asr, asr_by_scorer

if TYPE_CHECKING:
    from ..data.concepts import Concept
    from ..models.resolve import ModelRef
    from ..store import Store
    from ..workspace import Workspace


@dataclass
class AttackJob:
    """Everything one attack run needs once its inputs are resolved and its run is started."""

    store: "Store"
    workspace: "Workspace"
    attack: Any
    run_id: int
    model: str
    target: "ModelRef"
    original: "ModelRef | None"
    concept: "Concept"
    seed_set_id: int
    limit: int | None
    scorers: list[str]
    eval_metrics: list[str]  # the scorers, then the judge's metric when it is not one of them
    judge: "str | Callable[[str, Any], bool] | None"
    judge_info: dict[str, Any] | None
    as_published: bool
    settings: Any
    allow_pickle: bool
    device: str
    progress: Callable[[int, int, str], None] | None
    executor: Any = None
    search: "ModelRef | None" = None  # a transfer's search model (its text encoder); None: the target
    runtime: dict[str, Any] = field(default_factory=dict)  # where this call's search ran; {} when none ran

    def seed_rows(self) -> list:
        rows = self.store.prompt_rows(self.seed_set_id)
        rows = rows[: self.limit] if self.limit is not None else rows
        if not rows:
            raise ConfigError(f"prompt set {self.seed_set_id} has no prompts to attack")
        return rows

    def measure(self, set_id: int, limit: int | None, model: str | None = None) -> dict[str, Any]:
        """ASR (and any other requested metric) of a prompt set on the target (or on ``model``, a
        weights-tier attack's checkpoint), as a child eval run."""
        return eval_runs.evaluate(
            self.store, self.workspace, model=model or self.model, prompts=set_id, metrics=self.eval_metrics,
            settings=GenerationSettings.from_value(self.settings), limit=limit, concept=self.concept.name,
            parent_run_id=self.run_id, allow_pickle=self.allow_pickle,
            **({"executor": self.executor} if self.executor is not None else {}),
        )

    def summary(self, n_prompts: int) -> dict[str, Any]:
        return {
            "concept": self.concept.name,
            "seed_set_id": self.seed_set_id,
            "target_model": {"spec": self.model, "fingerprint": self.target.fingerprint},
            "original_model": {"spec": self.original.spec, "fingerprint": self.original.fingerprint} if self.original else None,
            "n_prompts": n_prompts,
            "judge": self.judge_info,
            "scorers": self.scorers,
            "eval_metrics": self.eval_metrics,
            "as_published": self.as_published,
            **({"transfer_from": {"spec": self.search.spec, "fingerprint": self.search.fingerprint}} if self.search else {}),
        }

    def scores(self, before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any]:
        """Headline ASR (first scorer), ASR under every scorer and the judge, and judge-only successes."""
        judge_id = self.judge if isinstance(self.judge, str) else None
        judge_only = None
        if judge_id and self.scorers[0] != judge_id:
            judge_only = judging.judge_only_successes(self.store, self.workspace, self.concept, after.get("generation_run_id"),
                                                      judge_id, self.scorers[0])
        return {
            "asr_before": asr(before, self.scorers[0]) if before is not None else None,
            "asr_after": asr(after, self.scorers[0]),
            "asr_by_scorer": asr_by_scorer(before, after),
            "judge_only": judge_only,
            "judge_only_count": None if judge_only is None else len(judge_only),
        }
