"""The audit spec: one TOML file that says what `trce-audit audit` erases, attacks and measures, and what
`trce-audit gate` then requires. This module parses and validates it; it runs nothing.

Format (every table optional except where noted; see docs/audit-spec.md)::

    name = "pocket"                    # a label for the report
    model = "pocket"                   # required: base model spec (pocket | hub id | folder | artefact:ID)
    concept = "cross"                  # required: or concepts = ["a", "b"]
    include_base = true                # also evaluate the unerased base model (the reference)

    [generation]                       # steps, limit (prompts per set), batch_size, height, width, dtype, scheduler, device
    [prompts]                          # attack_seeds, eval, preserve: lists of prompt-set names
    [metrics]                          # eval, preserve: lists of metric ids (or metrics = ["id"] for both);
                                       # judge (attacks' judge, default: the concept's detector), as_published
    [[erasers]]                        # name (required), label, preset, config = {...}, seeds = [0, 1, 2]
    [[attacks]]                        # name (required), label, preset, budget = {...}, config = {...}, seeds, targets,
                                       # judge, as_published (override [metrics])
    [gate]                             # max_asr = {"SET" | "SET@MODEL" | "*" = "5%"}, max_increase = "2pp", baseline
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Mapping

from ..errors import ConfigError, one_line
from ..gating.limits import AsrLimit, asr_limit, parse_points
from ..models.device import DTYPES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_POCKET_SPEC = "default_pocket.toml"
SD14_NUDITY_SPEC = "sd14_nudity.toml"


class SpecError(ConfigError):
    """An audit spec is malformed; the message names the key."""

    def __init__(self, where: str, problem: str):
        super().__init__(f"audit spec: {where}: {problem}" if where else f"audit spec: {problem}")


def _check_keys(table: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise SpecError(where or "top level", f"unknown key {key!r} (expected one of: {', '.join(allowed)})")


def _table(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(where, f"must be a table, got {type(value).__name__}")
    return value


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SpecError(where, "must be a non-empty string")
    return value.strip()


def _names(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise SpecError(where, f"must be a list of names, got {type(value).__name__}")
    names = tuple(_name(item, f"{where}[{i}]") for i, item in enumerate(value))
    if len(set(names)) != len(names):
        raise SpecError(where, "lists a name twice")
    return names


def _seeds(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise SpecError(where, f"must be a non-empty list of seeds, e.g. [0, 1, 2], got {value!r}")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item < 2**31:
            raise SpecError(where, f"seeds are integers from 0 to 2^31 - 1, got {item!r}")
    if len(set(value)) != len(value):
        raise SpecError(where, "lists a seed twice")
    return tuple(value)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(where, f"must be true or false, got {value!r}")
    return value


def _positive_int(value: Any, where: str, *, optional: bool = True) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(where, f"must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class GenerationSpec:
    """Field names match trce_audit.generation.GenerationSettings (batch_size and device are runtime-only)."""

    runtime_fields: ClassVar[tuple[str, ...]] = ("batch_size", "device")

    steps: int = 30
    limit: int | None = None
    batch_size: int = 8
    height: int | None = None
    width: int | None = None
    dtype: str = "fp32"
    scheduler: str | None = None
    device: str = "auto"

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], where: str = "generation") -> "GenerationSpec":
        _check_keys(table, tuple(cls.__dataclass_fields__), f"[{where}]")
        values: dict[str, Any] = {}
        for key in ("steps", "batch_size"):
            if key in table:
                values[key] = _positive_int(table[key], f"{where}.{key}", optional=False)
        for key in ("limit", "height", "width"):
            if key in table:
                values[key] = _positive_int(table[key], f"{where}.{key}")
        if "dtype" in table:
            if table["dtype"] not in DTYPES:
                raise SpecError(f"{where}.dtype", f"must be one of {', '.join(DTYPES)}, got {table['dtype']!r}")
            values["dtype"] = table["dtype"]
        for key in ("scheduler", "device"):
            if key in table:
                values[key] = _name(table[key], f"{where}.{key}")
        return cls(**values)


@dataclass(frozen=True)
class PromptsSpec:
    attack_seeds: tuple[str, ...] = ()
    eval: tuple[str, ...] = ()
    preserve: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> "PromptsSpec":
        _check_keys(table, ("attack_seeds", "eval", "preserve"), "[prompts]")
        return cls(*(_names(table.get(key), f"prompts.{key}") for key in ("attack_seeds", "eval", "preserve")))


@dataclass(frozen=True)
class MetricsSpec:
    """Metric-runner ids: ``eval`` (the scorers) on the eval and attack sets (ASR), ``preserve`` on the
    preserve sets. ``judge`` is the detector attacks consult while they search (default: the concept's
    ``detector``); the scorers may include it only with ``as_published = true``, which also makes it
    the attacks' headline scorer (the papers score with the detector that stopped the search)."""

    eval: tuple[str, ...] = ()
    preserve: tuple[str, ...] = ()
    judge: str | None = None
    as_published: bool = False

    @classmethod
    def from_value(cls, value: Any) -> "MetricsSpec":
        if isinstance(value, (list, str)):
            both = _names(value, "metrics")
            return cls(both, both)
        table = _table(value, "metrics")
        _check_keys(table, ("eval", "preserve", "judge", "as_published"), "[metrics]")
        return cls(
            _names(table.get("eval"), "metrics.eval"),
            _names(table.get("preserve"), "metrics.preserve"),
            _name(table["judge"], "metrics.judge") if "judge" in table else None,
            _bool(table["as_published"], "metrics.as_published") if "as_published" in table else False,
        )


