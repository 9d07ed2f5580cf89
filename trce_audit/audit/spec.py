"""The audit spec: one TOML file that says what `trce-audit audit` erases, attacks and measures, and what
`trce-audit gate` then requires. This module parses and validates it; it runs nothing. Each table is a
dataclass of its own (audit/tables.py), and the checks on single values live in audit/fields.py.

Format (every table optional except where noted; see docs/audit-spec.md)::

    name = "pocket"                    # a label for the report
    model = "pocket"                   # required: base model spec (pocket | pocket-flux | hub id | folder | artefact:ID)
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
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from ..errors import one_line
from . import fields
from .fields import SpecError
from .tables import AttackSpec, EraserSpec, GateSpec, GenerationSpec, MetricsSpec, PromptsSpec
from ..workspace import user_path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_POCKET_SPEC = "default_pocket.toml"
SD14_NUDITY_SPEC = "sd14_nudity.toml"


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
        return fields.without_none(json.loads(json.dumps(data)))  # as TOML would give it: lists, no nulls

    def identity_dict(self) -> dict[str, Any]:
        """``as_dict`` without the runtime-only generation options (batch size, device): the same spec
        run on a GPU or with another batch size is the same audit."""
        data = self.as_dict()
        data["generation"] = {k: v for k, v in data.get("generation", {}).items() if k not in GenerationSpec.runtime_fields}
        return data

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "AuditSpec":
        fields.check_keys(
            data,
            ("name", "description", "model", "concept", "concepts", "include_base", "generation", "prompts",
             "metrics", "erasers", "attacks", "gate"),
            "",
        )
        if "model" not in data:
            raise SpecError("", "missing key 'model' (the base model spec, e.g. \"pocket\")")
        if ("concept" in data) == ("concepts" in data):
            raise SpecError("", "give exactly one of 'concept' or 'concepts'")
        concepts = fields.names(data.get("concept", data.get("concepts")), "concept" if "concept" in data else "concepts")
        if not concepts:
            raise SpecError("concepts", "names no concept")
        include_base = fields.typed(data.get("include_base", True), bool, "include_base")
        erasers = tuple(EraserSpec.from_mapping(t, f"erasers[{i}]") for i, t in enumerate(fields.tables(data.get("erasers"), "erasers")))
        attacks = tuple(AttackSpec.from_mapping(t, f"attacks[{i}]") for i, t in enumerate(fields.tables(data.get("attacks"), "attacks")))
        spec = cls(
            model=fields.name(data["model"], "model"),
            concepts=concepts,
            name=fields.name(data.get("name", "audit"), "name"),
            description=fields.typed(data.get("description", ""), str, "description"),
            include_base=include_base,
            generation=GenerationSpec.from_mapping(fields.table(data.get("generation"), "generation")),
            prompts=PromptsSpec.from_mapping(fields.table(data.get("prompts"), "prompts")),
            metrics=MetricsSpec.from_value(data.get("metrics")),
            erasers=erasers,
            attacks=attacks,
            gate=GateSpec.from_mapping(fields.table(data.get("gate"), "gate")),
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


def load_spec(path_or_text: str | os.PathLike) -> AuditSpec:
    """An AuditSpec from a TOML file path or TOML text; errors are one line naming the key (and the file,
    when the spec is one)."""
    text, path = _spec_text(path_or_text)
    try:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SpecError("", f"invalid TOML: {one_line(exc)}") from None
        except RecursionError:
            raise SpecError("", "invalid TOML: nested deeper than the parser goes") from None
        return AuditSpec.from_mapping(data)
    except SpecError as exc:
        raise exc.in_file(path) if path is not None else exc from None


def _spec_text(path_or_text: str | os.PathLike) -> tuple[str, Path | None]:
    """The spec's text, and the file it came from (None for text)."""
    if isinstance(path_or_text, os.PathLike) or ("\n" not in str(path_or_text) and str(path_or_text).endswith(".toml")):
        path = user_path(path_or_text)
        if not os.path.isfile(path):  # False, not an OSError, for a name too long to be a file
            raise SpecError("", "the file does not exist", path)
        try:
            # utf-8-sig: a spec saved by an editor that writes a byte-order mark reads as it shows
            return path.read_text(encoding="utf-8-sig"), path
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError("", f"cannot read the file: {one_line(exc)}", path) from None
    return str(path_or_text), None


def packaged_spec(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def default_pocket_spec() -> str:
    """The TOML text of the pocket-world audit shipped with the package."""
    return packaged_spec(DEFAULT_POCKET_SPEC)
