"""Same inputs, same bits: torch's deterministic kernels around every erase, attack search and render.

On a CPU, torch already gives the same bits for the same inputs, device and thread count (the thread
count decides how reductions are split, so it is recorded with each run). On CUDA it does not: cuBLAS
picks workspaces per stream, cuDNN autotunes algorithms, and some backward passes (embedding,
``index_add``, upsampling) add with atomics in whatever order threads finish. ``deterministic()`` asks
torch for its deterministic kernels with ``warn_only`` (an op that has none still runs) and records
each op that warned, so an artefact says which of its operations could not be reproduced.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

# torch's warning for an op without a deterministic implementation starts with the op's name.
_NONDETERMINISTIC = " does not have a deterministic implementation"


@dataclass
class DeterminismRecord:
    """What a run did under ``deterministic()``: the ops that had no deterministic kernel."""

    nondeterministic_ops: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return {"nondeterministic_ops": sorted(set(self.nondeterministic_ops))}


@contextmanager
def deterministic(*, record_ops: bool = True) -> Iterator[DeterminismRecord]:
    """Deterministic kernels for the block, torch's previous settings restored after it.

    With ``record_ops`` (a whole erase or attack search) torch's nondeterminism notices are collected
    into the record and every other warning is passed on; a render, entered once per batch, leaves
    warnings alone so that a warning shown once is not shown again for every batch.
    """
    import torch

    # cuBLAS reads this when it creates a handle; without it a deterministic matmul on CUDA warns.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    record = DeterminismRecord()
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.utils.deterministic.fill_uninitialized_memory,
        torch.backends.mkldnn.deterministic,
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.backends.mkldnn.deterministic = True  # oneDNN's CPU kernels: no atomics-ordered reductions
    # Filling every torch.empty() with NaN catches reads of uninitialised memory (a bug, not a source
    # of run-to-run differences) and costs a pass over each new tensor: left off.
    torch.utils.deterministic.fill_uninitialized_memory = False
    caught: list[warnings.WarningMessage] = []
    try:
        if not record_ops:
            yield record
        else:
            with warnings.catch_warnings(record=True) as caught:
                warnings.filterwarnings("always", message=f".*{_NONDETERMINISTIC}")
                yield record
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[2], previous[3]
        torch.utils.deterministic.fill_uninitialized_memory = previous[4]
        torch.backends.mkldnn.deterministic = previous[5]
        for item in caught:
            text = str(item.message)
            if _NONDETERMINISTIC in text:
                record.nondeterministic_ops.append(text.split(_NONDETERMINISTIC, 1)[0].strip())
            else:
                warnings.warn_explicit(item.message, item.category, item.filename, item.lineno, source=item.source)


def where_it_ran() -> dict[str, int]:
    """What a run's runtime record says about the process its work ran in (this one, or the Ray worker
    that ran the call): torch's thread count, which with the device decides how reductions split."""
    import torch  # deferred: orchestration imports this module on torch-free paths (the api facade, --help)

    return {"threads": torch.get_num_threads()}


def unrepeatable_ops(record: DeterminismRecord) -> dict[str, list[str]]:
    """``{"nondeterministic_ops": [...]}`` for a run's stats when some op had no deterministic kernel, else {}."""
    ops = record.as_dict()["nondeterministic_ops"]
    return {"nondeterministic_ops": ops} if ops else {}
