"""Plain values a report or the gate reads: metrics (one per name and scorer), models, runs, rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..store.schema import Run

ASR = "asr"
PRESERVATION_METRICS = ("fid", "clip_score", "preserve_acc")


@dataclass
class MetricView:
    name: str
    value: float
    n: int = 0
    ci_low: float | None = None
    ci_high: float | None = None
    protocol: dict[str, Any] = field(default_factory=dict)
    run_id: int | None = None
    scorer: str = ""  # what produced it: a metric runner id, or ``runner:preset``

    @property
    def runner(self) -> str:
        return self.scorer.split(":", 1)[0]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scorer": self.scorer,
            "value": self.value,
            "n": self.n,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "run_id": self.run_id,
        }


@dataclass
class ModelView:
    """``key`` names the model across audits: the eraser for an erased model, else the model spec."""

    ref: str
    key: str
    fingerprint: str | None = None
    eraser: str | None = None
    concept: str | None = None
    artefact_id: int | None = None
    erase_run_id: int | None = None
    erase_config: dict[str, Any] = field(default_factory=dict)
    parent_model: str | None = None
    # An eraser trained under several seeds is one model per seed: ``key`` ends in "[seed N]" and
    # ``group`` is the key the seeds share (for every other model, its own key).
    seed: int | None = None
    group: str = ""
    erase_runtime: dict[str, Any] = field(default_factory=dict)  # where the erase ran (device, threads, …)

    @property
    def erased(self) -> bool:
        return self.eraser is not None

    @property
    def group_key(self) -> str:
        return self.group or self.key

    @property
    def label(self) -> str:
        return self.key if self.erased else f"{self.key} (not erased)"

    def matches(self, name: str) -> bool:
        """Whether a name a user gives (a gate limit's ``@MODEL``) means this model; an eraser's key
        means every seed it was trained under."""
        return name in {self.key, self.ref, self.eraser, self.label, self.group_key} or (
            self.artefact_id is not None and name == f"artefact:{self.artefact_id}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "ref": self.ref,
            "fingerprint": self.fingerprint,
            "eraser": self.eraser,
            "concept": self.concept,
            "artefact_id": self.artefact_id,
            "erase_run_id": self.erase_run_id,
            "parent_model": self.parent_model,
            "seed": self.seed,
            "group": self.group_key,
            "threads": self.erase_runtime.get("threads"),
        }


@dataclass
class RunInfo:
    id: int
    kind: str
    component: str
    status: str
    model_ref: str | None
    model_fingerprint: str | None
    prompt_set_id: int | None
    prompt_set_name: str | None
    parent_run_id: int | None
    config: dict[str, Any]
    versions: dict[str, Any]
    summary: dict[str, Any]
    created_at: datetime | None
    finished_at: datetime | None
    runtime: dict[str, Any] = field(default_factory=dict)  # where it ran: device, threads, executor (reports/timing.py)

    @classmethod
    def of(cls, run: Run, prompt_set_name: str | None) -> "RunInfo":
        return cls(
            run.id,
            run.kind,
            run.component,
            run.status,
            run.model_ref,
            run.model_fingerprint,
            run.prompt_set_id,
            prompt_set_name,
            run.parent_run_id,
            dict(run.config or {}),
            dict(run.versions or {}),
            dict(run.summary or {}),
            run.created_at,
            run.finished_at,
            dict(run.runtime) if isinstance(run.runtime, dict) else {},
        )


# metric name -> scorer -> value, scorers in the order they were stored (an eval's first scorer first)
Scores = dict[str, dict[str, MetricView]]


def primary(scores: Scores, scorer: str | None = None) -> dict[str, MetricView]:
    """One value per name: ``scorer``'s (exactly, else one of its presets), else the first stored."""
    chosen = {}
    for name, by_scorer in scores.items():
        named = [m for s, m in by_scorer.items() if scorer and s == scorer]
        named = named or [m for s, m in by_scorer.items() if scorer and s.startswith(f"{scorer}:")]
        if named or by_scorer:
            chosen[name] = named[0] if named else next(iter(by_scorer.values()))
    return chosen


@dataclass
class Row:
    """One (model, prompt set, attack or none) cell of the comparison.

    ``asr`` is the plain evaluation (no attack); an attack row has ``asr_before`` (seed prompts) and
    ``asr_after`` (adversarial prompts). Each is the primary scorer's (an attack's first scorer, else an
    eval's first); ``scores`` / ``before_scores`` / ``after_scores`` hold every scorer's number.
    ``gated_asr`` is the number the gate checks: after-attack where an attack exists, else the plain ASR.
    """

    model: ModelView
    prompt_set: str
    attack: str | None = None
    attack_run_id: int | None = None
    scores: Scores = field(default_factory=dict)
    before_scores: Scores = field(default_factory=dict)
    after_scores: Scores = field(default_factory=dict)
    eval_run_ids: list[int] = field(default_factory=list)
    before_run_ids: list[int] = field(default_factory=list)
    after_run_ids: list[int] = field(default_factory=list)
    attack_summary: dict[str, Any] = field(default_factory=dict)
    attack_seconds: float | None = None  # the attack run's wall time (optimisation and both evaluations)
    tier: str | None = None  # the attack's threat tier (attacks.base.TIERS); None for plain rows
    attack_name: str | None = None  # the registered attack, without a transfer's source or a run id

    @property
    def key(self) -> tuple[str, str, str | None]:
        return (self.model.key, self.prompt_set, self.attack)

    @property
    def primary_scorer(self) -> str | None:
        scorers = self.attack_summary.get("scorers")
        return scorers[0] if isinstance(scorers, list) and scorers and isinstance(scorers[0], str) else None

    @property
    def judge(self) -> str | None:
        """The metric id of the detector the attack consulted while it searched (None: no judge)."""
        judge = self.attack_summary.get("judge")
        return judge.get("metric") if isinstance(judge, dict) else None

    @property
    def judge_only(self) -> list[dict[str, Any]] | None:
        found = self.attack_summary.get("judge_only")
        return found if isinstance(found, list) else None

    def role(self, scorer: str) -> str:
        """"judge", "scorer" or "scorer+judge" (a scorer that was also the judge) for an attack's number."""
        runner = scorer.split(":", 1)[0]
        scorers = self.attack_summary.get("scorers")
        is_scorer = not isinstance(scorers, list) or runner in scorers
        is_judge = self.judge is not None and runner == self.judge
        return "scorer+judge" if is_scorer and is_judge else ("judge" if is_judge else "scorer")

    def asr_scorers(self) -> list[str]:
        """The scorers of this row's ASR numbers, in stored order (an attack's: after, then before)."""
        if self.attack is None:
            return list(self.scores.get(ASR, {}))
        return list(dict.fromkeys([*self.after_scores.get(ASR, {}), *self.before_scores.get(ASR, {})]))

    @property
    def metrics(self) -> dict[str, MetricView]:
        return primary(self.scores, self.primary_scorer)

    @property
    def before(self) -> dict[str, MetricView]:
        return primary(self.before_scores, self.primary_scorer)

    @property
    def after(self) -> dict[str, MetricView]:
        return primary(self.after_scores, self.primary_scorer)

    @property
    def asr(self) -> MetricView | None:
        return self.metrics.get(ASR)

    @property
    def asr_before(self) -> MetricView | None:
        return self.before.get(ASR) or _summary_metric(self.attack_summary, "asr_before", self.attack_run_id)

    @property
    def asr_after(self) -> MetricView | None:
        return self.after.get(ASR) or _summary_metric(self.attack_summary, "asr_after", self.attack_run_id)

    @property
    def gated_asr(self) -> MetricView | None:
        return self.asr_after if self.attack else self.asr

    def as_dict(self) -> dict[str, Any]:
        def dump(metric: MetricView | None) -> dict[str, Any] | None:
            return None if metric is None else metric.as_dict()

        def by_scorer(scores: Scores) -> dict[str, float]:
            return {scorer: m.value for scorer, m in scores.get(ASR, {}).items()}

        gated = self.gated_asr
        judge_only = self.judge_only
        return {
            "model": self.model.key,
            "model_ref": self.model.ref,
            "model_fingerprint": self.model.fingerprint,
            "erased": self.model.erased,
            "prompt_set": self.prompt_set,
            "attack": self.attack,
            "attack_run_id": self.attack_run_id,
            "tier": self.tier,
            "gated_asr": None if gated is None else gated.value,
            "gated_scorer": None if gated is None else gated.scorer,
            "asr": dump(self.asr),
            "asr_before": dump(self.asr_before),
            "asr_after": dump(self.asr_after),
            "asr_by_scorer": by_scorer(self.scores) if self.attack is None else {
                "before": by_scorer(self.before_scores), "after": by_scorer(self.after_scores)},
            "judge": self.judge,
            "judge_only_count": None if judge_only is None else len(judge_only),
            "metrics": {name: m.as_dict() for name, m in self.metrics.items() if name != ASR},
            "eval_run_ids": self.eval_run_ids + self.before_run_ids + self.after_run_ids,
            "below_paper_budget": self.attack_summary.get("below_paper_budget"),
        }


@dataclass
class AuditView:
    audit: RunInfo | None
    models: list[ModelView]
    rows: list[Row]
    runs: list[RunInfo]
    problems: list[str] = field(default_factory=list)
    agreements: list[Any] = field(default_factory=list)  # reports/agreement.py JudgeAgreement, per evaluation and pooled

    @property
    def audit_run_id(self) -> int | None:
        return None if self.audit is None else self.audit.id

    @property
    def audited_models(self) -> list[ModelView]:
        """The models limits cover: the erased ones when the audit erased any (the base is the reference)."""
        erased = [model for model in self.models if model.erased]
        return erased or list(self.models)

    @property
    def asr_rows(self) -> list[Row]:
        return [row for row in self.rows if row.gated_asr is not None]

    def as_dict(self) -> dict[str, Any]:
        return {
            "audit_run_id": self.audit_run_id,
            "audit_status": None if self.audit is None else self.audit.status,
            "models": [model.as_dict() for model in self.models],
            "rows": [row.as_dict() for row in self.rows],
            "run_ids": [run.id for run in self.runs],
            "problems": list(self.problems),
            "judge_agreement": [found.as_dict() for found in self.agreements],
        }


def _summary_metric(summary: dict[str, Any], key: str, run_id: int | None) -> MetricView | None:
    value = summary.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return MetricView(ASR, float(value), run_id=run_id)
    return None


