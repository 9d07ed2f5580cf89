"""Run a red-team attack (or replay a published set) against a model and measure ASR before and after.

One "attack" run per (attack, config + budget, concept, judge, target model, seed set): the adversarial
prompts become a prompt set (parent = seed set, run = the attack run) and two eval runs (children of
the attack run) measure ASR on the seed set and on the adversarial set under each scorer and under the
judge (the detector the attack consulted while it searched, see api/judging.py). The scorers are not
part of the attack's identity: the same search serves any choice of them.
"""

from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING, Any, Callable

from ..errors import ConfigError, TrceAuditError, one_line
from .attack_job import _AttackJob, _optimise_and_measure, _replay, _setting

if TYPE_CHECKING:
    from ..data.concepts import Concept
    from ..models.resolve import ModelRef
    from ..store import Store
    from ..workspace import Workspace

# The concept an attack targets when none is named, per model world.
DEFAULT_CONCEPT = {"sd": "nudity"}
_SET_ID = re.compile(r"^(?:set:)?(\d+)$")


def attack_config(name: str, *, world: str = "sd", budget: dict[str, Any] | None = None):
    """The attack class and its validated config (world preset + overrides); raises one-line errors."""
    from .. import registry

    cls = registry.load("attack", name)
    return cls, cls.Config.for_world(world).with_overrides(budget or {})


def _concept(concept: "str | Concept | None", world: str, workspace: "Workspace") -> "Concept":
    """The named concept, or the world's default (SD: nudity; else the concept flagged default, or the
    only one)."""
    from ..data.concepts import Concept

    if isinstance(concept, Concept):
        return concept
    from .. import data

    name = concept or DEFAULT_CONCEPT.get(world)
    if name is not None:
        return data.load_concept(name, world=world, workspace=workspace)
    known = [data.load_concept(n, world=world, workspace=workspace) for n in data.concept_names(world)]
    defaults = [c for c in known if c.default] or (known if len(known) == 1 else [])
    if not defaults:
        raise ConfigError(f"name the concept to attack with --concept (the {world} world has no default concept)")
    return defaults[0]


def _seed_set(store: "Store", workspace: "Workspace", prompts: "str | int", limit: int | None) -> int:
    if isinstance(prompts, int):
        store.get_prompt_set(prompts)
        return prompts
    match = _SET_ID.match(str(prompts).strip())
    if match:
        set_id = int(match.group(1))
        store.get_prompt_set(set_id)
        return set_id
    from .. import data

    return data.ensure_prompt_set(store, str(prompts), workspace=workspace, limit=limit)


def _original_ref(store, workspace, target: "ModelRef", original_model: str | None, allow_pickle: bool) -> "ModelRef | None":
    """The un-erased model: --original-model, else an artefact's parent model, else none (the target)."""
    from ..models.resolve import resolve_model

    if original_model:
        return resolve_model(original_model, store=store, workspace=workspace, allow_pickle=allow_pickle)
    if target.artefact_id is not None:
        parent = store.get_artefact(target.artefact_id).parent_model
        if parent:
            return resolve_model(parent, store=store, workspace=workspace, allow_pickle=allow_pickle)
    return None


