"""Erase a concept from a model: an "erase" run that produces an artefact (a diffusers folder).

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
from ..hashing import hash_tree
from ..models.resolve import ModelRef, resolve_model
from ..store import Store
from ..store.repository import run_identity
from ..workspace import Workspace

if TYPE_CHECKING:
    from ..data.concepts import Concept
    from ..erasers.base import CaptionsFn, ErasureResult, ProgressFn


def parse_stages(stages: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """"1", "2", "1,2" (or a sequence of ints) as a sorted tuple; None keeps the eraser's default."""
    if stages is None:
        return None
    if isinstance(stages, str):
        parts = [p.strip() for p in stages.split(",") if p.strip()]
        if not parts or not all(p.isdigit() for p in parts):
            raise ConfigError(f"--stages expects stage numbers separated by commas (e.g. 1,2), got {stages!r}")
        stages = [int(p) for p in parts]
    return tuple(sorted(int(s) for s in stages))


def shows_concept(row, concept: str) -> bool:
    """Whether a caption row's metadata says it requests ``concept`` (rows without such metadata never do)."""
    meta = row.meta or {}
    return concept in (meta.get("concepts") or [meta.get("concept")])


def _captions_from_data(workspace: Workspace, concept: str) -> "CaptionsFn":
    """Captions to preserve, without those that ask for the concept being erased: preserving them would
    pull the edit back towards the concept (pocket-general shows a cross in about a quarter of its rows;
    COCO rows carry no concept metadata and are all kept)."""

    def captions(name: str, limit: int | None) -> list[str]:
        from ..data import load_prompt_set

        rows = load_prompt_set(name, workspace=workspace, limit=limit)
        kept = [row.text for row in rows if not shows_concept(row, concept)]
        if len(kept) < len(rows):
            kept = [row.text for row in load_prompt_set(name, workspace=workspace) if not shows_concept(row, concept)]
        return kept[:limit] if limit else kept

    return captions


def _erase_context(device: str, *, progress: "ProgressFn | None" = None, **fields: Any):
    """An eraser's context on ``device`` (module level, so that a worker can be sent it)."""
    from ..erasers.base import EraseContext

    return EraseContext(device=device, progress=progress or (lambda stage, done, total: None), **fields)


def _existing_artefact(store: Store, run_id: int):
    for artefact in store.list_artefacts():
        if artefact.run_id == run_id and (Path(artefact.path) / "model_index.json").is_file():
            return artefact
    return None


def _record(artefact, run_id: int, reused: bool) -> dict[str, Any]:
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


@dataclass
class _PendingErase:
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

    def job(self, device: str):
        from .erase_job import EraseJob

        return EraseJob(self.eraser, self.config, self.concept, self.ref, device, self.allow_pickle, self.make_context)


def _start_erase(
    store: Store, workspace: Workspace, *, eraser: str, concept: "Concept", model: str | ModelRef,
    out: str | os.PathLike | None = None, config_file: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None, device: str = "cpu", stages: str | Sequence[int] | None = None,
    captions: "CaptionsFn | None" = None, batch_size: int = 8, allow_pickle: bool = False, executor: Any = None,
) -> "_PendingErase | dict[str, Any]":
    """The stored artefact's record when this erase was done before, else its started run."""
    cls = registry.load("eraser", eraser)
    stage_tuple = parse_stages(stages)
    cls.check_stages(stage_tuple)
    stage_tuple = stage_tuple or cls.default_stages  # "--stages 1,2" and no --stages are the same erase
    ref = model if isinstance(model, ModelRef) else resolve_model(model, store=store, workspace=workspace, allow_pickle=allow_pickle)
    if concept.world != ref.world:
        raise ConfigError(f"concept {concept.name!r} belongs to the {concept.world} world but model {ref.spec!r} to the {ref.world} world")
    config = cls.make_config(world=ref.world, config_file=config_file, overrides=overrides, concept=concept.name)
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
        found = _existing_artefact(store, previous.id)
        if found is not None:
            return _record(found, previous.id, reused=True)
    if out is not None and Path(out).expanduser().exists() and any(Path(out).expanduser().iterdir()):
        raise ConfigError(f"output folder {Path(out).expanduser()} exists and is not empty; choose another --out")
    runtime = {"device": device, "batch_size": batch_size, **(executor.runtime() if executor is not None else {})}
    run = store.start_run(runtime=runtime, model_ref=ref.spec, **run_fields)
    target = Path(out) if out is not None else workspace.artefacts_dir / run.identity[:16]
    target = target.expanduser().resolve()
    if target.exists() and any(target.iterdir()):  # a default folder left by an interrupted run
        shutil.rmtree(target)
    make_context = partial(
        _erase_context, cache_dir=workspace.cache_dir, captions=captions or _captions_from_data(workspace, concept.name),
        model_fingerprint=ref.fingerprint, world=ref.world, stages=stage_tuple, batch_size=batch_size,
    )
    return _PendingErase(eraser, cls, config, concept, ref, stage_tuple, run, target,
                         target.with_name(f".{target.name}.partial-{os.getpid()}"), make_context, allow_pickle,
                         device, time.perf_counter())


