"""List and resolve models."""

from __future__ import annotations

from typing import Any

from ..models.resolve import BUILTIN_MODELS, REFERENCE_HUB_MODELS, ModelRef, resolve_model
from ..store import Store
from ..workspace import Workspace


def list_models(store: Store | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"model": name, "kind": "builtin", "description": text} for name, text in BUILTIN_MODELS.items()
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