def attack(
    store: "Store",
    workspace: "Workspace",
    *,
    name: str,
    model: str,
    concept: "str | Concept | None" = None,
    prompts: "str | int | None" = None,
    budget: dict[str, Any] | None = None,
    limit: int | None = None,
    original_model: str | None = None,
    settings: Any = None,
    metrics: list[str] | None = None,
    allow_pickle: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
    judge: "str | Callable[[str, Any], bool] | None" = None,
    as_published: bool = False,
    executor: Any = None,
) -> dict[str, Any]:
    """Attack ``model`` with ``name`` (or replay a published set) and store prompts, runs and ASR.

    ``metrics`` are the scorers (default: the concept's ``default_scorers``). ``judge`` is what attacks
    that stop on success or select candidates (UnlearnDiff, P4D) consult: a metric id (default: the
    concept's ``detector``) or a callable ``judge(text, seed_row) -> bool``. The evals score with the
    scorers and the judge; ``as_published`` makes the judge the headline scorer, as the papers report.

    Returns the attack run's summary with ``run_id``: asr_before / asr_after (the first scorer's),
    ``asr_by_scorer``, ``judge``, ``judge_queries``, ``judge_only``, eval run ids, the adversarial
    prompt set id, budget ratios and ``below_paper_budget``, the attack's threat ``tier``, and
    ``warnings``. ``executor`` draws the before/after evaluations' image shards and, for a
    prompt-tier attack, optimises each seed as one call (api/attack_seeds.py).
    """
    from ..attacks.base import BelowPaperBudgetWarning, check_tier
    from ..models.resolve import resolve_model

    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {limit}")
    target = resolve_model(model, store=store, workspace=workspace, allow_pickle=allow_pickle)
    cls, config = attack_config(name, world=target.world, budget=budget)
    tier = check_tier(cls)
    attack_obj = cls(config)
    concept_obj = _concept(concept, target.world, workspace)
    if prompts is None:
        if cls.is_replay:
            raise ConfigError("replay needs --prompts: one of the published sets (e.g. mma-diffusion, p4d, ring-a-bell-79)")
        if not concept_obj.eval_sets:
            raise ConfigError(f"concept {concept_obj.name!r} names no evaluation set; pass --prompts")
        prompts = concept_obj.eval_sets[0]
    seed_set_id = _seed_set(store, workspace, prompts, limit)
    original = _original_ref(store, workspace, target, original_model, allow_pickle) if cls.needs_original else None
    from .judging import describe_judge

    # Only attacks that stop early or select candidates by image consult a judge (Ring-A-Bell and
    # replay consult none, so none is recorded for them).
    consults = not cls.is_replay and bool(getattr(config, "early_stop", False))
    judge = (judge or concept_obj.detector or None) if consults else None
    if consults and judge is None:
        raise ConfigError(f"{cls.name} consults a judge but concept {concept_obj.name!r} names no detector; pass --judge or set early_stop=false")
    judge_info = describe_judge(judge, workspace, concept_obj)
    judge_id = judge if isinstance(judge, str) else None
    scorers = list(metrics or concept_obj.default_scorers)
    if as_published and judge_id:
        scorers = [judge_id, *(s for s in scorers if s != judge_id)]
    if not scorers:
        raise ConfigError(f"concept {concept_obj.name!r} names no scorer; pass --metric")
    eval_metrics = scorers + ([judge_id] if judge_id and judge_id not in scorers else [])
    from .. import registry

    for metric in eval_metrics:  # an unknown scorer fails now, not after the search
        registry.load("metric", metric)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BelowPaperBudgetWarning)
        budget_info = attack_obj.budget_report()
    warning_texts = [str(w.message) for w in caught if issubclass(w.category, BelowPaperBudgetWarning)]
    for text in warning_texts:  # re-emit so that callers' own warning filters see them
        warnings.warn(text, BelowPaperBudgetWarning, stacklevel=2)
    component = "replay" if cls.is_replay else cls.name
    from ..models.device import resolve_device

    device = resolve_device(_setting(settings, "device", None))
    run = store.start_run(
        kind="attack",
        component=component,
        component_version=cls.version,
        config={"attack": cls.name, **config.identity_dict()},
        runtime={"device": device, **(executor.runtime() if executor is not None else {})},
        model_ref=model,
        model_fingerprint=target.fingerprint,
        prompt_set_id=seed_set_id,
        inputs={
            "concept": concept_obj.as_dict(),
            "original_model": original.fingerprint if original else None,
            "limit": limit,
            "judge": judge_info,
        },
    )
    if run.resumed and run.status == "complete":
        stored = store.get_run(run.id).summary or {}
        if stored.get("eval_metrics") == eval_metrics:
            return {**stored, "tier": tier, "run_id": run.id, "resumed": True, "warnings": warning_texts}
        # other scorers: the stored adversarial prompts are measured again, nothing is re-optimised
    job = _AttackJob(
        store=store, workspace=workspace, attack=attack_obj, run_id=run.id, model=model, target=target,
        original=original, concept=concept_obj, seed_set_id=seed_set_id, limit=limit, scorers=scorers,
        eval_metrics=eval_metrics, judge=judge, judge_info=judge_info, as_published=as_published,
        settings=settings, allow_pickle=allow_pickle, device=device, progress=progress, executor=executor,
    )
    try:
        summary = _replay(job) if cls.is_replay else _optimise_and_measure(job)
    except BaseException as exc:
        store.fail_run(run.id, one_line(f"{type(exc).__name__}: {exc}"))
        raise
    summary.update(budget_info, config=config.as_dict(), attack=cls.name, component=component, tier=tier)
    store.complete_run(run.id, summary)
    return {**summary, "run_id": run.id, "resumed": False, "warnings": warning_texts}


run_attack = attack


def list_attacks() -> list[dict[str, Any]]:
    """Registered attacks with their tiers and paper budgets (imports each attack's module, not torch)."""
    from .. import registry
    from ..attacks.base import check_tier

    rows = []
    for attack_name in registry.names("attack"):
        try:
            cls = registry.load("attack", attack_name)
        except TrceAuditError as exc:
            rows.append({"name": attack_name, "error": str(exc)})
            continue
        rows.append(
            {
                "name": attack_name,
                "version": cls.version,
                "tier": check_tier(cls),
                "paper_budget": dict(cls.paper_budget),
                "needs_original": cls.needs_original,
                "replay": cls.is_replay,
                "defaults": cls.Config().as_dict(),
            }
        )
    return rows
