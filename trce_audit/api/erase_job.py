"""Erase runs as executor calls: a worker loads the parent model, runs the eraser and sends back only
the tensors it changed (MBs for a closed-form edit, one component for a fine-tune); the driver applies
them to its own load of the parent and writes the artefact, so every workspace file and store row
stays the driver's, as for image shards. The worker drops its kept pipelines first and keeps none
after: an erase trains, and is done once per run. An audit's erasers go out together (``erase_all``),
one a worker."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Sequence

if TYPE_CHECKING:
    from ..data.concepts import Concept
    from ..erasers.base import EraseContext, ErasureResult
    from ..models.resolve import ModelRef
    from ..store import Store
    from ..workspace import Workspace


@dataclass(frozen=True)
class Erased:
    result: "ErasureResult"
    tensors: dict[str, Any]  # "unet.<key>" / "text_encoder.<key>" -> CPU tensor, for every changed name
    seconds: float  # on the worker: model load and erase


@dataclass(frozen=True)
class EraseJob:
    eraser: str
    config: Any
    concept: "Concept"
    model: "ModelRef"
    device: str
    allow_pickle: bool
    context: Callable[[str], "EraseContext"]  # the erase context for a device
    drops_worker_cache: ClassVar[bool] = True

    @property
    def cache_key(self) -> tuple:
        return ("erase", self.eraser, self.model.fingerprint)

    def setup(self) -> None:
        return None

    def run(self, state: None, shard: Any) -> Erased:
        from .. import registry
        from ..models.resolve import load_pipeline

        started = time.perf_counter()
        pipe = load_pipeline(self.model, device=self.device, allow_pickle=self.allow_pickle)
        result = registry.load("eraser", self.eraser)(self.config).erase(pipe, self.concept, context=self.context(self.device))
        modules = {"unet": pipe.unet, "text_encoder": pipe.text_encoder}
        tensors = {}
        for name in result.changed_params:
            prefix, key = name.split(".", 1)
            tensors[name] = modules[prefix].state_dict()[key].detach().to("cpu", copy=True)
        return Erased(result, tensors, time.perf_counter() - started)


@dataclass(frozen=True)
class EraseFailed:
    error: BaseException  # the eraser's own exception (or its one line, where it does not pickle)


class EraseJobs:
    """Several erase runs on one pool (an audit's erasers), one a call: each shard is an EraseJob. One
    call in flight per worker: an erase lasts minutes to hours, and a second one queued behind it
    would wait there while another worker stands idle. An eraser's exception comes back as its
    EraseFailed, so that one failing erase does not cancel the others' hours."""

    cache_key = ("erase-jobs",)
    in_flight_per_worker = 1
    drops_worker_cache = True

    def setup(self) -> None:
        return None

    def run(self, state: None, job: EraseJob) -> "Erased | EraseFailed":
        try:
            return job.run(None, None)
        except Exception as exc:
            import pickle

            from ..errors import one_line

            try:
                pickle.loads(pickle.dumps(exc))
            except Exception:  # its message still reaches the driver, as an internal error (not bad input)
                exc = RuntimeError(one_line(f"{type(exc).__name__}: {exc}"))
            return EraseFailed(exc)


def apply_erased(job: EraseJob, erased: Erased) -> Any:
    """The parent pipeline, loaded on this machine's CPU, with the worker's changed tensors copied in."""
    import torch

    from ..models.resolve import load_pipeline

    pipe = load_pipeline(job.model, device="cpu", allow_pickle=job.allow_pickle)
    modules = {"unet": pipe.unet, "text_encoder": pipe.text_encoder}
    with torch.no_grad():
        for name, tensor in erased.tensors.items():
            prefix, key = name.split(".", 1)
            modules[prefix].state_dict()[key].copy_(tensor)
    return pipe


def erase_on_executor(executor: Any, job: EraseJob) -> tuple[Any, "ErasureResult", float]:
    """(the parent pipeline on CPU with the worker's edit applied, the eraser's result, worker seconds)."""
    ((_, erased),) = list(executor.map_unordered(job, [None]))
    return apply_erased(job, erased), erased.result, erased.seconds


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
    from ..models.device import resolve_device
    from .erasing import _abandon, _finish_erase, _start_erase, resolve_erase_inputs

    started: dict[int, Any] = {}  # run id -> its pending erase: one erase per identity
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
            pending = _start_erase(store, workspace, concept=concept, model=ref, executor=executor, **request)
            if isinstance(pending, dict):
                outcome[index] = pending
                if on_done is not None:
                    on_done(index, pending)
            else:
                started.setdefault(pending.run.id, pending)
                outcome[index] = pending.run.id
        pending_list = list(started.values())
        jobs = [p.job(getattr(executor, "device", p.device)) for p in pending_list]
        for position, erased in executor.map_unordered(EraseJobs(), jobs):
            pending = pending_list[position]
            if isinstance(erased, EraseFailed):
                errors[pending.run.id] = erased.error
                _abandon(store, pending, erased.error)
                continue
            try:  # _finish_erase fails its own run when its artefact cannot be written here
                finished[pending.run.id] = _finish_erase(store, pending, apply_erased(jobs[position], erased), erased.result, erased.seconds)
            except Exception as exc:
                errors[pending.run.id] = exc
                continue
            done(pending.run.id)
    except BaseException as exc:  # a bad request, a lost worker, an interrupt: no started run is left running
        for pending in started.values():
            if pending.run.id not in finished and pending.run.id not in errors:
                _abandon(store, pending, exc, prefix="stopped before it finished: ")
        raise
    if errors:  # the first failed request's error
        order = {value: index for index, value in sorted(outcome.items(), reverse=True) if isinstance(value, int)}
        raise errors[min(errors, key=order.__getitem__)]
    return [finished[value] if isinstance(value, int) else value for _, value in sorted(outcome.items())]
