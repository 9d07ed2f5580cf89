"""Run an audit spec: erase -> evaluate -> attack, every step reused from the store when it exists.

Each step is a run with its own identity, so an interrupted audit rerun with the same spec skips what
finished and resumes what did not; the audit run itself lists every run it used in its summary (a run
reused from an earlier audit keeps its first parent, so the list is what ties it to this audit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..audit.spec import AttackSpec, AuditSpec
from ..generation import GenerationSettings
from ..models.device import resolve_device
from ..models.families import family_name
from ..models.folder import world_of
from ..models.resolve import locate_model, resolve_model
from . import attack_runs, erase_runs, eval_runs  # called through their modules, as tests replace them
from .audit_checks import eraser_config, validate_components

if TYPE_CHECKING:
    from ..store import Store
    from ..workspace import Workspace

Log = Callable[[str], None]


@dataclass
class AuditModel:
    label: str  # "base" or the eraser label (every seed of a multi-seed eraser shares it)
    spec: str  # model spec the steps receive ("pocket", "artefact:7", …)
    erase: dict[str, Any] | None = None
    seed: int | None = None  # the training seed, for an eraser the spec trains under several

    @property
    def name(self) -> str:
        return named(self.label, self.seed)


def named(label: str, seed: int | None) -> str:
    return label if seed is None else f"{label} seed {seed}"


@dataclass
class AuditProgress:
    """What the audit has done so far; written into the audit run's summary after every step."""

    run_ids: list[int] = field(default_factory=list)
    models: list[AuditModel] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    attacks: list[dict[str, Any]] = field(default_factory=list)
    family: str = ""  # the audited model's family (models/families), for the report

    def summary(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "run_ids": list(dict.fromkeys(self.run_ids)),
            "models": [{"label": m.label, "model": m.spec, **({"seed": m.seed} if m.seed is not None else {})} for m in self.models],
            "evals": self.evals,
            "attacks": self.attacks,
        }


def generation_settings_for(spec: AuditSpec, device: str | None) -> GenerationSettings:
    gen = spec.generation
    return GenerationSettings(
        steps=gen.steps, height=gen.height, width=gen.width, batch_size=gen.batch_size, dtype=gen.dtype,
        scheduler=gen.scheduler, device=device or gen.device, preset=gen.preset, guidance=gen.guidance,
        max_sequence_length=gen.max_sequence_length,
    )


def attack_targets(spec: AuditSpec, attack: AttackSpec, models: list[AuditModel]) -> list[AuditModel]:
    if attack.targets:
        return [m for m in models if m.label in attack.targets or (m.label == "base" and spec.model in attack.targets)]
    erased = [m for m in models if m.label != "base"]
    return erased or models


