"""Evaluate a model on a prompt set: generate (or reuse) its images, then run metric runners on them.

An "eval" run is one model x prompt set x metric list; its metrics are attached to it and its summary
names the generation run it scored. Rerunning the same evaluation reuses the stored images and
per-image detections and returns the stored numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from .. import registry
from ..errors import ConfigError, one_line
from ..generation import GenerationSettings
from ..generation.runner import run_generation
from ..generation.shards import DetectorCheck
from ..metrics.base import detect_together
from ..models.determinism import where_it_ran
from ..models.resolve import resolve_model
from .prompt_sets import resolve_prompt_set

if TYPE_CHECKING:
    from ..metrics.base import MetricRunner
    from ..store import Store
    from ..workspace import Workspace


def build_runners(
    metrics: list[str], metric_options: dict[str, dict[str, Any]] | None, workspace: "Workspace", concept: str | None
) -> list["MetricRunner"]:
    """Runner objects for the metric names, checked before anything is generated."""
    if not metrics:
        raise ConfigError("no metric given; pass at least one (e.g. --metric nudenet)")
    if len(set(metrics)) != len(metrics):
        raise ConfigError(f"a metric is named twice in {metrics}")
    options = dict(metric_options or {})
    unknown = sorted(set(options) - set(metrics))
    if unknown:
        raise ConfigError(f"options given for metric(s) not requested: {', '.join(unknown)}")
    return [
        registry.load("metric", name).from_options(options.get(name), workspace=workspace, concept=concept)
        for name in metrics
    ]


def detector_checks(runners, metric_options, workspace, concept) -> list[DetectorCheck]:
    """What a remote worker must see as the driver does: each per-image runner's detector key."""
    checks = []
    for runner in runners:
        try:
            key = tuple(runner.detector_key())
        except NotImplementedError:  # a set-level metric (FID, CLIP) has no per-image detector
            continue
        checks.append(DetectorCheck(runner.name, (metric_options or {}).get(runner.name), concept, workspace, key))
    return checks


def evaluate(
    store: "Store",
    workspace: "Workspace",
    *,
    model: str,
    prompts: str | int,
    metrics: list[str],
    settings: GenerationSettings | None = None,
    limit: int | None = None,
    concept: str | None = None,
    parent_run_id: int | None = None,
    allow_pickle: bool = False,
    metric_options: dict[str, dict[str, Any]] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    executor: Any = None,
) -> dict[str, Any]:
    """Generate-then-measure; returns {run_id, generation_run_id, n_images, metrics: [...]}. ``executor``
    (a trce_audit.execution.Executor) draws the image shards; default: this process."""
    settings = (settings or GenerationSettings()).validate()
    runners = build_runners(list(metrics), metric_options, workspace, concept)
    ref = resolve_model(model, store=store, workspace=workspace, allow_pickle=allow_pickle)
    set_id = resolve_prompt_set(store, workspace, prompts, limit=limit)
    prompt_set = store.get_prompt_set(set_id)

    checks = detector_checks(runners, metric_options, workspace, concept) if executor is not None else ()
    generation = run_generation(
        store, workspace, ref, set_id, settings, detectors=checks,
        limit=limit, parent_run_id=parent_run_id, allow_pickle=allow_pickle,
        progress=(lambda done, total: progress("generate", done, total)) if progress else None, executor=executor,
    )
    handle = store.start_run(
        kind="eval",
        component="+".join(runner.name for runner in runners),
        config={
            "metrics": {runner.name: {"version": runner.version, **runner.config_dict()} for runner in runners},
            "concept": concept,
        },
        runtime={**generation.settings.runtime(), **(executor.runtime() if executor is not None else {})},
        model_ref=ref.spec,
        model_fingerprint=ref.fingerprint,
        prompt_set_id=set_id,
        parent_run_id=parent_run_id,
        inputs={"generation_run": generation.identity},
    )
    context = {
        "prompt_set": {"id": set_id, "name": prompt_set.name, "sha256": prompt_set.sha256, "limit": limit},
        "model": {"spec": ref.spec, "fingerprint": ref.fingerprint},
        "generation": {"run_id": generation.run_id, **generation.settings.pixel_config()},
        "concept": concept,
    }
    try:
        stored = {(m.scorer, m.name) for m in store.metrics(handle.id)}
        pending = [runner for runner in runners if not (runner.stored_keys() and stored.issuperset(runner.stored_keys()))]
        # Every per-image detector over one read of each image (--metric nudenet,opennsfw); each
        # runner's score below then finds its detections stored.
        scored = False  # a metric added now: only then did scoring run here
        stage = "+".join(runner.name for runner in pending)
        detect_together(store, handle.id, generation.images, pending,
                        progress=(lambda done, total: progress(stage, done, total)) if progress else None)
        for runner in pending:
            if progress:
                progress(runner.name, 0, generation.n_images)
            values = runner.score(store, handle.id, generation.images)
            for value in values:
                key = (value.scorer or runner.name, value.name)
                if key in stored:  # resumed run: this number is already attached
                    continue
                store.add_metric(
                    handle.id, value.name, value.value, scorer=key[0], n=value.n, ci_low=value.ci_low,
                    ci_high=value.ci_high, protocol={**value.protocol, **context},
                )
                stored.add(key)
                scored = True
            if progress:
                progress(runner.name, generation.n_images, generation.n_images)
    except BaseException as exc:
        store.fail_run(handle.id, one_line(f"{type(exc).__name__}: {exc}"))
        raise
    records = [m.as_record() for m in store.metrics(handle.id)]
    store.complete_run(
        handle.id,
        {
            "generation_run_id": generation.run_id,
            "n_images": generation.n_images,
            "metrics": {r["name"]: r["value"] for r in reversed(records)},  # first scorer's value per name
        },
        # the scoring ran here (detections drawn beside the images on workers are the generate run's
        # work, and its runtime says where); a rerun that added no metric keeps what the first recorded
        # (a runner whose keys an eval set never produces, such as preserve_acc, is pending on every rerun)
        runtime=where_it_ran() if scored else None,
    )
    return {
        "run_id": handle.id,
        "generation_run_id": generation.run_id,
        "n_images": generation.n_images,
        "generated": generation.generated,
        "reused_images": generation.reused,
        "metrics": records,
    }
