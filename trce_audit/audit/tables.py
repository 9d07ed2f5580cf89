"""The tables of an audit spec ([generation], [prompts], [metrics], [[erasers]], [[attacks]], [gate]), each
a frozen dataclass read from its TOML table. Field names and defaults enter the audit's identity through
`AuditSpec.as_dict`, so renaming one changes every stored audit's identity."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Mapping

from ..errors import ConfigError
from ..gating.limits import AsrLimit, asr_limit, format_points, parse_points
from ..generation.settings import SCHEDULERS
from ..models.device import DTYPES
from ..models.families.presets import preset_named
from . import fields
from .fields import SpecError

# The dtype names models.device can load, as a choice the value parser checks ("one of fp32, fp16, …").
DTYPE = Literal[tuple(DTYPES)]


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
    # Fields that came with model families; as_dict leaves out None, so earlier audits keep their identity.
    preset: str | None = None
    guidance: float | None = None
    max_sequence_length: int | None = None

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], where: str = "generation") -> "GenerationSpec":
        fields.check_keys(table, tuple(cls.__dataclass_fields__), f"[{where}]")
        values: dict[str, Any] = {}
        for key in ("steps", "batch_size"):
            if key in table:
                values[key] = fields.typed(table[key], int, f"{where}.{key}", minimum=1)
        for key in ("limit", "height", "width"):
            if key in table:
                values[key] = fields.typed(table[key], int | None, f"{where}.{key}", minimum=1)
        if "dtype" in table:
            values["dtype"] = fields.typed(table["dtype"], DTYPE, f"{where}.dtype")
        for key in ("scheduler", "device", "preset"):
            if key in table:
                values[key] = fields.name(table[key], f"{where}.{key}")
        if "guidance" in table:
            values["guidance"] = fields.typed(table["guidance"], float | None, f"{where}.guidance")
        if "max_sequence_length" in table:
            values["max_sequence_length"] = fields.typed(table["max_sequence_length"], int | None, f"{where}.max_sequence_length", minimum=1)
        _check_generation(values, where)
        if values.get("preset"):
            # The preset fills what the table leaves out, as --preset does on the command line.
            try:
                preset = preset_named(values["preset"])
            except ConfigError as exc:
                raise SpecError(f"{where}.preset", str(exc)) from exc
            values = {**preset.fills(), **values}
        return cls(**values)


def _check_generation(values: dict[str, Any], where: str) -> None:
    """What GenerationSettings.validate refuses, refused when the spec is read: an audit must not erase for
    an hour and then find that its evaluation cannot run (validate itself also resolves the device)."""
    for side in ("height", "width"):
        if values.get(side) is not None and (values[side] < 8 or values[side] % 8):
            raise SpecError(f"{where}.{side}", f"must be a positive multiple of 8, got {values[side]}")
    if values.get("max_sequence_length") is not None and values["max_sequence_length"] > 512:
        raise SpecError(f"{where}.max_sequence_length", f"must be between 1 and 512, got {values['max_sequence_length']}")
    guidance = values.get("guidance")
    if guidance is not None and not 0 <= guidance < math.inf:
        raise SpecError(f"{where}.guidance", f"must be a finite number of at least 0, got {guidance!r}")
    if values.get("scheduler") is not None and values["scheduler"] not in SCHEDULERS:
        raise SpecError(f"{where}.scheduler", f"must be one of {', '.join(SCHEDULERS)}, got {values['scheduler']!r}")


@dataclass(frozen=True)
class PromptsSpec:
    attack_seeds: tuple[str, ...] = ()
    eval: tuple[str, ...] = ()
    preserve: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> "PromptsSpec":
        fields.check_keys(table, ("attack_seeds", "eval", "preserve"), "[prompts]")
        return cls(*(fields.names(table.get(key), f"prompts.{key}") for key in ("attack_seeds", "eval", "preserve")))


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
            both = fields.names(value, "metrics")
            return cls(both, both)
        table = fields.table(value, "metrics")
        fields.check_keys(table, ("eval", "preserve", "judge", "as_published"), "[metrics]")
        return cls(
            fields.names(table.get("eval"), "metrics.eval"),
            fields.names(table.get("preserve"), "metrics.preserve"),
            fields.name(table["judge"], "metrics.judge") if "judge" in table else None,
            fields.typed(table.get("as_published", False), bool, "metrics.as_published"),
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
        table = fields.table(table, where)
        fields.check_keys(table, ("name", "label", "preset", "config", "seeds"), where)
        if "name" not in table:
            raise SpecError(where, "missing key 'name'")
        name = fields.name(table["name"], f"{where}.name")
        config = fields.plain_table(table.get("config"), f"{where}.config")
        seeds = fields.seeds(table["seeds"], f"{where}.seeds") if "seeds" in table else None
        if seeds is not None and "seed" in config:
            raise SpecError(f"{where}.seeds", "give the seeds here or config.seed, not both")
        return cls(
            name=name,
            config=config,
            preset=fields.name(table["preset"], f"{where}.preset") if "preset" in table else None,
            label=fields.name(table["label"], f"{where}.label") if "label" in table else name,
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
    transfer_from: str | None = None  # a text-encoder search on this SD model, replayed on each target

    @classmethod
    def from_mapping(cls, table: Any, where: str) -> "AttackSpec":
        table = fields.table(table, where)
        fields.check_keys(table, ("name", "label", "preset", "budget", "config", "seeds", "targets", "limit", "judge", "as_published",
                                  "transfer_from"), where)
        if "name" not in table:
            raise SpecError(where, "missing key 'name'")
        name = fields.name(table["name"], f"{where}.name")
        budget = {key: fields.finite(fields.typed(value, float, f"{where}.budget.{key}", minimum=0), f"{where}.budget.{key}")
                  for key, value in fields.table(table.get("budget"), f"{where}.budget").items()}
        return cls(
            name=name,
            budget=budget,
            config=fields.plain_table(table.get("config"), f"{where}.config"),
            preset=fields.name(table["preset"], f"{where}.preset") if "preset" in table else None,
            seeds=fields.names(table.get("seeds"), f"{where}.seeds"),
            targets=fields.names(table.get("targets"), f"{where}.targets"),
            label=fields.name(table["label"], f"{where}.label") if "label" in table else name,
            limit=fields.typed(table.get("limit"), int | None, f"{where}.limit", minimum=1),
            judge=fields.name(table["judge"], f"{where}.judge") if "judge" in table else None,
            as_published=fields.typed(table["as_published"], bool, f"{where}.as_published") if "as_published" in table else None,
            transfer_from=fields.name(table["transfer_from"], f"{where}.transfer_from") if "transfer_from" in table else None,
        )


@dataclass(frozen=True)
class GateSpec:
    """Limits `trce-audit gate` applies; ``max_increase`` is a fraction (2 points = 0.02)."""

    max_asr: tuple[AsrLimit, ...] = ()
    max_increase: float | None = None
    baseline: str | None = None

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], where: str = "gate") -> "GateSpec":
        fields.check_keys(table, ("max_asr", "max_increase", "baseline"), f"[{where}]")
        limits = fields.table(table.get("max_asr"), f"{where}.max_asr")
        try:
            max_asr = tuple(asr_limit(target, value, f"{where}.max_asr") for target, value in limits.items())
            targets = [limit.target for limit in max_asr]
            twice = next((target for target in targets if targets.count(target) > 1), None)
            if twice is not None:  # " a" and "a" are one limit: the spec would hold two values for it
                raise ConfigError(f"{where}.max_asr: names the limit {twice!r} twice")
            increase = parse_points(table["max_increase"], f"{where}.max_increase") if "max_increase" in table else None
        except ConfigError as exc:
            # the limit parsers name the key already; SpecError only adds the "audit spec: " prefix
            raise SpecError("", str(exc)) from None
        baseline = table.get("baseline")
        if baseline is not None:
            # a baseline audit run id is naturally written as a TOML integer (a boolean is no run id)
            is_id = isinstance(baseline, int) and not isinstance(baseline, bool)
            baseline = fields.name(str(baseline) if is_id else baseline, f"{where}.baseline")
        return cls(max_asr, increase, baseline)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"max_asr": {limit.target: limit.max_asr for limit in self.max_asr}}
        if self.max_increase is not None:
            data["max_increase"] = format_points(self.max_increase)
        if self.baseline is not None:
            data["baseline"] = self.baseline
        return data
