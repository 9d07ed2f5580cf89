"""Generate images for a model and a prompt set (resumable; see trce_audit.generation.runner)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ..errors import DataError

if TYPE_CHECKING:
    from ..generation import GenerationSettings
    from ..store import Store
    from ..workspace import Workspace


def resolve_prompt_set(store: "Store", workspace: "Workspace", prompts: str | int, *, limit: int | None = None) -> int:
    """A stored prompt-set id from an id, "set:ID", or a name known to trce_audit.data."""
    text = str(prompts).strip()
    if isinstance(prompts, int) or text.isdigit() or text.startswith("set:"):
        digits = text.split(":", 1)[1] if text.startswith("set:") else text
        if not digits.isdigit():
            raise DataError(f"prompt set id must be an integer, got {prompts!r}")
        return store.get_prompt_set(int(digits)).id
    try:
        from ..data import ensure_prompt_set
    except ImportError as exc:
        raise DataError(f"prompt set {prompts!r}: named prompt sets are not available in this build ({exc})") from exc
    return ensure_prompt_set(store, text, workspace=workspace, limit=limit)


def generate(
    store: "Store",
    workspace: "Workspace",
    *,
    model: str,
    prompts: str | int,
    settings: "GenerationSettings | None" = None,
    limit: int | None = None,
    parent_run_id: int | None = None,
    allow_pickle: bool = False,
    progress: Callable[[int, int], None] | None = None,
    executor: Any = None,
) -> dict[str, Any]:
    """Make (or find) one image per prompt; returns the generation run's id and counts. ``executor``
    (a trce_audit.execution.Executor) draws the image shards; default: this process."""
    from ..generation import GenerationSettings
    from ..generation.runner import run_generation
    from ..models.resolve import resolve_model

    settings = (settings or GenerationSettings()).validate()
    ref = resolve_model(model, store=store, workspace=workspace, allow_pickle=allow_pickle)
    set_id = resolve_prompt_set(store, workspace, prompts, limit=limit)
    result = run_generation(
        store, workspace, ref, set_id, settings,
        limit=limit, parent_run_id=parent_run_id, allow_pickle=allow_pickle, progress=progress, executor=executor,
    )
    return {"model": ref.spec, "model_fingerprint": ref.fingerprint, **result.as_dict()}
