"""Erase a concept from a model: an "erase" run that produces an artefact (a diffusers folder), here or
as one executor call; an audit's erasers as one batch (``erase_all``), one a worker."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ..models.device import resolve_device
from ..models.resolve import ModelRef, load_pipeline
from .erase_inputs import check_erase_config, resolve_erase_inputs
from .erase_jobs import EraseFailed, EraseJob, EraseJobs, apply_erased, erase_on_executor
from .erase_pending import PendingErase, abandon_erase, finish_erase, start_erase

if TYPE_CHECKING:
    from ..data.concepts import Concept
    from ..erasers.base import CaptionsFn, ProgressFn
    from ..store import Store
    from ..workspace import Workspace


def erase_concept(
    store: "Store",
    workspace: "Workspace",
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
    ``executor`` the eraser runs as one call on a worker and the artefact is written here (erase_jobs.py)."""
    device = resolve_device(device)
    pending = start_erase(
        store, workspace, eraser=eraser, concept=concept, model=model, out=out, config_file=config_file,
        overrides=overrides, device=device, stages=stages, captions=captions, batch_size=batch_size,
        allow_pickle=allow_pickle, executor=executor,
    )
    if isinstance(pending, dict):
        return pending
    try:
        if executor is None:
            pipe = load_pipeline(pending.ref, device=device, allow_pickle=allow_pickle)
            result = pending.cls(pending.config).erase(pipe, concept, context=pending.make_context(device, progress=progress))
            seconds = time.perf_counter() - pending.started
        else:
            pipe, result, seconds = erase_on_executor(executor, EraseJob.for_pending(pending, getattr(executor, "device", device)))
    except BaseException as exc:
        abandon_erase(store, pending, exc)
        raise
    return finish_erase(store, pending, pipe, result, seconds)


def erase(
    store: "Store",
    workspace: "Workspace",
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
    check_erase_config(store, eraser=eraser, concept=concept, model=model, config_file=config_file, overrides=overrides)
    ref, concept_obj = resolve_erase_inputs(store, workspace, eraser=eraser, concept=concept, model=model, allow_pickle=allow_pickle)
    return erase_concept(
        store, workspace, eraser=eraser, concept=concept_obj, model=ref, out=out, config_file=config_file,
        overrides=overrides, device=device, stages=stages, batch_size=batch_size, allow_pickle=allow_pickle,
        progress=progress, executor=executor,
    )


def erase_all(
    store: "Store", workspace: "Workspace", requests: Sequence[Mapping[str, Any]], *, executor: Any,
    on_done: Callable[[int, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Several erases at once on ``executor``'s workers, one erase a worker (an audit's erasers): each
    request holds :func:`erase_concept`'s keyword arguments but ``progress`` and ``executor`` (its
    concept a name or a ``Concept``). Results come back in request order; ``on_done`` hears of each as
    its artefact is stored. An erase that fails (on the worker, or writing its artefact here) fails its
    own run and the others go on; the first failed request's error is raised once they are stored. A
    lost worker or an interrupt fails every run not yet stored. A rerun reuses every stored artefact."""
    started: dict[int, PendingErase] = {}  # run id -> its pending erase: one erase per identity
    outcome: dict[int, Any] = {}  # request index -> record, or the run id it waits for
    finished: dict[int, dict[str, Any]] = {}
    errors: dict[int, BaseException] = {}

    def done(run_id: int) -> None:
        for index, value in outcome.items():
            if value == run_id and on_done is not None:
                on_done(index, finished[run_id])

    try:
        for index, request in enumerate(requests):
            request = dict(request)
            ref, concept = resolve_erase_inputs(store, workspace, eraser=request["eraser"], concept=request.pop("concept"),
                                                model=request.pop("model"), allow_pickle=request.get("allow_pickle", False))
            request["device"] = resolve_device(request.get("device", "auto"))
            pending = start_erase(store, workspace, concept=concept, model=ref, executor=executor, **request)
            if isinstance(pending, dict):
                outcome[index] = pending
                if on_done is not None:
                    on_done(index, pending)
            else:
                started.setdefault(pending.run.id, pending)
                outcome[index] = pending.run.id
        pending_list = list(started.values())
        jobs = [EraseJob.for_pending(p, getattr(executor, "device", p.device)) for p in pending_list]
        for position, erased in executor.map_unordered(EraseJobs(), jobs):
            pending = pending_list[position]
            if isinstance(erased, EraseFailed):
                errors[pending.run.id] = erased.error
                abandon_erase(store, pending, erased.error)
                continue
            try:  # finish_erase fails its own run when its artefact cannot be written here
                finished[pending.run.id] = finish_erase(store, pending, apply_erased(jobs[position], erased), erased.result, erased.seconds)
            except Exception as exc:
                errors[pending.run.id] = exc
                continue
            done(pending.run.id)
    except BaseException as exc:  # a bad request, a lost worker, an interrupt: no started run is left running
        for pending in started.values():
            if pending.run.id not in finished and pending.run.id not in errors:
                abandon_erase(store, pending, exc, prefix="stopped before it finished: ")
        raise
    if errors:  # the first failed request's error
        order = {value: index for index, value in sorted(outcome.items(), reverse=True) if isinstance(value, int)}
        raise errors[min(errors, key=order.__getitem__)]
    return [finished[value] if isinstance(value, int) else value for _, value in sorted(outcome.items())]