def _abandon(store: Store, pending: _PendingErase, exc: BaseException, *, prefix: str = "") -> None:
    shutil.rmtree(pending.staging, ignore_errors=True)
    store.fail_run(pending.run.id, one_line(f"{prefix}{type(exc).__name__}: {exc}"))


def _finish_erase(store: Store, pending: _PendingErase, pipe: Any, result: "ErasureResult", seconds: float) -> dict[str, Any]:
    """Write the erased pipeline as the run's artefact (staged, then renamed) and complete the run."""
    from ..erasers.base import save_erased_pipeline

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
        _abandon(store, pending, exc)
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
    return _record(store.get_artefact(artefact_id), pending.run.id, reused=False)


def erase_concept(
    store: Store,
    workspace: Workspace,
    *,
    eraser: str,
    concept: "Concept",
    model: str | ModelRef,
    out: str | os.PathLike | None = None,
    config_file: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    device: str = "auto",
    stages: str | Sequence[int] | None = None,
    captions: "CaptionsFn | None" = None,
    batch_size: int = 8,
    allow_pickle: bool = False,
    progress: "ProgressFn | None" = None,
    executor: Any = None,
) -> dict[str, Any]:
    """Erase an already loaded ``Concept``; the lower-level entry point of :func:`erase`. With an
    ``executor`` the eraser runs as one call on a worker and the artefact is written here (api/erase_job.py)."""
    from ..models.device import resolve_device

    device = resolve_device(device)
    pending = _start_erase(
        store, workspace, eraser=eraser, concept=concept, model=model, out=out, config_file=config_file,
        overrides=overrides, device=device, stages=stages, captions=captions, batch_size=batch_size,
        allow_pickle=allow_pickle, executor=executor,
    )
    if isinstance(pending, dict):
        return pending
    try:
        if executor is None:
            from ..models.resolve import load_pipeline

            pipe = load_pipeline(pending.ref, device=device, allow_pickle=allow_pickle)
            result = pending.cls(pending.config).erase(pipe, concept, context=pending.make_context(device, progress=progress))
            seconds = time.perf_counter() - pending.started
        else:
            from .erase_job import erase_on_executor

            pipe, result, seconds = erase_on_executor(executor, pending.job(getattr(executor, "device", device)))
    except BaseException as exc:
        _abandon(store, pending, exc)
        raise
    return _finish_erase(store, pending, pipe, result, seconds)


def resolve_erase_inputs(
    store: Store, workspace: Workspace, *, eraser: str, concept: "str | Concept", model: str | ModelRef, allow_pickle: bool = False,
) -> tuple[ModelRef, "Concept"]:
    """The model and the concept (a name or file, loaded in the model's world) an erase names; an
    unknown eraser is reported before the model is resolved."""
    from ..data import load_concept

    registry.load("eraser", eraser)
    ref = model if isinstance(model, ModelRef) else resolve_model(model, store=store, workspace=workspace, allow_pickle=allow_pickle)
    if isinstance(concept, str):
        concept = load_concept(concept, world=ref.world, workspace=workspace)
    return ref, concept


def erase(
    store: Store,
    workspace: Workspace,
    *,
    eraser: str,
    concept: str,
    model: str,
    out: str | os.PathLike | None = None,
    config_file: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    device: str = "auto",
    stages: str | Sequence[int] | None = None,
    batch_size: int = 8,
    allow_pickle: bool = False,
    progress: "ProgressFn | None" = None,
    executor: Any = None,
) -> dict[str, Any]:
    """Erase the named concept (or concept file) from ``model`` with the eraser plugin ``eraser``."""
    ref, concept_obj = resolve_erase_inputs(store, workspace, eraser=eraser, concept=concept, model=model, allow_pickle=allow_pickle)
    return erase_concept(
        store, workspace, eraser=eraser, concept=concept_obj, model=ref, out=out, config_file=config_file,
        overrides=overrides, device=device, stages=stages, batch_size=batch_size, allow_pickle=allow_pickle,
        progress=progress, executor=executor,
    )


def list_erasers() -> list[dict[str, Any]]:
    """Registered erasers with their default config for each world (imports each plugin class)."""
    rows = []
    for name in registry.names("eraser"):
        cls = registry.load("eraser", name)
        rows.append(
            {
                "name": name,
                "version": cls.version,
                "description": getattr(cls, "description", ""),
                "defaults": {world: cls.Config.for_world(world).as_dict() for world in ("sd", "pocket")},
            }
        )
    return rows

