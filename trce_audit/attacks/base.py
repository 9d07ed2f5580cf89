"""What every attack shares: its typed config with a budget, budget checks, the run context and result.

An attack turns seed prompts into adversarial prompts against a target model. Budgets (iterations,
population sizes …) default to the published papers'; a run below one tenth of a paper budget is
allowed but warned about and recorded, so that a weak attack is never mistaken for the real one.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal

from .. import registry
from ..errors import ConfigError, TrceAuditError
from ..models import tokens as tk
from ..parsing import ValueProblem, parse_value
from ..records import PromptRow
from . import diffusion as dm

if TYPE_CHECKING:
    from ..data.concepts import Concept

# Below this fraction of any paper budget a run is flagged as not representative of the attack.
BELOW_BUDGET_FRACTION = 0.1

# What an attacker controls: only the prompt text; a learned token embedding fed to the text encoder;
# or the model's weights (fine-tuning). A model tested only at "prompt" says nothing about the others.
# A weights-tier attack's rows keep the seed prompts and name, under meta "finetuned", the checkpoints
# they are scored on.
TIERS = ("prompt", "embedding", "weights")


class BelowPaperBudgetWarning(UserWarning):
    """An attack runs with under a tenth of a budget its paper used."""


@dataclass
class Budget:
    """Budget knobs of an attack; subclasses add fields whose defaults are the paper's values."""


@dataclass
class AttackConfig:
    """Options of an attack. Subclasses add fields and a ``budget`` of their own Budget subclass."""

    budget: Budget = field(default_factory=Budget)
    seed: int = 0  # seeds the optimiser's randomness; the prompt rows keep their own generation seeds

    # World -> field overrides (budget keys included) applied by ``for_world``.
    world_presets: ClassVar[dict[str, dict[str, Any]]] = {}
    # Fields that change speed or memory but never a result: kept out of the run identity.
    runtime_fields: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def for_world(cls, world: str) -> "AttackConfig":
        """The defaults for a model world ("sd" uses the papers' values; "pocket" may be cheaper)."""
        return cls().with_overrides(cls.world_presets.get(world, {}))

    def with_overrides(self, overrides: dict[str, Any]) -> "AttackConfig":
        """A copy with ``key=value`` overrides; keys name config or budget fields, strings are converted."""
        own = {f.name: f for f in dataclasses.fields(self) if f.name != "budget"}
        budget_fields = {f.name: f for f in dataclasses.fields(self.budget)}
        own_hints = typing.get_type_hints(type(self))
        budget_hints = typing.get_type_hints(type(self.budget))
        top: dict[str, Any] = {}
        budget: dict[str, Any] = {}
        for key, value in overrides.items():
            name = key.replace("-", "_")
            if name in budget_fields:  # what the attack may spend: never below nothing (as the audit spec says)
                budget[name] = _parsed(key, value, budget_hints[name], minimum=0)
            elif name in own:
                top[name] = _parsed(key, value, own_hints[name])
            else:
                known = ", ".join(sorted(budget_fields) + sorted(own))
                raise ConfigError(f"unknown budget/config key {key!r} for this attack; known keys: {known}")
        new_budget = dataclasses.replace(self.budget, **budget)
        return dataclasses.replace(self, budget=new_budget, **top)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def identity_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.as_dict().items() if k not in self.runtime_fields}


@dataclass
class TokenSearchConfig(AttackConfig):
    """Options of attacks that search over the tokenizer's vocabulary."""

    # Forbid tokens that spell one of the concept's keywords (the papers search every token).
    exclude_concept_words: bool = False
    # "all": every non-special token (the papers). "corpus": only tokens that occur in the attack's
    # corpus (the concept's evaluation/preserve sets, its pairs and the seed prompts) -- for models
    # trained on a closed caption grammar, whose other token embeddings were never trained.
    vocabulary: Literal["all", "corpus"] = "all"


