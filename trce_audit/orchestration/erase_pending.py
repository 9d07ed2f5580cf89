"""An erase run's life around its eraser: started (or found done before), then finished with its
artefact written, or abandoned with its staging folder removed and the run failed.

Rerunning the same erase (same eraser, config, concept content, stages and model fingerprint) returns
the stored artefact instead of recomputing it.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .. import registry
from ..errors import ConfigError, one_line
from ..hashing import hash_tree, run_identity
from ..models.folder import save_erased_pipeline
from ..models.families import require_family
from ..models.resolve import ModelRef, resolve_model
from .erase_inputs import captions_from_data, erase_context, parse_stages
from ..workspace import user_path

if TYPE_CHECKING:
    from ..data.concepts import Concept
    from ..erasers.base import CaptionsFn, ErasureResult
    from ..store import Store
    from ..workspace import Workspace


@dataclass
class PendingErase:
    """A started erase run: what the eraser needs and where its artefact goes."""

    eraser: str
    cls: Any
    config: Any
    concept: "Concept"
    ref: ModelRef
    stages: tuple[int, ...] | None
    run: Any  # the store's RunHandle
    target: Path
    staging: Path
    make_context: Any  # device -> EraseContext
    allow_pickle: bool
    device: str
    started: float


def existing_artefact(store: "Store", run_id: int):
    """The artefact a complete erase run wrote, when its folder is still there."""
    for artefact in store.list_artefacts():
        if artefact.run_id == run_id and (Path(artefact.path) / "model_index.json").is_file():
            return artefact
    return None


def erase_record(artefact, run_id: int, reused: bool) -> dict[str, Any]:
    """What an erase returns: the artefact, how to name it as a model, and what the eraser reported."""
    meta = artefact.meta or {}
    return {
        "artefact_id": artefact.id,
        "model": f"artefact:{artefact.id}",
        "path": artefact.path,
        "sha256": artefact.sha256,
        "run_id": run_id,
        "reused": reused,
        "eraser": meta.get("eraser"),
        "concept": meta.get("concept"),
        "changed_params": len(meta.get("changed_params", [])),
        "guard": (meta.get("guard") or {}).get("name"),
        "seconds": meta.get("seconds"),
        "stats": meta.get("stats", {}),
    }


def start_erase(
    store: "Store", workspace: "Workspace", *, eraser: str, concept: "Concept", model: str | ModelRef,
    out: str | os.PathLike | None = None, config_file: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None, device: str = "cpu", stages: str | Sequence[int] | None = None,
    captions: "CaptionsFn | None" = None, batch_size: int = 8, allow_pickle: bool = False, executor: Any = None,
) -> "PendingErase | dict[str, Any]":
    """The stored artefact's record when this erase was done before, else its started run."""
    cls = registry.load("eraser", eraser)
    stage_tuple = parse_stages(stages)
    cls.check_stages(stage_tuple)
    stage_tuple = stage_tuple or cls.default_stages  # "--stages 1,2" and no --stages are the same erase
    ref = model if isinstance(model, ModelRef) else resolve_model(model, store=store, workspace=workspace, allow_pickle=allow_pickle)
    family = require_family(ref.path, cls.families, f"the {eraser} eraser")
    if concept.world != ref.world:
        raise ConfigError(f"concept {concept.name!r} belongs to the {concept.world} world but model {ref.spec!r} to the {ref.world} world")
    config = cls.make_config(world=ref.world, config_file=config_file, overrides=overrides, concept=concept.name, family=family)
    run_fields = dict(
        kind="erase",
        component=eraser,
        config=config.as_dict(),
        component_version=cls.version,
        model_fingerprint=ref.fingerprint,
        inputs={"concept": concept.as_dict(), "stages": list(stage_tuple) if stage_tuple else None},
    )
    previous = store.find_run(run_identity(**run_fields))
    if previous is not None and previous.status == "complete":
        found = existing_artefact(store, previous.id)
        if found is not None:
            return erase_record(found, previous.id, reused=True)
    if out is not None and user_path(out).exists() and any(user_path(out).iterdir()):
        raise ConfigError(f"output folder {user_path(out)} exists and is not empty; choose another --out")
    runtime = {"device": device, "batch_size": batch_size, **(executor.runtime() if executor is not None else {})}
    run = store.start_run(runtime=runtime, model_ref=ref.spec, **run_fields)
    target = Path(out) if out is not None else workspace.artefacts_dir / run.identity[:16]
    target = user_path(target).resolve()
    if target.exists() and any(target.iterdir()):  # a default folder left by an interrupted run
        shutil.rmtree(target)
    make_context = partial(
        erase_context, cache_dir=workspace.cache_dir, captions=captions or captions_from_data(workspace, concept.name),
        model_fingerprint=ref.fingerprint, world=ref.world, stages=stage_tuple, batch_size=batch_size,
    )
    return PendingErase(eraser, cls, config, concept, ref, stage_tuple, run, target,
                        target.with_name(f".{target.name}.partial-{os.getpid()}"), make_context, allow_pickle,
                        device, time.perf_counter())


