"""List and resolve models; the concept world of a model; the model a command uses when given none."""

from __future__ import annotations

from typing import Any

from ..models.builtin import BUILTIN_MODELS, is_installed
from ..models.defaults import DefaultModel, default_for_erase, default_for_target, require_available
from ..models.resolve import REFERENCE_HUB_MODELS, ModelRef, model_world, resolve_model
from ..store import Store
from ..workspace import Workspace

__all__ = ["default_model", "list_models", "model_world", "resolve"]


def list_models(store: Store | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"model": name, "kind": "builtin", "description": text if is_installed(name) else f"not installed: {text}"}
        for name, text in BUILTIN_MODELS.items()
    ]
    rows += [{"model": name, "kind": "hub", "description": text} for name, text in REFERENCE_HUB_MODELS.items()]
    if store is not None:
        for artefact in store.list_artefacts():
            meta = artefact.meta or {}
            rows.append(
                {
                    "model": f"artefact:{artefact.id}",
                    "kind": "artefact",
                    "description": meta.get("description") or f"erased from {artefact.parent_model}",
                    "path": artefact.path,
                    "sha256": artefact.sha256,
                    "run_id": artefact.run_id,
                }
            )
    return rows


def resolve(spec: str, *, store: Store | None = None, workspace: Workspace | None = None, allow_pickle: bool = False) -> ModelRef:
    return resolve_model(spec, store=store, workspace=workspace, allow_pickle=allow_pickle)


def default_model(concept: str | None, *, erase: bool = False, store: Store | None = None) -> DefaultModel:
    """The model (and concept) a command uses when given no model: an erase starts from the concept's
    reference model (nudity's when no concept is named); an attack or evaluation takes the latest model
    erased for the concept in ``store`` (required then), else the concept's reference model. ``why`` says
    which, in one line. A hub model neither cached nor downloadable fails in one line."""
    chosen = default_for_erase(concept or "nudity") if erase else default_for_target(store, concept)
    require_available(chosen.spec)
    return chosen