def _parsed(key: str, value: Any, hint: Any, minimum: float | None = None) -> Any:
    """A CLI string (or a typed value) as a field's type, or a one-line ConfigError; no option takes NaN or
    an infinity."""
    try:
        parsed = parse_value(value, hint, minimum=minimum)
    except ValueProblem as problem:
        raise ConfigError(f"{key} must be {problem.expected}, got {value!r}") from None
    items = parsed if isinstance(parsed, tuple) else (parsed,)
    if any(isinstance(item, float) and not math.isfinite(item) for item in items):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    return parsed


def budget_ratios(budget: Budget, paper_budget: dict[str, float]) -> dict[str, float]:
    """Each paper-budget key's fraction actually used (1.0 = the paper's value)."""
    return {key: float(getattr(budget, key)) / float(paper) for key, paper in paper_budget.items() if paper}


def below_paper_budget(ratios: dict[str, float]) -> bool:
    return any(ratio < BELOW_BUDGET_FRACTION for ratio in ratios.values())


@dataclass
class AttackContext:
    """What a run needs besides models and prompts: device, progress reporting, an optional judge.

    ``judge(text, row) -> bool`` says whether a candidate prompt already succeeds; attacks that stop
    early on success in their paper (UnlearnDiff) call it when given.
    """

    device: str = "cpu"
    progress: Callable[[int, int, str], None] | None = None
    judge: Callable[[str, "PromptRow"], bool] | None = None
    corpus: list[str] = field(default_factory=list)  # extra texts for vocabulary="corpus"
    # Called with (seed index, adversarial row) as each seed's search ends, so the caller can store
    # it at once and a killed run resumes at the next seed.
    on_seed: Callable[[int, "PromptRow"], None] | None = None
    # Rows an earlier, interrupted attempt of the same run already stored (seed index -> row): an
    # attack whose seeds share one search (concept inversion's one embedding) reuses it from them.
    finished: dict[int, "PromptRow"] = field(default_factory=dict)
    # Where an attack writes files its rows refer to (concept inversion's learned embedding);
    # the API passes the workspace's artefacts folder, None means a folder under the temp dir.
    artefact_dir: Path | None = None
    # The target model's folder (weights-tier attacks copy its world marker and guard into checkpoints).
    model_dir: Path | None = None
    # A named prompt set's rows without those that request the attacked concept (benign training data).
    benign_rows: Callable[[str], list["PromptRow"]] | None = None
    # The run's generation settings (GenerationSettings or None): the image size and T5 length the
    # attacks' own training images are drawn at; None draws at the family's native size.
    generation: Any = None

    def seed_done(self, index: int, row: "PromptRow") -> "PromptRow":
        if self.on_seed is not None:
            self.on_seed(index, row)
        return row

    def report(self, done: int, total: int, what: str) -> None:
        if self.progress is not None:
            self.progress(done, total, what)


@dataclass
class AttackResult:
    rows: list["PromptRow"]
    stats: dict[str, Any] = field(default_factory=dict)


