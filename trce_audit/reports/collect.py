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

from typing import Iterable

from sqlalchemy import select

from ..attacks.base import attack_tier
from ..errors import StoreError
from ..store import Store
from ..store.schema import Metric, Run
from .agreement import judges_agreement
from .image_views import ImageView, counted_classes, flag_rule, images, prompt_seeds
from .linking import Reader, latest_audit_id, linked_run_ids, models_of
from .timing import recorded_seconds
from .views import ASR, PRESERVATION_METRICS, AuditView, MetricView, ModelView, Row, RunInfo, Scores

# What readers of the store (report, gate, api) import from here; the pieces live in views, linking
# and image_views.
__all__ = [
    "ASR", "PRESERVATION_METRICS", "AuditView", "ImageView", "MetricView", "ModelView", "Row", "RunInfo", "Scores",
    "collect", "counted_classes", "flag_rule", "images", "latest_audit_id", "linked_run_ids", "prompt_seeds",
]


def _metrics_by_run(store: Store, run_ids: Iterable[int]) -> dict[int, Scores]:
    found: dict[int, Scores] = {}
    with store.session() as session:
        query = select(Metric).where(Metric.run_id.in_(list(run_ids))).order_by(Metric.id)
        for m in session.scalars(query):
            # (run, name, scorer) is unique: each scorer's number once, in the order they were stored
            found.setdefault(m.run_id, {}).setdefault(m.name, {})[m.scorer or ""] = MetricView(
                m.name, m.value, m.n, m.ci_low, m.ci_high, dict(m.protocol or {}), m.run_id, m.scorer or ""
            )
    return found


def collect(store: Store, *, audit_id: int | None = None, run_ids: Iterable[int] | None = None) -> AuditView:
    """The audit ``audit_id`` (default: the latest audit), or exactly the runs ``run_ids`` (audits expand)."""
    reader = Reader(store)
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
    models = models_of(store, reader, refs)

    rows: dict[tuple[str, str, str | None], Row] = {}
    for run in plain_evals:
        if run.id not in complete_evals or not run.model_ref:
            continue
        model = models[run.model_ref]
        name = reader.set_names.get(run.prompt_set_id, f"set:{run.prompt_set_id}")
        row = rows.setdefault((model.key, name, None), Row(model, name))
        _merge(row.scores, metrics.get(run.id, {}), problems, f"{model.key} on {name}")
        row.eval_run_ids.append(run.id)

    for run in direct:
        if run.kind != "attack" or not run.model_ref:
            continue
        model = models[run.model_ref]
        seed_set = reader.set_names.get(run.prompt_set_id) if run.prompt_set_id else None
        summary = dict(run.summary or {})
        label = summary.get("attack") if isinstance(summary.get("attack"), str) else run.component
        # runs stored before tiers existed carry none: the registered attack's own tier stands in
        tier = summary.get("tier") if isinstance(summary.get("tier"), str) else attack_tier(str(label))
        name = str(label)
        if isinstance(summary.get("transfer_from"), dict):  # searched on another model's text encoder
            label = f"{label} (transfer from {summary['transfer_from'].get('spec')})"
        row = Row(model, seed_set or "", attack=label, attack_run_id=run.id, attack_summary=summary, tier=tier, attack_name=name)
        # a run stored without its seconds is not timed ("–"): its created-to-finished span counts every
        # pause before a resumption (a Ring-A-Bell search killed overnight read 124 minutes)
        row.attack_seconds = recorded_seconds(run.kind, run.runtime or {}, summary)
        named_after, named_before = summary.get("eval_run_after"), summary.get("eval_run_before")
        # a weights-tier attack's intermediate checkpoints: points of its curve, neither before nor after
        between = {p.get("eval_run") for p in summary.get("curve") or [] if isinstance(p, dict)} - {named_after, named_before}
        for eval_run in attack_evals.get(run.id, []):
            if eval_run.id not in complete_evals or eval_run.id in between:
                continue
            if eval_run.id in (named_after, named_before):
                is_after = eval_run.id == named_after
            else:
                is_after = reader.adversarial_sets.get(eval_run.prompt_set_id) == run.id
            target, ids = (row.after_scores, row.after_run_ids) if is_after else (row.before_scores, row.before_run_ids)
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
    return AuditView(reader.info(audit) if audit else None, model_list, ordered, run_infos, problems, judges_agreement(store, ordered))


def _merge(target: Scores, new: Scores, problems: list[str], where: str) -> None:
    for name, by_scorer in new.items():
        held = target.setdefault(name, {})
        for scorer, metric in by_scorer.items():
            old = held.get(scorer)
            if old is not None and abs(old.value - metric.value) > 1e-12:
                label = f"{name} ({scorer})" if scorer else name
                problems.append(
                    f"{where}: {label} measured twice ({old.value:.4f} in run {old.run_id}, "
                    f"{metric.value:.4f} in run {metric.run_id}); showing run {metric.run_id}"
                )
            held[scorer] = metric


