"""Read an audit (or a chosen list of runs) out of the store into plain values for the report and the gate.

Only this module knows how runs link up:
- an "audit" run is the parent of the runs it triggered; because runs are deduplicated by identity a
  reused run keeps its first parent, so any run ids listed in the audit's summary (keys ending in
  ``run_id`` / ``run_ids``) count as its children too;
- an "erase" run owns an artefact (``artefact.run_id``) whose meta names the eraser and concept;
- an "attack" run's eval runs are its children plus the run ids in its summary; ``eval_run_after`` /
  ``eval_run_before`` in its summary say which is which (a replay has only "after"), else the one over
  the adversarial prompt set (``prompt_set.run_id`` = the attack run) is "after", the others "before";
- an "eval" run carries the metrics; its images are its own generations or those of the run named by
  ``summary.generation_run_id`` or of its "generate" children.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import select

from ..errors import StoreError
from ..store import Store
from ..store.schema import Artefact, Detection, Generation, Metric, Prompt, PromptSet, Run

ASR = "asr"
PRESERVATION_METRICS = ("fid", "clip_score", "preserve_acc")
SEED_PROMPT_KEYS = ("seed_prompt", "seed_text", "source_prompt", "original_prompt")
NO_DETECTION = "(none)"  # the label metric runners store for an image with no hit


@dataclass
class MetricView:
    name: str
    value: float
    n: int = 0
    ci_low: float | None = None
    ci_high: float | None = None
    protocol: dict[str, Any] = field(default_factory=dict)
    run_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
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

    @property
    def erased(self) -> bool:
        return self.eraser is not None

    @property
    def label(self) -> str:
        return self.key if self.erased else f"{self.key} (not erased)"

    def matches(self, name: str) -> bool:
        return name in {self.key, self.ref, self.eraser, self.label} or (
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
        )


@dataclass
class Row:
    """One (model, prompt set, attack or none) cell of the comparison.

    ``asr`` is the plain evaluation (no attack); an attack row has ``asr_before`` (seed prompts) and
    ``asr_after`` (adversarial prompts). ``gated_asr`` is the number the gate checks: after-attack where an
    attack exists, else the plain ASR.
    """

    model: ModelView
    prompt_set: str
    attack: str | None = None
    attack_run_id: int | None = None
    metrics: dict[str, MetricView] = field(default_factory=dict)
    before: dict[str, MetricView] = field(default_factory=dict)
    after: dict[str, MetricView] = field(default_factory=dict)
    eval_run_ids: list[int] = field(default_factory=list)
    before_run_ids: list[int] = field(default_factory=list)
    after_run_ids: list[int] = field(default_factory=list)
    attack_summary: dict[str, Any] = field(default_factory=dict)
    attack_seconds: float | None = None  # the attack run's wall time (optimisation and both evaluations)

    @property
    def key(self) -> tuple[str, str, str | None]:
        return (self.model.key, self.prompt_set, self.attack)

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

        gated = self.gated_asr
        return {
            "model": self.model.key,
            "model_ref": self.model.ref,
            "model_fingerprint": self.model.fingerprint,
            "erased": self.model.erased,
            "prompt_set": self.prompt_set,
            "attack": self.attack,
            "attack_run_id": self.attack_run_id,
            "gated_asr": None if gated is None else gated.value,
            "asr": dump(self.asr),
            "asr_before": dump(self.asr_before),
            "asr_after": dump(self.asr_after),
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
        }


def _summary_metric(summary: dict[str, Any], key: str, run_id: int | None) -> MetricView | None:
    value = summary.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return MetricView(ASR, float(value), run_id=run_id)
    return None


def linked_run_ids(summary: Any) -> set[int]:
    """Run ids a summary names under keys ending in ``run_id`` / ``run_ids`` or starting with ``eval_run``."""
    found: set[int] = set()

    def ids_in(value: Any) -> Iterable[int]:
        if isinstance(value, bool):
            return ()
        if isinstance(value, int):
            return (value,)
        if isinstance(value, (list, tuple)):
            return [item for sub in value for item in ids_in(sub)]
        if isinstance(value, dict):
            return [item for sub in value.values() for item in ids_in(sub)]
        return ()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                if str(key).endswith(("run_id", "run_ids")) or str(key).startswith("eval_run"):
                    found.update(ids_in(sub))
                else:
                    walk(sub)
        elif isinstance(value, list):
            for sub in value:
                walk(sub)

    walk(summary)
    return found


def latest_audit_id(store: Store) -> int:
    audits = store.list_runs(kind="audit", limit=1)
    if not audits:
        raise StoreError("no audit run in the store; run `trce-audit audit` first or pass --runs")
    return audits[0].id


class _Reader:
    """Loads runs with their prompt-set names once per collection."""

    def __init__(self, store: Store):
        self.store = store
        self.runs: dict[int, Run] = {}
        self.set_names: dict[int, str] = {}
        self.adversarial_sets: dict[int, int] = {}  # prompt set id -> attack run id

    def load(self, run_ids: Iterable[int]) -> list[Run]:
        wanted = [rid for rid in set(run_ids) if rid not in self.runs]
        if wanted:
            with self.store.session() as session:
                for run in session.scalars(select(Run).where(Run.id.in_(wanted))):
                    self.runs[run.id] = run
                set_ids = {run.prompt_set_id for run in self.runs.values() if run.prompt_set_id is not None}
                for prompt_set in session.scalars(select(PromptSet).where(PromptSet.id.in_(set_ids))):
                    self.set_names[prompt_set.id] = prompt_set.name
                    if prompt_set.run_id is not None:
                        self.adversarial_sets[prompt_set.id] = prompt_set.run_id
        return [self.runs[rid] for rid in run_ids if rid in self.runs]

    def children(self, run_id: int) -> list[int]:
        with self.store.session() as session:
            return list(session.scalars(select(Run.id).where(Run.parent_run_id == run_id)))

    def linked(self, run: Run) -> set[int]:
        return (set(self.children(run.id)) | linked_run_ids(run.summary or {})) - {run.id}

    def info(self, run: Run) -> RunInfo:
        return RunInfo.of(run, self.set_names.get(run.prompt_set_id) if run.prompt_set_id else None)


def _metrics_by_run(store: Store, run_ids: Iterable[int]) -> dict[int, dict[str, MetricView]]:
    found: dict[int, dict[str, MetricView]] = {}
    with store.session() as session:
        query = select(Metric).where(Metric.run_id.in_(list(run_ids))).order_by(Metric.id)
        for m in session.scalars(query):
            if ":" in (m.scorer or ""):
                continue  # a protocol preset's variant (nudenet:rece); the runner's own number stands for the run
            # A later metric of the same name on the same run supersedes an earlier one (a re-measure).
            found.setdefault(m.run_id, {})[m.name] = MetricView(
                m.name, m.value, m.n, m.ci_low, m.ci_high, dict(m.protocol or {}), m.run_id
            )
    return found


def _models(store: Store, reader: _Reader, refs: dict[str, str | None]) -> dict[str, ModelView]:
    """ModelViews for the model specs the runs used, matched to artefacts of erase runs where they are one."""
    with store.session() as session:
        artefacts = list(session.scalars(select(Artefact).order_by(Artefact.id)))
    by_id = {a.id: a for a in artefacts}
    views: dict[str, ModelView] = {}
    for ref, fingerprint in refs.items():
        artefact = None
        if ref.startswith("artefact:") and ref.split(":", 1)[1].isdigit():
            artefact = by_id.get(int(ref.split(":", 1)[1]))
        artefact = artefact or next((a for a in artefacts if a.path == ref), None)
        if artefact is None and fingerprint:
            artefact = next((a for a in artefacts if a.sha256 == fingerprint), None)
        meta = dict(artefact.meta or {}) if artefact else {}
        erase_run = reader.load([artefact.run_id])[0] if artefact and artefact.run_id else None
        eraser = meta.get("eraser") or (erase_run.component if erase_run is not None else None)
        stages = meta.get("stages") or (meta.get("stats") or {}).get("stages")
        # An eraser run with only some of its stages (TRCE stage 1 alone) is a different model to compare.
        key = f"{eraser}[stage {','.join(map(str, stages))}]" if eraser and stages and len(stages) == 1 else eraser
        views[ref] = ModelView(
            ref=ref,
            key=str(key) if eraser else ref,
            fingerprint=fingerprint or (artefact.sha256 if artefact else None),
            eraser=str(eraser) if eraser else None,
            concept=meta.get("concept"),
            artefact_id=artefact.id if artefact else None,
            erase_run_id=artefact.run_id if artefact else None,
            erase_config=dict(erase_run.config or {}) if erase_run is not None else {},
            parent_model=artefact.parent_model if artefact else None,
        )
    # Two erased models with the same eraser (different configs) keep distinct keys.
    seen: dict[str, int] = {}
    for view in views.values():
        seen[view.key] = seen.get(view.key, 0) + 1
    for view in views.values():
        if seen[view.key] > 1 and view.artefact_id is not None:
            view.key = f"{view.key}#{view.artefact_id}"
    return views


def collect(store: Store, *, audit_id: int | None = None, run_ids: Iterable[int] | None = None) -> AuditView:
    """The audit ``audit_id`` (default: the latest audit), or exactly the runs ``run_ids`` (audits expand)."""
    reader = _Reader(store)
    audit: Run | None = None
    if run_ids is not None:
        roots = list(dict.fromkeys(run_ids))
        if not roots:
            raise StoreError("--runs names no run ids")
        loaded = reader.load(roots)
        missing = sorted(set(roots) - {run.id for run in loaded})
        if missing:
            raise StoreError(f"run {missing[0]} does not exist")
        audits = [run for run in loaded if run.kind == "audit"]
        audit = audits[0] if len(audits) == 1 and len(loaded) == 1 else None
    else:
        audit_id = audit_id if audit_id is not None else latest_audit_id(store)
        loaded = reader.load([audit_id])
        if not loaded:
            raise StoreError(f"run {audit_id} does not exist")
        audit = loaded[0]
        if audit.kind != "audit":
            raise StoreError(f"run {audit_id} is not an audit (kind {audit.kind})")
        roots = [audit_id]

    # Expand audits into what they ran, and attacks into their eval runs.
    direct: list[Run] = []
    for run in reader.load(roots):
        direct.extend(reader.load(sorted(reader.linked(run))) if run.kind == "audit" else [run])
    direct = list({run.id: run for run in direct}.values())
    attack_evals: dict[int, list[Run]] = {}
    for run in direct:
        if run.kind == "attack":
            attack_evals[run.id] = [r for r in reader.load(sorted(reader.linked(run))) if r.kind == "eval"]
    selected_attack_evals = {run.id for runs in attack_evals.values() for run in runs}

    def is_plain(run: Run) -> bool:
        if run.kind != "eval" or (audit is None and run.id in selected_attack_evals):
            return False
        if audit is None:  # runs chosen by hand: an eval is plain unless an attack chosen with it owns it
            return True
        parent = reader.runs.get(run.parent_run_id) if run.parent_run_id is not None else None
        return run.prompt_set_id not in reader.adversarial_sets and not (parent is not None and parent.kind == "attack")

    plain_evals = [run for run in direct if is_plain(run)]
    evals = {run.id: run for run in plain_evals}
    for runs in attack_evals.values():
        evals.update({run.id: run for run in runs})
    problems = [
        f"{run.kind} run {run.id} ({run.component}) is {run.status}" + (f": {run.error}" if run.error else "")
        for run in [*direct, *evals.values()]
        if run.status != "complete"
    ]
    if audit is not None and audit.status != "complete":
        problems.insert(0, f"audit run {audit.id} is {audit.status}" + (f": {audit.error}" if audit.error else ""))
    problems = list(dict.fromkeys(problems))
    complete_evals = {rid: run for rid, run in evals.items() if run.status == "complete"}
    metrics = _metrics_by_run(store, complete_evals)

    refs: dict[str, str | None] = {}
    for run in [*direct, *evals.values()]:
        if run.kind in ("eval", "attack") and run.model_ref:
            refs.setdefault(run.model_ref, run.model_fingerprint)
    models = _models(store, reader, refs)

    rows: dict[tuple[str, str, str | None], Row] = {}
    for run in plain_evals:
        if run.id not in complete_evals or not run.model_ref:
            continue
        model = models[run.model_ref]
        name = reader.set_names.get(run.prompt_set_id, f"set:{run.prompt_set_id}")
        row = rows.setdefault((model.key, name, None), Row(model, name))
        _merge(row.metrics, metrics.get(run.id, {}), problems, f"{model.key} on {name}")
        row.eval_run_ids.append(run.id)

    for run in direct:
        if run.kind != "attack" or not run.model_ref:
            continue
        model = models[run.model_ref]
        seed_set = reader.set_names.get(run.prompt_set_id) if run.prompt_set_id else None
        summary = dict(run.summary or {})
        label = summary.get("attack") if isinstance(summary.get("attack"), str) else run.component
        row = Row(model, seed_set or "", attack=label, attack_run_id=run.id, attack_summary=summary)
        if run.created_at is not None and run.finished_at is not None:
            row.attack_seconds = (run.finished_at - run.created_at).total_seconds()
        named_after, named_before = summary.get("eval_run_after"), summary.get("eval_run_before")
        for eval_run in attack_evals.get(run.id, []):
            if eval_run.id not in complete_evals:
                continue
            if eval_run.id in (named_after, named_before):
                is_after = eval_run.id == named_after
            else:
                is_after = reader.adversarial_sets.get(eval_run.prompt_set_id) == run.id
            target, ids = (row.after, row.after_run_ids) if is_after else (row.before, row.before_run_ids)
            _merge(target, metrics.get(eval_run.id, {}), problems, f"{run.component} on {model.key}")
            ids.append(eval_run.id)
            if not is_after and not row.prompt_set:
                row.prompt_set = reader.set_names.get(eval_run.prompt_set_id, "")
        row.prompt_set = row.prompt_set or "?"
        key = row.key
        if key in rows:
            row.attack = f"{label}#{run.id}"
        rows[row.key] = row

    used = {row.model.ref for row in rows.values()}
    model_list = sorted((m for m in models.values() if m.ref in used), key=lambda m: (m.erased, m.key))
    run_infos = [reader.info(run) for run in sorted(reader.runs.values(), key=lambda r: r.id)]
    ordered = sorted(rows.values(), key=lambda r: ([m.key for m in model_list].index(r.model.key), r.prompt_set, r.attack or ""))
    return AuditView(reader.info(audit) if audit else None, model_list, ordered, run_infos, problems)


def _merge(target: dict[str, MetricView], new: dict[str, MetricView], problems: list[str], where: str) -> None:
    for name, metric in new.items():
        if name in target and abs(target[name].value - metric.value) > 1e-12:
            problems.append(
                f"{where}: {name} measured twice ({target[name].value:.4f} in run {target[name].run_id}, "
                f"{metric.value:.4f} in run {metric.run_id}); showing run {metric.run_id}"
            )
        target[name] = metric


# ----------------------------------------------------------------------------------- images


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
    """As the ASR counts: a counted class scoring above the threshold (any hit when the rule is unknown)."""
    if detection.label == NO_DETECTION:
        return False
    if rule["detector"] and detection.detector != rule["detector"]:
        return False
    if rule["classes"] and detection.label not in rule["classes"]:
        return False
    threshold = rule["threshold"]
    return detection.score > float(threshold) if threshold is not None else detection.score > 0


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
