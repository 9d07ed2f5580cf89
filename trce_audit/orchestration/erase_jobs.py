"""Erase runs as executor calls: a worker loads the parent model, runs the eraser and sends back only
the tensors it changed (MBs for a closed-form edit, one component for a fine-tune); the driver applies
them to its own load of the parent and writes the artefact, so every workspace file and store row
stays the driver's, as for image shards. The worker drops its kept pipelines first and keeps none
after: an erase trains, and is done once per run. An audit's erasers go out together (``EraseJobs``),
one a worker."""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from .. import registry
from ..errors import one_line
from ..models.resolve import load_pipeline

if TYPE_CHECKING:
    from ..data.concepts import Concept
    from ..erasers.base import EraseContext, ErasureResult
    from ..models.resolve import ModelRef
    from .erase_pending import PendingErase


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

    @classmethod
    def for_pending(cls, pending: "PendingErase", device: str) -> "EraseJob":
        """The call that runs a started erase's eraser on ``device`` (a worker's own, on Ray)."""
        return cls(pending.eraser, pending.config, pending.concept, pending.ref, device, pending.allow_pickle, pending.make_context)

    @property
    def cache_key(self) -> tuple:
        return ("erase", self.eraser, self.model.fingerprint)

    def setup(self) -> None:
        return None

    def run(self, state: None, shard: Any) -> Erased:
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
            try:
                pickle.loads(pickle.dumps(exc))
            except Exception:  # its message still reaches the driver, as an internal error (not bad input)
                exc = RuntimeError(one_line(f"{type(exc).__name__}: {exc}"))
            return EraseFailed(exc)


def apply_erased(job: EraseJob, erased: Erased) -> Any:
    """The parent pipeline, loaded on this machine's CPU, with the worker's changed tensors copied in."""
    import torch  # deferred: orchestration is imported by the torch-free API facade

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
