"""An audit spec's components, built and checked before anything runs: a typo fails in a second, not
after an hour of erasing; what they resolve to belongs to the audit's identity."""

from __future__ import annotations

from typing import Any

from .. import data, registry  # data: called through the package, where tests replace its loaders
from ..attacks.base import check_tier
from ..audit.spec import AuditSpec
from ..data import concepts
from ..errors import ConfigError, TrceAuditError
from .attack_inputs import attack_config
from .erase_inputs import parse_stages


def check_preset(kind: str, name: str, preset: str | None, world: str) -> None:
    if preset is not None and preset != world:
        raise ConfigError(f"{kind} {name!r}: preset {preset!r} does not match the model's world {world!r}")


def check_family(kind: str, index: int, cls: Any, family: str, transfer: bool = False) -> None:
    if transfer and kind == "attack":
        if not cls.text_encoder_only:
            raise ConfigError(f"audit spec: attacks[{index}].transfer_from: the {cls.name} attack searches with the target's "
                              "own images and cannot transfer")
        return
    if family not in cls.families:
        raise ConfigError(f"audit spec: {kind}s[{index}]: the {cls.name} {kind} runs on {', '.join(cls.families)} models; "
                          f"the audited model is a {family} model")


def validate_components(spec: AuditSpec, world: str, family: str = "sd") -> dict[str, Any]:
    """Build every eraser, attack and metric config before anything runs: a typo fails in a second,
    not after an hour of erasing. Returns each component's version and resolved config (world preset
    and overrides), which belong to the audit's identity: after an upgrade that changes a preset or a
    component, the same spec is a new audit, not a stale complete one."""
    resolved: dict[str, Any] = {"erasers": [], "attacks": [], "metrics": {}}
    for index, eraser in enumerate(spec.erasers):
        check_preset("eraser", eraser.name, eraser.preset, world)
        config, stages = eraser_config(eraser.config)
        eraser_cls = registry.load("eraser", eraser.name)
        check_family("eraser", index, eraser_cls, family)
        built = eraser_cls.make_config(world=world, overrides=config, concept=spec.concept, family=family)
        stage_tuple = None
        if stages is not None:
            stage_tuple = parse_stages(stages)
            eraser_cls.check_stages(stage_tuple)
        entry = {"name": eraser.name, "version": eraser_cls.version, "config": built.as_dict()}
        if eraser.seeds is not None:
            if not eraser_cls.uses_seed(stage_tuple or eraser_cls.default_stages):
                seeded = [n for n in registry.names("eraser") if registry.load("eraser", n).uses_seed()]
                raise ConfigError(f"audit spec: erasers[{index}].seeds: {eraser.label!r} does not train or draw "
                                  f"({eraser.name}{' at these stages' if stage_tuple else ''} is a closed form or a guard), "
                                  f"so every seed would give the same model; seeds apply to {', '.join(seeded)}")
            entry["seeds"] = list(eraser.seeds)
        resolved["erasers"].append(entry)
    detector = concept_detector(spec, world) if spec.attacks else None
    judges = set()
    for index, attack in enumerate(spec.attacks):
        check_preset("attack", attack.name, attack.preset, world)
        attack_cls, built = attack_config(attack.name, world=world, budget={**attack.config, **attack.budget})
        check_tier(attack_cls)  # any of the tiers; a plugin that declares another fails before anything runs
        check_family("attack", index, attack_cls, family, transfer=attack.transfer_from is not None)
        consults = not attack_cls.is_replay and bool(getattr(built, "early_stop", False))
        judge = spec.attack_judge(attack, detector) if consults else None
        spec.check_judge_apart(index, judge)
        judges.update([judge] if judge else [])
        resolved["attacks"].append({"name": attack.name, "version": attack_cls.version, "config": built.identity_dict(),
                                    "judge": judge, "as_published": spec.as_published(attack)})
    for metric in sorted({*spec.metrics.eval, *spec.metrics.preserve, *judges}):
        resolved["metrics"][metric] = metric_identity(registry.load("metric", metric))
    return resolved


def metric_identity(runner_cls: Any) -> dict[str, Any]:
    """A metric's version and, for per-image runners, its detector key (name, version, weights hash): a
    retrained detector or a re-tuned scorer makes the same spec a new audit instead of a stale one."""
    try:
        key = list(runner_cls.from_options(None).detector_key())
    except (TrceAuditError, NotImplementedError, ImportError):  # set-level runners; an extra not installed
        key = None
    return {"version": runner_cls.version, "detector": key}


def concept_detector(spec: AuditSpec, world: str) -> str | None:
    """The concept's judge, without reading its pairs (a built-in SD concept's file may not be fetched yet)."""
    known = {**concepts.SD_CONCEPTS, **concepts.SD_EXTRA_CONCEPTS} if world == "sd" else {}
    if spec.concept in known:
        return known[spec.concept].get("detector") or None
    return data.load_concept(spec.concept, world=world).detector or None


def eraser_config(config: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """A spec's eraser config, with ``stages`` (TRCE: 1, 2 or "1,2") taken out of the eraser's own keys."""
    config = dict(config)
    stages = config.pop("stages", None)
    return config, (str(stages) if isinstance(stages, int) else stages)