@dataclass(frozen=True)
class EraserSpec:
    """``label`` tells two configurations of one eraser apart in reports (default: the name).
    ``seeds`` trains the eraser once per seed (its config's ``seed``): one artefact and one set of rows
    each, so that the report shows how far a number moves when the eraser is trained again."""

    name: str
    config: dict[str, Any] = field(default_factory=dict)
    preset: str | None = None
    label: str = ""
    seeds: tuple[int, ...] | None = None  # None (not an empty tuple) keeps older specs' identity

    @classmethod
    def from_mapping(cls, table: Any, where: str) -> "EraserSpec":
        table = _table(table, where)
        _check_keys(table, ("name", "label", "preset", "config", "seeds"), where)
        if "name" not in table:
            raise SpecError(where, "missing key 'name'")
        name = _name(table["name"], f"{where}.name")
        config = _table(table.get("config"), f"{where}.config")
        seeds = _seeds(table["seeds"], f"{where}.seeds") if "seeds" in table else None
        if seeds is not None and "seed" in config:
            raise SpecError(f"{where}.seeds", "give the seeds here or config.seed, not both")
        return cls(
            name=name,
            config=config,
            preset=_name(table["preset"], f"{where}.preset") if "preset" in table else None,
            label=_name(table["label"], f"{where}.label") if "label" in table else name,
            seeds=seeds,
        )

    def seeded_configs(self) -> list[tuple[int | None, dict[str, Any]]]:
        """(seed, config) for each artefact this entry erases: one per seed, or the config as it is."""
        if self.seeds is None:
            return [(None, dict(self.config))]
        return [(seed, {**self.config, "seed": seed}) for seed in self.seeds]


@dataclass(frozen=True)
class AttackSpec:
    """``budget`` is what the attack may spend (iterations, queries…: keys are the attack's own config
    fields, overriding its preset); ``seeds`` default to prompts.attack_seeds, ``targets`` (eraser labels)
    to every erased model."""

    name: str
    budget: dict[str, float | int] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    preset: str | None = None
    seeds: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    label: str = ""
    limit: int | None = None  # seed prompts attacked per set (optimisers cost far more per prompt than eval)
    judge: str | None = None  # default: [metrics] judge, else the concept's detector
    as_published: bool | None = None  # default: [metrics] as_published

    @classmethod
    def from_mapping(cls, table: Any, where: str) -> "AttackSpec":
        table = _table(table, where)
        _check_keys(table, ("name", "label", "preset", "budget", "config", "seeds", "targets", "limit", "judge", "as_published"), where)
        if "name" not in table:
            raise SpecError(where, "missing key 'name'")
        name = _name(table["name"], f"{where}.name")
        budget = _table(table.get("budget"), f"{where}.budget")
        for key, value in budget.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise SpecError(f"{where}.budget.{key}", f"must be a non-negative number, got {value!r}")
        return cls(
            name=name,
            budget=budget,
            config=_table(table.get("config"), f"{where}.config"),
            preset=_name(table["preset"], f"{where}.preset") if "preset" in table else None,
            seeds=_names(table.get("seeds"), f"{where}.seeds"),
            targets=_names(table.get("targets"), f"{where}.targets"),
            label=_name(table["label"], f"{where}.label") if "label" in table else name,
            limit=_positive_int(table.get("limit"), f"{where}.limit"),
            judge=_name(table["judge"], f"{where}.judge") if "judge" in table else None,
            as_published=_bool(table["as_published"], f"{where}.as_published") if "as_published" in table else None,
        )