class Attack:
    """Base class. Subclasses set ``name``, ``version``, ``tier``, ``Config``, ``paper_budget`` and ``run``."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    # Model families (models/families) the attack runs on; any other is refused in one line before loading.
    families: ClassVar[tuple[str, ...]] = ("sd",)
    tier: ClassVar[str] = "prompt"  # one of TIERS
    Config: ClassVar[type[AttackConfig]] = AttackConfig
    paper_budget: ClassVar[dict[str, float]] = {}
    needs_original: ClassVar[bool] = False  # white-box attacks that need the un-erased model
    # Attacks whose search reads only the tokenizer and text encoder (Ring-A-Bell): models that share
    # them (a base model and every eraser that edits only its UNet) get the same prompts, so the API
    # reuses a search instead of repeating it per target.
    text_encoder_only: ClassVar[bool] = False
    is_replay: ClassVar[bool] = False

    def __init__(self, config: AttackConfig | None = None):
        self.config = config if config is not None else self.Config()
        if not isinstance(self.config, self.Config):
            raise ConfigError(f"{self.name} expects a {self.Config.__name__}, got {type(self.config).__name__}")

    def budget_report(self) -> dict[str, Any]:
        """Ratios to the paper budget; warns (Python warning) when below one tenth of any."""
        ratios = budget_ratios(self.config.budget, self.paper_budget)
        below = below_paper_budget(ratios)
        if below:
            short = ", ".join(f"{k}={getattr(self.config.budget, k)} ({r:.3g}x paper {self.paper_budget[k]})" for k, r in ratios.items() if r < BELOW_BUDGET_FRACTION)
            warnings.warn(f"{self.name} runs below one tenth of its paper budget: {short}", BelowPaperBudgetWarning, stacklevel=2)
        return {"budget_ratios": ratios, "below_paper_budget": below, "paper_budget": dict(self.paper_budget)}

    def white_box_setup(
        self, target_pipe: Any, original_pipe: Any, concept: "Concept", seed_rows: list["PromptRow"], context: AttackContext
    ) -> tuple[Any, bool, Any]:
        """(original pipe, whether it is the target itself, search vocabulary as a tensor) for the
        gradient attacks, with both pipelines frozen on the context's device."""
        import torch  # torch stays off the light path: listing attacks imports this module

        original_is_target = original_pipe is None
        original_pipe = original_pipe or target_pipe
        dm.freeze(target_pipe, context.device)
        dm.freeze(original_pipe, context.device)
        vocab = torch.tensor(self.search_vocabulary(target_pipe, concept, seed_rows, context), device=context.device)
        return original_pipe, original_is_target, vocab

    def search_vocabulary(self, pipe: Any, concept: "Concept", seed_rows: list["PromptRow"], context: AttackContext) -> list[int]:
        """Token ids this run may choose, per ``exclude_concept_words`` and ``vocabulary``."""
        config = self.config
        excluded = concept.keywords if getattr(config, "exclude_concept_words", False) else ()
        corpus = None
        if getattr(config, "vocabulary", "all") == "corpus":
            corpus = [*context.corpus, *(row.text for row in seed_rows), *(text for pair in concept.pairs for text in pair)]
        ids = tk.searchable_ids(pipe.tokenizer, pipe.text_encoder, excluded, corpus=corpus)
        if not ids:
            raise ConfigError(f"{self.name}: the search vocabulary is empty (vocabulary={getattr(config, 'vocabulary', 'all')})")
        return ids

    def run(
        self,
        target_pipe: Any,
        concept: "Concept",
        seed_rows: list["PromptRow"],
        *,
        original_pipe: Any = None,
        context: AttackContext | None = None,
        indices: list[int] | None = None,
    ) -> AttackResult:
        """Adversarial rows for the seeds at ``indices`` (default: all), in that order. A seed's
        randomness comes from its index in the full ``seed_rows`` (which a corpus vocabulary reads
        whole), so any split of the indices gives the same row per seed as one call."""
        raise NotImplementedError

    @staticmethod
    def seed_indices(seed_rows: list["PromptRow"], indices: list[int] | None) -> list[int]:
        if indices is None:
            return list(range(len(seed_rows)))
        bad = [i for i in indices if not 0 <= i < len(seed_rows)]
        if bad:
            raise ConfigError(f"seed indices {bad} are outside the {len(seed_rows)} seed prompts")
        return list(indices)


def adversarial_row(seed: "PromptRow", text: str, attack: str, meta: dict[str, Any]) -> "PromptRow":
    """The adversarial prompt for a seed row: same generation seed and guidance, provenance in meta."""
    return PromptRow(
        text=text,
        seed=seed.seed,
        guidance=seed.guidance,
        meta={"attack": attack, "seed_prompt": seed.text, "seed_row_hash": seed.row_hash, **meta},
    )


def attack_tier(name: str) -> str | None:
    """The threat tier of a registered attack (imports its module, not torch); None when it cannot load."""
    try:
        return check_tier(registry.load("attack", name))
    except TrceAuditError:
        return None


def check_tier(cls: type) -> str:
    tier = getattr(cls, "tier", "prompt")
    if tier not in TIERS:
        raise ConfigError(f"attack {getattr(cls, 'name', cls.__name__)!r} declares tier {tier!r}; tiers are {', '.join(TIERS)}")
    return tier


def warn_to_stderr(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")