def abandon_erase(store: "Store", pending: PendingErase, exc: BaseException, *, prefix: str = "") -> None:
    """Remove the staging folder and fail the run with the error's one line."""
    shutil.rmtree(pending.staging, ignore_errors=True)
    store.fail_run(pending.run.id, one_line(f"{prefix}{type(exc).__name__}: {exc}"))


def finish_erase(store: "Store", pending: PendingErase, pipe: Any, result: "ErasureResult", seconds: float) -> dict[str, Any]:
    """Write the erased pipeline as the run's artefact (staged, then renamed) and complete the run."""
    ref, target, staging = pending.ref, pending.target, pending.staging
    try:
        meta = {
            "eraser": pending.eraser,
            "eraser_version": pending.cls.version,
            "concept": pending.concept.name,
            "pairs": [list(p) for p in pending.concept.pairs],
            "config": pending.config.as_dict(),
            "stages": list(pending.stages) if pending.stages else None,
            "parent_model": ref.spec,
            "parent_fingerprint": ref.fingerprint,
        }
        pipe.to("cpu")
        if staging.exists():
            shutil.rmtree(staging)
        unrepeatable = result.runtime.get("nondeterministic_ops") or []
        if unrepeatable:  # the folder itself says which of its operations cannot be repeated bit for bit
            meta["nondeterministic_ops"] = unrepeatable
        save_erased_pipeline(pipe, staging, ref.path, {**meta, "guard": result.guard}, guard=result.guard)
        if target.exists():
            target.rmdir()
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(target)
        sha = hash_tree(target)
        artefact_id = store.add_artefact(
            path=str(target),
            sha256=sha,
            run_id=pending.run.id,
            parent_model=ref.spec,
            parent_fingerprint=ref.fingerprint,
            meta={
                "eraser": pending.eraser,
                "concept": pending.concept.name,
                "world": ref.world,
                "description": f"{pending.eraser} erased {pending.concept.name!r} from {ref.spec}",
                "changed_params": result.changed_params,
                "guard": result.guard,
                "stats": result.stats,
                "seconds": seconds,
                "threads": result.runtime.get("threads"),
                "nondeterministic_ops": unrepeatable,
            },
        )
    except BaseException as exc:
        abandon_erase(store, pending, exc)
        raise
    store.complete_run(
        pending.run.id,
        {
            "artefact_id": artefact_id,
            "path": str(target),
            "seconds": seconds,
            "changed_params": len(result.changed_params),
            "losses": result.losses,
            "stats": result.stats,
        },
        runtime={"threads": result.runtime["threads"]} if "threads" in result.runtime else None,
    )
    return erase_record(store.get_artefact(artefact_id), pending.run.id, reused=False)