def run_audit(
    store: "Store",
    workspace: "Workspace",
    spec: AuditSpec,
    *,
    device: str | None = None,
    log: Log | None = None,
    allow_pickle: bool = False,
    executor: Any = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    say = log or (lambda message: None)
    device = resolve_device(device or spec.generation.device)
    # A local or stored model's components are checked before the model is fingerprinted (which writes
    # the workspace's cache): a refused spec leaves the workspace as it was. A hub model's after its download.
    folder = locate_model(spec.model, store=store)
    components = validate_components(spec, world_of(folder), family_name(folder)) if folder is not None else None
    base = resolve_model(spec.model, store=store, workspace=workspace, allow_pickle=allow_pickle)
    family = family_name(base.path)
    if components is None:
        components = validate_components(spec, base.world, family)
    handle = store.start_run(
        kind="audit", component="audit", config=spec.identity_dict(), model_ref=spec.model,
        model_fingerprint=base.fingerprint,
        runtime={"device": device or spec.generation.device, "batch_size": spec.generation.batch_size,
                 **(executor.runtime() if executor is not None else {})},
        inputs={"components": components},
    )
    if handle.status == "complete":
        say(f"audit {handle.id} is already complete; reusing its results")
        return {"audit_run_id": handle.id, "resumed": True, **store.get_run(handle.id).summary}
    settings = generation_settings_for(spec, device)
    done = AuditProgress(family=family)
    on_executor = {"executor": executor} if executor is not None else {}

    def checkpoint() -> None:
        store.update_summary(handle.id, done.summary())

    def counts(step: str) -> Callable[[str, int, int], None] | None:
        """The step's (stage, done, total) callbacks, named after the audit step they belong to."""
        return (lambda stage, done_, total: progress(f"{step}: {stage}", done_, total)) if progress else None

    try:
        if spec.include_base:
            done.models.append(AuditModel("base", spec.model))
        requests, slots = [], []  # one erase per eraser entry and seed: its request, (label, seed)
        for eraser in spec.erasers:
            for seed, seeded in eraser.seeded_configs():
                config, stages = eraser_config(seeded)
                requests.append(dict(eraser=eraser.name, concept=spec.concept, model=spec.model, overrides=config,
                                     stages=stages, device=settings.device, allow_pickle=allow_pickle))
                slots.append((eraser.label, seed))
        if executor is None:
            for (label, seed), request in zip(slots, requests):
                say(f"erase: {named(label, seed)} ({request['eraser']}) on {spec.model}")
                result = erase_runs.erase(store, workspace, **request, progress=counts(f"erase {named(label, seed)}"))
                done.run_ids.append(result["run_id"])
                done.models.append(AuditModel(label, f"artefact:{result['artefact_id']}", result, seed))
                checkpoint()
        elif requests:  # every eraser at once, one a worker
            names = ", ".join(f"{named(*slot)} ({request['eraser']})" for slot, request in zip(slots, requests))
            say(f"erase: {names} on {spec.model}, on {executor.runtime().get('executor')}")
            stored: dict[int, dict[str, Any]] = {}

            def heard(index: int, record: dict[str, Any]) -> None:
                stored[index] = record
                say(f"erased: {named(*slots[index])} ({took(record)})")

            try:
                erase_runs.erase_all(store, workspace, requests, executor=executor, on_done=heard)
            finally:  # a failed batch still lists the erases it stored
                for index in sorted(stored):
                    done.run_ids.append(stored[index]["run_id"])
                    label, seed = slots[index]
                    done.models.append(AuditModel(label, f"artefact:{stored[index]['artefact_id']}", stored[index], seed))
                checkpoint()
        for model in done.models:
            for sets, metrics in ((spec.prompts.eval, spec.metrics.eval), (spec.prompts.preserve, spec.metrics.preserve)):
                for prompt_set in sets:
                    say(f"eval: {model.name} on {prompt_set} ({', '.join(metrics)})")
                    result = eval_runs.evaluate(
                        store, workspace, model=model.spec, prompts=prompt_set, metrics=list(metrics),
                        settings=settings, limit=spec.generation.limit, concept=spec.concept,
                        parent_run_id=handle.id, allow_pickle=allow_pickle,
                        progress=counts(f"eval {model.name} on {prompt_set}"), **on_executor,
                    )
                    done.run_ids += [result["run_id"], result["generation_run_id"]]
                    done.evals.append({"model": model.name, "prompt_set": prompt_set, "run_id": result["run_id"],
                                       # the first scorer's number per name; "scores" has every scorer's
                                       "metrics": {m["name"]: m["value"] for m in reversed(result["metrics"])},
                                       "scores": [{k: m.get(k) for k in ("name", "scorer", "value")} for m in result["metrics"]]})
                    checkpoint()
        for attack in spec.attacks:
            for model in attack_targets(spec, attack, done.models):
                for seed_set in spec.attack_seeds(attack):
                    say(f"attack: {attack.label} ({attack.name}) on {model.name}, seeds {seed_set}")
                    result = attack_runs.attack(
                        store, workspace, name=attack.name, model=model.spec, concept=spec.concept,
                        prompts=seed_set, budget={**attack.config, **attack.budget},
                        limit=attack.limit or spec.generation.limit, settings=settings,
                        metrics=list(spec.metrics.eval), allow_pickle=allow_pickle,
                        judge=attack.judge or spec.metrics.judge, as_published=spec.as_published(attack),
                        transfer_from=attack.transfer_from, **on_executor,
                        progress=(lambda done_, total, what, stage=f"attack {attack.label} on {model.name}":
                                  progress(f"{stage}: {what}", done_, total)) if progress else None,
                    )
                    done.run_ids += [rid for rid in run_ids(result)]
                    done.attacks.append({"attack": attack.label, "tier": result.get("tier"), "model": model.name, "seeds": seed_set,
                                         "run_id": result.get("run_id"), "asr_before": result.get("asr_before"),
                                         "asr_after": result.get("asr_after"), "judge": result.get("judge"),
                                         "asr_by_scorer": result.get("asr_by_scorer"),
                                         "judge_only_count": result.get("judge_only_count")})
                    checkpoint()
    except BaseException as exc:
        store.fail_run(handle.id, f"{type(exc).__name__}: {exc}")
        raise
    store.complete_run(handle.id, done.summary())
    return {"audit_run_id": handle.id, "resumed": handle.resumed, **done.summary()}


def took(erased: dict[str, Any]) -> str:
    return "reused" if erased.get("reused") else f"{erased.get('seconds') or 0:.0f} s"


def run_ids(result: dict[str, Any]) -> list[int]:
    """Every run id an orchestration result names (run_id, eval_before_run_id, …), for the audit's summary."""
    found = []
    for key, value in result.items():
        if isinstance(value, int) and not isinstance(value, bool) and (key.endswith("run_id") or key.startswith("eval_run")):
            found.append(value)
        elif isinstance(value, list) and key.endswith("run_ids"):
            found += [v for v in value if isinstance(v, int)]
    return found
