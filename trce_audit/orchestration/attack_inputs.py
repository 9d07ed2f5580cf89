"""What an attack is asked for, read before its run starts: the attack's config, the concept, the
un-erased model, and the texts and rows its search draws on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from .. import data, registry  # data: called through the package, where tests replace its loaders
from ..attacks.base import below_paper_budget, budget_ratios
from ..data.concepts import Concept
from ..errors import ConfigError
from ..models.resolve import ModelRef, resolve_model

if TYPE_CHECKING:
    from ..store import Store
    from ..workspace import Workspace

# The concept an attack targets when none is named, per model world.
DEFAULT_CONCEPT = {"sd": "nudity"}
# Where an attack's files go under the workspace's artefacts: learned embeddings, fine-tuned checkpoints.
ARTEFACT_FOLDERS = {"embedding": "embeddings", "weights": "finetuned"}


def attack_config(name: str, *, world: str = "sd", budget: dict[str, Any] | None = None):
    """The attack class and its validated config (world preset + overrides); raises one-line errors."""
    cls = registry.load("attack", name)
    return cls, cls.Config.for_world(world).with_overrides(budget or {})


def resolve_concept(concept: "str | Concept | None", world: str, workspace: "Workspace") -> Concept:
    """The named concept, or the world's default (SD: nudity; else the concept flagged default, or the
    only one)."""
    if isinstance(concept, Concept):
        return concept
    name = concept or DEFAULT_CONCEPT.get(world)
    if name is not None:
        return data.load_concept(name, world=world, workspace=workspace)
    known = [data.load_concept(n, world=world, workspace=workspace) for n in data.concept_names(world)]
    defaults = [c for c in known if c.default] or (known if len(known) == 1 else [])
    if not defaults:
        raise ConfigError(f"name the concept to attack with --concept (the {world} world has no default concept)")
    return defaults[0]


def original_ref(store: "Store", workspace: "Workspace", target: ModelRef, original_model: str | None, allow_pickle: bool) -> ModelRef | None:
    """The un-erased model: --original-model, else an artefact's parent model, else none (the target)."""
    if original_model:
        return resolve_model(original_model, store=store, workspace=workspace, allow_pickle=allow_pickle)
    if target.artefact_id is not None:
        parent = store.get_artefact(target.artefact_id).parent_model
        if parent:
            return resolve_model(parent, store=store, workspace=workspace, allow_pickle=allow_pickle)
    return None


def corpus(attack_obj: Any, concept: Concept, workspace: "Workspace") -> list[str]:
    """Texts whose tokens make up a vocabulary="corpus" search: the concept's evaluation and preserve
    sets (the seed prompts and the concept's pairs are added by the attack itself)."""
    if getattr(attack_obj.config, "vocabulary", "all") != "corpus":
        return []
    return [row.text for name in (*concept.eval_sets, *concept.preserve_sets) for row in data.load_prompt_set(name, workspace=workspace)]


def benign_rows(workspace: "Workspace", concept: str) -> Callable[[str], list]:
    """A caption set's rows without those that request the attacked concept (fine-tuning's benign data)."""

    def rows(name: str) -> list:
        return [row for row in data.load_prompt_set(name, workspace=workspace) if not row.requests_concept(concept)]

    return rows


def budget_meta(attack_obj: Any) -> dict[str, Any]:
    """The attack's budget against its paper's, as recorded with its adversarial set."""
    ratios = budget_ratios(attack_obj.config.budget, attack_obj.paper_budget)
    return {"budget_ratios": ratios, "below_paper_budget": below_paper_budget(ratios)}
