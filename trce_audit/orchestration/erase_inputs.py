"""What an erase is asked for, read before any run starts: its stages, its model and concept, the
captions it preserves and the context its eraser runs in."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .. import data, registry  # data: called through the package, where tests replace its loaders
from ..erasers.base import EraseContext
from ..errors import ConfigError
from ..models.families import family_name
from ..models.folder import world_of
from ..models.resolve import ModelRef, locate_model, resolve_model

if TYPE_CHECKING:
    from ..data.concepts import Concept
    from ..erasers.base import CaptionsFn, ProgressFn
    from ..store import Store
    from ..workspace import Workspace


def parse_stages(stages: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """"1", "2", "1,2" (or a sequence of ints) as a sorted tuple; None keeps the eraser's default."""
    if stages is None:
        return None
    if isinstance(stages, str):
        parts = [p.strip() for p in stages.split(",") if p.strip()]
        if not parts or not all(p.isascii() and p.isdigit() for p in parts):  # "²" is a digit to isdigit()
            raise ConfigError(f"--stages expects stage numbers separated by commas (e.g. 1,2), got {stages!r}")
        stages = [int(p) for p in parts]
    return tuple(sorted(int(s) for s in stages))


def captions_from_data(workspace: "Workspace", concept: str) -> "CaptionsFn":
    """Captions to preserve, without those that ask for the concept being erased: preserving them would
    pull the edit back towards the concept (pocket-general shows a cross in about a quarter of its rows;
    COCO rows carry no concept metadata and are all kept)."""

    def captions(name: str, limit: int | None) -> list[str]:
        rows = data.load_prompt_set(name, workspace=workspace, limit=limit)
        kept = [row.text for row in rows if not row.requests_concept(concept)]
        if len(kept) < len(rows):
            kept = [row.text for row in data.load_prompt_set(name, workspace=workspace) if not row.requests_concept(concept)]
        return kept[:limit] if limit else kept

    return captions


def erase_context(device: str, *, progress: "ProgressFn | None" = None, **fields: Any) -> EraseContext:
    """An eraser's context on ``device`` (module level, so that a worker can be sent it)."""
    return EraseContext(device=device, progress=progress or (lambda stage, done, total: None), **fields)


def check_erase_config(
    store: "Store", *, eraser: str, concept: "str | Concept", model: "str | ModelRef",
    config_file: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None,
) -> None:
    """Build the eraser's config from what the user gave before the model is fingerprinted (which writes
    the workspace's cache): a bad --set or --config is refused with nothing written. A hub model, whose
    folder comes with its download, is checked after it as before."""
    if isinstance(model, ModelRef):
        return
    folder = locate_model(model, store=store)
    if folder is None:
        return
    name = concept if isinstance(concept, str) else concept.name
    registry.load("eraser", eraser).make_config(world=world_of(folder), config_file=config_file, overrides=overrides,
                                                 concept=name, family=family_name(folder))


def resolve_erase_inputs(
    store: "Store", workspace: "Workspace", *, eraser: str, concept: "str | Concept", model: str | ModelRef, allow_pickle: bool = False,
) -> tuple[ModelRef, "Concept"]:
    """The model and the concept (a name or file, loaded in the model's world) an erase names; an
    unknown eraser is reported before the model is resolved."""
    registry.load("eraser", eraser)
    ref = model if isinstance(model, ModelRef) else resolve_model(model, store=store, workspace=workspace, allow_pickle=allow_pickle)
    if isinstance(concept, str):
        concept = data.load_concept(concept, world=ref.world, workspace=workspace)
    return ref, concept
