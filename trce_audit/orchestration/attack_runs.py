"""Run a red-team attack (or replay a published set) against a model and measure ASR before and after.

One "attack" run per (attack, config + budget, concept, judge, target model, seed set): the adversarial
prompts become a prompt set (parent = seed set, run = the attack run) and two eval runs (children of
the attack run) measure ASR on the seed set and on the adversarial set under each scorer and under the
judge (the detector the attack consulted while it searched, see judging.py). The scorers are not part
of the attack's identity: the same search serves any choice of them. The search is journalled per
seed (attack_seeds.py on an executor), a text-encoder-only search is shared (adversarial_sets.py), and
a weights-tier attack is measured on each of its checkpoints (attack_weights.py).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .. import registry
from ..attacks.base import AttackContext, BelowPaperBudgetWarning, check_tier
from ..attacks.replay import PUBLISHED_SETS
from ..errors import ConfigError, one_line
from ..generation import GenerationSettings
from ..models.determinism import deterministic, unrepeatable_ops, where_it_ran
from ..models.device import resolve_device
from ..models.families import require_family
from ..models.resolve import load_pipeline, model_world, resolve_model
from . import judging  # called through its module: tests replace detector_judge there
from .adversarial_sets import set_with_search_key, store_adversarial_set, stored_adversarial_set, text_encoder_search_key
from .attack_inputs import ARTEFACT_FOLDERS, attack_config, benign_rows, corpus, original_ref, resolve_concept
from .attack_job import AttackJob
from .attack_seeds import distributable, optimise_on_executor
from .attack_weights import measure_curve
from .prompt_sets import resolve_prompt_set

if TYPE_CHECKING:
    from ..data.concepts import Concept
    from ..models.resolve import ModelRef
    from ..store import Store
    from ..workspace import Workspace


def _setting(settings: Any, key: str, default: Any) -> Any:
    if settings is None:
        return default
    if isinstance(settings, dict):
        return settings.get(key, default)
    return getattr(settings, key, default)


def transfer_source(cls: Any, target: "ModelRef", transfer_from: str | None, **resolve: Any) -> "ModelRef | None":
    """The model a transfer attack searches on (its text encoder), or None: the attack searches on the
    target, whose family it must support. Only a text-encoder search transfers: its adversarial prompts
    are plain text, replayed on the target."""
    if transfer_from is None:
        hint = " (its text-encoder search can run as a transfer: --transfer-from an sd model)" if cls.text_encoder_only else ""
        require_family(target.path, cls.families, f"the {cls.name} attack", hint)
        return None
    if not cls.text_encoder_only:
        transferable = ", ".join(n for n in registry.names("attack") if registry.load("attack", n).text_encoder_only)
        raise ConfigError(f"the {cls.name} attack searches with the target's own images and cannot transfer; {transferable} can")
    search = resolve_model(transfer_from, **resolve)
    require_family(search.path, cls.families, f"the {cls.name} attack's search model")
    return search


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
    transfer_from: str | None = None,
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
    prompt-tier attack, optimises each seed as one call (attack_seeds.py).
    """
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {limit}")
    # the options are checked before the model is fingerprinted (which writes the workspace's cache)
    attack_config(name, world=model_world(model, store=store), budget=budget)
    target = resolve_model(model, store=store, workspace=workspace, allow_pickle=allow_pickle)
    cls, config = attack_config(name, world=target.world, budget=budget)
    tier = check_tier(cls)
    search = transfer_source(cls, target, transfer_from, store=store, workspace=workspace, allow_pickle=allow_pickle)
    attack_obj = cls(config)
    concept_obj = resolve_concept(concept, target.world, workspace)
    if prompts is None:
        if cls.is_replay:
            raise ConfigError("replay needs --prompts: one of the published sets (e.g. mma-diffusion, p4d, ring-a-bell-79)")
        if not concept_obj.eval_sets:
            raise ConfigError(f"concept {concept_obj.name!r} names no evaluation set; pass --prompts")
        prompts = concept_obj.eval_sets[0]
    seed_set_id = resolve_prompt_set(store, workspace, prompts, limit=limit)
    original = original_ref(store, workspace, target, original_model, allow_pickle) if cls.needs_original else None

    # Only attacks that stop early or select candidates by image consult a judge (Ring-A-Bell and
    # replay consult none, so none is recorded for them).
    consults = not cls.is_replay and bool(getattr(config, "early_stop", False))
    judge = (judge or concept_obj.detector or None) if consults else None
    if consults and search is not None:
        raise ConfigError(f"{cls.name} consults a judge on the images it searches with, which a transfer search does not draw "
                          "on the target: set early_stop=false")
    if consults and judge is None:
        raise ConfigError(f"{cls.name} consults a judge but concept {concept_obj.name!r} names no detector; pass --judge or set early_stop=false")
    judge_info = judging.describe_judge(judge, workspace, concept_obj)
    judge_id = judge if isinstance(judge, str) else None
    scorers = list(metrics or concept_obj.default_scorers)
    if as_published and judge_id:
        scorers = [judge_id, *(s for s in scorers if s != judge_id)]
    if not scorers:
        raise ConfigError(f"concept {concept_obj.name!r} names no scorer; pass --metric")
    eval_metrics = scorers + ([judge_id] if judge_id and judge_id not in scorers else [])
    for metric in eval_metrics:  # an unknown scorer fails now, not after the search
        registry.load("metric", metric)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BelowPaperBudgetWarning)
        budget_info = attack_obj.budget_report()
    warning_texts = [str(w.message) for w in caught if issubclass(w.category, BelowPaperBudgetWarning)]
    for text in warning_texts:  # re-emit so that callers' own warning filters see them
        warnings.warn(text, BelowPaperBudgetWarning, stacklevel=2)
    component = "replay" if cls.is_replay else cls.name
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
            # only a transfer names its search model, so every other run keeps its identity
            **({"transfer_from": search.fingerprint} if search is not None else {}),
        },
    )
    remeasure = run.resumed and run.status == "complete"
    if remeasure:
        stored = store.get_run(run.id).summary or {}
        if stored.get("eval_metrics") == eval_metrics:
            return {**stored, "tier": tier, "run_id": run.id, "resumed": True, "warnings": warning_texts}
        # other scorers: the stored adversarial prompts are measured again, nothing is re-optimised
    job = AttackJob(
        store=store, workspace=workspace, attack=attack_obj, run_id=run.id, model=model, target=target,
        original=original, concept=concept_obj, seed_set_id=seed_set_id, limit=limit, scorers=scorers,
        eval_metrics=eval_metrics, judge=judge, judge_info=judge_info, as_published=as_published,
        settings=settings, allow_pickle=allow_pickle, device=device, progress=progress, executor=executor, search=search,
    )
    try:
        summary = replay_and_measure(job) if cls.is_replay else optimise_and_measure(job)
    except BaseException as exc:
        store.fail_run(run.id, one_line(f"{type(exc).__name__}: {exc}"))
        raise
    summary.update(budget_info, config=config.as_dict(), attack=cls.name, component=component, tier=tier)
    # where the search ran; a run that searched nothing now (a replay, a shared search) ran here, and a
    # re-measure keeps the record of the search it reuses
    store.complete_run(run.id, summary, runtime=job.runtime or (None if remeasure else where_it_ran()))
    return {**summary, "run_id": run.id, "resumed": False, "warnings": warning_texts}


