"""The model a command uses when none is named, and whether it can be had without a long network wait.

``erase`` starts from the concept's reference model (SD-1.4 for the SD concepts, ``pocket`` for the pocket
world); ``attack`` and ``eval`` prefer the workspace's most recent erased artefact for the concept.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..data.concepts import SD_CONCEPTS, SD_EXTRA_CONCEPTS, _looks_like_path, pocket_concepts
from ..errors import ModelError
from .builtin import BUILTIN_MODELS

if TYPE_CHECKING:
    from ..store import Store

REFERENCE_MODELS = {"sd": "CompVis/stable-diffusion-v1-4", "pocket": "pocket"}
HUB_HOST = ("huggingface.co", 443)
HUB_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class DefaultModel:
    spec: str
    concept: str | None
    why: str  # one line for stderr: which model was chosen and why


def concept_world(concept: str | None) -> str:
    """The world a concept name belongs to; files and unknown names are SD concepts (as load_concept reads them)."""
    if concept is None or _looks_like_path(concept) or concept in {**SD_CONCEPTS, **SD_EXTRA_CONCEPTS}:
        return "sd"
    try:
        return "pocket" if concept in pocket_concepts() else "sd"
    except Exception:  # the pocket world failing to import is reported when the concept is loaded
        return "sd"


def reference_model(concept: str | None) -> str:
    return REFERENCE_MODELS[concept_world(concept)]


def latest_artefact(store: "Store", concept: str | None):
    """The most recent erased model in the store for ``concept`` (any concept when None), or None."""
    for artefact in reversed(store.list_artefacts()):
        meta = artefact.meta or {}
        erased = artefact.kind == "model"  # not a checkpoint an attack fine-tuned ("attack-model")
        if erased and (concept is None or meta.get("concept") == concept) and (Path(artefact.path) / "model_index.json").is_file():
            return artefact
    return None


def default_for_erase(concept: str) -> DefaultModel:
    spec = reference_model(concept)
    return DefaultModel(spec, concept, f"model: {spec} (the reference model for concept {concept!r}; choose another with --model)")


def default_for_target(store: "Store", concept: str | None) -> DefaultModel:
    """For attack/eval: the latest artefact erased for ``concept``, else the concept's reference model."""
    artefact = latest_artefact(store, concept)
    if artefact is not None:
        meta = artefact.meta or {}
        return DefaultModel(
            f"artefact:{artefact.id}", concept or meta.get("concept"),
            f"model: artefact:{artefact.id} ({meta.get('description') or 'the latest erased model'}; "
            "the workspace's latest for this concept; choose another with --model)",
        )
    spec = reference_model(concept)
    return DefaultModel(spec, concept, f"model: {spec} (no erased model for this concept in the workspace: "
                        "the reference model; choose another with --model)")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_reachable(timeout: float = HUB_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub opens within ``timeout`` seconds (False when HF_HUB_OFFLINE is set)."""
    if hub_offline():
        return False
    try:
        socket.create_connection(HUB_HOST, timeout=timeout).close()
        return True
    except OSError:
        return False


def hub_cached(repo_id: str, filename: str = "model_index.json") -> bool:
    """Whether the HF cache holds a snapshot of ``repo_id`` with ``filename`` (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache  # deferred: doctor and --help stay light
    except ImportError:
        return False
    found = try_to_load_from_cache(repo_id, filename)
    return isinstance(found, str)


def require_available(spec: str) -> None:
    """Fail fast, in one line, when a default hub model is neither cached nor downloadable."""
    if spec in BUILTIN_MODELS or spec.startswith("artefact:") or hub_cached(spec):
        return
    if hub_offline() or not hub_reachable():
        why = "HF_HUB_OFFLINE is set" if hub_offline() else "the hub cannot be reached"
        raise ModelError(
            f"model {spec} is not in the Hugging Face cache and {why}; download it where there is network "
            f"(huggingface-cli download {spec}), pass a local copy with --model FOLDER, or use --model pocket "
            "--concept cross for the offline pocket world"
        )