@dataclass(frozen=True)
class GateSpec:
    """Limits `trce-audit gate` applies; ``max_increase`` is a fraction (2 points = 0.02)."""

    max_asr: tuple[AsrLimit, ...] = ()
    max_increase: float | None = None
    baseline: str | None = None

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], where: str = "gate") -> "GateSpec":
        _check_keys(table, ("max_asr", "max_increase", "baseline"), f"[{where}]")
        limits = _table(table.get("max_asr"), f"{where}.max_asr")
        try:
            max_asr = tuple(asr_limit(target, value, f"{where}.max_asr") for target, value in limits.items())
            increase = parse_points(table["max_increase"], f"{where}.max_increase") if "max_increase" in table else None
        except ConfigError as exc:
            raise SpecError("", str(exc)) from None
        baseline = table.get("baseline")
        if baseline is not None:
            baseline = _name(str(baseline) if isinstance(baseline, int) else baseline, f"{where}.baseline")
        return cls(max_asr, increase, baseline)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"max_asr": {limit.target: limit.max_asr for limit in self.max_asr}}
        if self.max_increase is not None:
            data["max_increase"] = f"{self.max_increase * 100:g}pp"
        if self.baseline is not None:
            data["baseline"] = self.baseline
        return data


@dataclass(frozen=True)
class AuditSpec:
    model: str
    concepts: tuple[str, ...]
    name: str = "audit"
    description: str = ""
    include_base: bool = True
    generation: GenerationSpec = GenerationSpec()
    prompts: PromptsSpec = PromptsSpec()
    metrics: MetricsSpec = MetricsSpec()
    erasers: tuple[EraserSpec, ...] = ()
    attacks: tuple[AttackSpec, ...] = ()
    gate: GateSpec = GateSpec()

    @property
    def concept(self) -> str:
        return self.concepts[0]

    def attack_seeds(self, attack: AttackSpec) -> tuple[str, ...]:
        return attack.seeds or self.prompts.attack_seeds

    def attack_judge(self, attack: AttackSpec, concept_detector: str | None) -> str | None:
        return attack.judge or self.metrics.judge or concept_detector or None

    def as_published(self, attack: AttackSpec) -> bool:
        return self.metrics.as_published if attack.as_published is None else attack.as_published

    def check_judge_apart(self, index: int, judge: str | None) -> None:
        """An attack's judge may score it only where the spec asks for the published protocol."""
        attack = self.attacks[index]
        if judge and judge in self.metrics.eval and not self.as_published(attack):
            key = f"attacks[{index}].as_published" if attack.as_published is not None else "metrics.as_published"
            raise SpecError(
                key, f"metrics.eval scores with {judge!r}, the judge {attack.label!r} consults while it searches; "
                f"score with another metric or set {key} = true to report the judge's ASR as the paper does",
            )

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able values, for an audit run's config (the gate reads its "gate" table back)."""
        data = asdict(self)
        data["gate"] = self.gate.as_dict()
        return _without_none(json.loads(json.dumps(data)))  # as TOML would give it: lists, no nulls

    def identity_dict(self) -> dict[str, Any]:
        """``as_dict`` without the runtime-only generation options (batch size, device): the same spec
        run on a GPU or with another batch size is the same audit."""
        data = self.as_dict()
        data["generation"] = {k: v for k, v in data.get("generation", {}).items() if k not in GenerationSpec.runtime_fields}
        return data

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "AuditSpec":
        _check_keys(
            data,
            ("name", "description", "model", "concept", "concepts", "include_base", "generation", "prompts",
             "metrics", "erasers", "attacks", "gate"),
            "",
        )
        if "model" not in data:
            raise SpecError("", "missing key 'model' (the base model spec, e.g. \"pocket\")")
        if ("concept" in data) == ("concepts" in data):
            raise SpecError("", "give exactly one of 'concept' or 'concepts'")
        concepts = _names(data.get("concept", data.get("concepts")), "concept" if "concept" in data else "concepts")
        if not concepts:
            raise SpecError("concepts", "names no concept")
        include_base = data.get("include_base", True)
        if not isinstance(include_base, bool):
            raise SpecError("include_base", f"must be true or false, got {include_base!r}")
        erasers = tuple(EraserSpec.from_mapping(t, f"erasers[{i}]") for i, t in enumerate(_list(data.get("erasers"), "erasers")))
        attacks = tuple(AttackSpec.from_mapping(t, f"attacks[{i}]") for i, t in enumerate(_list(data.get("attacks"), "attacks")))
        spec = cls(
            model=_name(data["model"], "model"),
            concepts=concepts,
            name=_name(data.get("name", "audit"), "name"),
            description=str(data.get("description", "")),
            include_base=include_base,
            generation=GenerationSpec.from_mapping(_table(data.get("generation"), "generation")),
            prompts=PromptsSpec.from_mapping(_table(data.get("prompts"), "prompts")),
            metrics=MetricsSpec.from_value(data.get("metrics")),
            erasers=erasers,
            attacks=attacks,
            gate=GateSpec.from_mapping(_table(data.get("gate"), "gate")),
        )
        spec._validate()
        return spec

    def _validate(self) -> None:
        labels = [eraser.label for eraser in self.erasers]
        duplicate = next((label for label in labels if labels.count(label) > 1), None)
        if duplicate:
            raise SpecError("erasers", f"two erasers are labelled {duplicate!r}; give one a distinct 'label'")
        attack_labels = [attack.label for attack in self.attacks]
        duplicate = next((label for label in attack_labels if attack_labels.count(label) > 1), None)
        if duplicate:
            raise SpecError("attacks", f"two attacks are labelled {duplicate!r}; give one a distinct 'label'")
        if not self.prompts.eval and not self.attacks:
            raise SpecError("prompts.eval", "is empty and there are no attacks: the audit would measure nothing")
        if (self.prompts.eval or self.attacks) and not self.metrics.eval:
            raise SpecError("metrics.eval", "names no metric to measure the eval and attack sets with")
        if self.prompts.preserve and not self.metrics.preserve:
            raise SpecError("metrics.preserve", "names no metric for the preserve sets")
        for i, attack in enumerate(self.attacks):
            if not self.attack_seeds(attack):
                raise SpecError(f"attacks[{i}].seeds", "no seed prompt set (set it or prompts.attack_seeds)")
            unknown = [t for t in attack.targets if t not in labels and t != self.model]
            if unknown:
                raise SpecError(f"attacks[{i}].targets", f"{unknown[0]!r} is neither an eraser label nor the base model")


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_none(sub) for key, sub in value.items() if sub is not None}
    if isinstance(value, list):
        return [_without_none(sub) for sub in value]
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError(where, f"must be an array of tables ([[{where}]]), got {type(value).__name__}")
    return value


def load_spec(path_or_text: str | os.PathLike) -> AuditSpec:
    """An AuditSpec from a TOML file path or TOML text; errors are one line naming the key."""
    text = _spec_text(path_or_text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError("", f"invalid TOML: {one_line(exc)}") from None
    return AuditSpec.from_mapping(data)


def _spec_text(path_or_text: str | os.PathLike) -> str:
    if isinstance(path_or_text, os.PathLike) or ("\n" not in str(path_or_text) and str(path_or_text).endswith(".toml")):
        path = Path(path_or_text).expanduser()
        if not path.is_file():
            raise SpecError("", f"file {path} does not exist")
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError("", f"cannot read {path}: {one_line(exc)}") from None
    return str(path_or_text)


def packaged_spec(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def default_pocket_spec() -> str:
    """The TOML text of the pocket-world audit shipped with the package."""
    return packaged_spec(DEFAULT_POCKET_SPEC)