def replay_and_measure(job: AttackJob) -> dict[str, Any]:
    """A published set needs no search: it is measured on the target as it is."""
    summary = job.summary(len(job.seed_rows()))
    after = job.measure(job.seed_set_id, job.limit)
    name = job.store.get_prompt_set(job.seed_set_id).name
    summary.update(
        replay=True,
        published_set=name if name in PUBLISHED_SETS else None,
        adversarial_set_id=job.seed_set_id,
        eval_run_before=None,
        eval_run_after=after.get("run_id"),
        metrics_after=after.get("metrics", []),
        judge_queries=None,
        **job.scores(None, after),
    )
    return summary


def optimise_and_measure(job: AttackJob) -> dict[str, Any]:
    """The search (reusing an interrupted attempt's seeds, or another target's shared search), then the
    before/after evaluations or a weights-tier attack's curve."""
    seed_rows = job.seed_rows()
    attack_obj = job.attack
    adversarial_set_id = stored_adversarial_set(job.store, job.run_id)
    stats: dict[str, Any] = {"reused_adversarial_set": adversarial_set_id is not None}
    if adversarial_set_id is not None:  # keep what the search that made them recorded (a re-measure)
        prior = (job.store.get_run(job.run_id).summary or {}).get("stats") or {}
        stats.update({k: v for k, v in prior.items() if not k.startswith("reused")})
    search_key = None
    target_pipe = None
    finished = job.store.attack_rows(job.run_id)  # seeds an interrupted attempt already optimised
    missing = [i for i in range(len(seed_rows)) if i not in finished]
    # on the executor when there is a seed to optimise; else here (the run-level stats come from a call)
    # a transfer searches here, on its search model (the executor's workers load the target)
    remote = distributable(attack_obj, job.executor) and bool(missing) and job.search is None
    if adversarial_set_id is None:
        if attack_obj.text_encoder_only or not remote:
            target_pipe = load_pipeline(job.search or job.target, device=job.device, allow_pickle=job.allow_pickle)
        if attack_obj.text_encoder_only:
            search_key = text_encoder_search_key(job, target_pipe, seed_rows)
            adversarial_set_id = set_with_search_key(job.store, attack_obj.name, search_key)
            if adversarial_set_id is not None:
                searched_by = job.store.get_run(job.store.get_prompt_set(adversarial_set_id).run_id)
                stats.update({k: v for k, v in ((searched_by.summary or {}).get("stats") or {}).items() if not k.startswith("reused")})
                stats["reused_search_of_run"] = searched_by.id
    if adversarial_set_id is None and remote:
        def store_row(index: int, row: Any, queries: int) -> None:
            row.meta["judge_queries"] = queries
            job.store.add_attack_row(job.run_id, index, row, seed_prompt_id=seed_rows[index].id)

        found_stats, job.runtime = optimise_on_executor(job, seed_rows, missing, corpus(attack_obj, job.concept, job.workspace), store_row)
        stats.update(found_stats)
        adversarial_set_id = store_adversarial_set(job, seed_rows, finished, stats, search_key)
    if adversarial_set_id is None:
        original_pipe = load_pipeline(job.original, device=job.device, allow_pickle=job.allow_pickle) if job.original else None
        with tempfile.TemporaryDirectory(prefix="trce-audit-judge-") as scratch:
            counter = None
            if job.judge is not None:
                judge = job.judge if callable(job.judge) else detector_judge_for(job, target_pipe, Path(scratch))
                counter = judging.CountingJudge(judge, seed_rows)

            def store_seed(index: int, row: Any) -> None:
                judging.record_queries([row], [seed_rows[index]], judging.SeedQueries(counter, index))
                job.store.add_attack_row(job.run_id, index, row, seed_prompt_id=seed_rows[index].id)

            context = AttackContext(device=job.device, progress=job.progress, judge=counter,
                                    corpus=corpus(attack_obj, job.concept, job.workspace), on_seed=store_seed,
                                    finished=finished, model_dir=Path((job.search or job.target).path),
                                    artefact_dir=job.workspace.artefacts_dir / ARTEFACT_FOLDERS.get(attack_obj.tier, "embeddings"),
                                    benign_rows=benign_rows(job.workspace, job.concept.name),
                                    generation=GenerationSettings.from_value(job.settings))
            # run even when no seed is missing: the search's run-level stats come from this call
            with deterministic() as determinism:
                result = attack_obj.run(target_pipe, job.concept, seed_rows, original_pipe=original_pipe, context=context, indices=missing)
            job.runtime = where_it_ran()
        del original_pipe
        stats.update(result.stats, **unrepeatable_ops(determinism))
        adversarial_set_id = store_adversarial_set(job, seed_rows, finished, stats, search_key)
    del target_pipe
    rows = job.store.prompt_rows(adversarial_set_id)
    losses = [row.meta["loss"] for row in rows if row.meta.get("loss") is not None]  # None: nothing was optimised
    before = job.measure(job.seed_set_id, job.limit)
    curve = None
    if attack_obj.tier == "weights":  # the seed prompts themselves, on each saved checkpoint
        curve, after = measure_curve(job, rows, before)
    else:
        after = job.measure(adversarial_set_id, None)
    summary = job.summary(len(seed_rows))
    summary.update(
        replay=False,
        adversarial_set_id=adversarial_set_id,
        **job.scores(before, after),
        judge_queries=judging.query_summary(rows),
        eval_run_before=before.get("run_id"),
        eval_run_after=after.get("run_id"),
        metrics_before=before.get("metrics", []),
        metrics_after=after.get("metrics", []),
        mean_loss=(sum(losses) / len(losses)) if losses else None,
        retokenize_failures=sum(1 for row in rows if row.meta.get("retokenizes") is False),
        stats=stats,
        **({"curve": curve} if curve is not None else {}),
    )
    return summary


def detector_judge_for(job: AttackJob, pipe: Any, scratch: Path) -> Callable[[str, Any], bool]:
    """The concept detector as the judge, drawing on the target pipeline with the evaluation's settings."""
    settings = GenerationSettings.from_value(job.settings) or GenerationSettings()
    return judging.detector_judge(job.judge, workspace=job.workspace, concept=job.concept, pipe=pipe, settings=settings,
                                  model_path=Path(job.target.path), scratch=scratch)
