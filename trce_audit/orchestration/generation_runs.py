"""Generate images for a model and a prompt set (resumable; see trce_audit.generation.runner)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ..generation import GenerationSettings
from ..generation.runner import run_generation
from ..models.resolve import resolve_model
from .prompt_sets import resolve_prompt_set

if TYPE_CHECKING:
    from ..store import Store
    from ..workspace import Workspace


def generate(
    store: "Store",
    workspace: "Workspace",
    *,
    model: str,
    prompts: str | int,
    settings: GenerationSettings | None = None,
    limit: int | None = None,
    parent_run_id: int | None = None,
    allow_pickle: bool = False,
    progress: Callable[[int, int], None] | None = None,
    executor: Any = None,
) -> dict[str, Any]:
    """Make (or find) one image per prompt; returns the generation run's id and counts. ``executor``
    (a trce_audit.execution.Executor) draws the image shards; default: this process."""
    settings = (settings or GenerationSettings()).validate()
    ref = resolve_model(model, store=store, workspace=workspace, allow_pickle=allow_pickle)
    set_id = resolve_prompt_set(store, workspace, prompts, limit=limit)
    result = run_generation(
        store, workspace, ref, set_id, settings,
        limit=limit, parent_run_id=parent_run_id, allow_pickle=allow_pickle, progress=progress, executor=executor,
    )
    return {"model": ref.spec, "model_fingerprint": ref.fingerprint, **result.as_dict()}
