"""What runs a shard: the same class in process (local) and as a long-lived Ray actor.

A worker keeps the state its jobs set up (a loaded pipeline, detectors) for the next call, at most
``CACHE_SIZE`` of them (an SD pipeline is GBs), and drops them all before a job that says
``drops_worker_cache`` (an erase). On a cluster it is first asked to ``check`` that it
runs the driver's package versions (and a job's setup checks its detectors' weights): one run must
never mix protocols under one identity.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Hashable

from ..versions import package_versions

CACHE_SIZE = 2


def refused(expected_versions: dict[str, str]) -> str | None:
    """None when this process runs the driver's versions, else what differs."""
    mine = package_versions()
    diff = sorted(name for name in set(expected_versions) | set(mine) if expected_versions.get(name) != mine.get(name))
    if not diff:
        return None
    return "package versions differ from the driver's: " + ", ".join(
        f"{name} {mine.get(name) or 'missing'} (driver {expected_versions.get(name) or 'missing'})" for name in diff)


def warm_imports() -> None:
    """Import what every job needs (torch, the diffusers pipeline and its CLIP parts: seconds on a
    CPU), so that a worker pays it when it starts, not inside its first shard."""
    import torch  # noqa: F401
    from diffusers import StableDiffusionPipeline  # noqa: F401
    from transformers import CLIPTextModel, CLIPTokenizer  # noqa: F401


class Worker:
    def __init__(self, threads: int | None = None):
        self._threads = threads
        self._cache: OrderedDict[Hashable, Any] = OrderedDict()

    def pid(self) -> int:
        return os.getpid()

    def check(self, expected_versions: dict[str, str]) -> str | None:
        """None when this worker matches the driver, else why it is refused (before any work)."""
        return refused(expected_versions)

    def warm(self) -> None:
        warm_imports()

    def run(self, job: Any, shard: Any) -> Any:
        if getattr(job, "drops_worker_cache", False):  # an erase trains: no kept pipeline may hold its memory
            self._cache.clear()
        if job.cache_key in self._cache:
            self._cache.move_to_end(job.cache_key)
        else:
            if self._threads:
                import torch

                torch.set_num_threads(self._threads)
            while len(self._cache) >= CACHE_SIZE:
                self._cache.popitem(last=False)
            self._cache[job.cache_key] = job.setup()
        return job.run(self._cache[job.cache_key], shard)

    def drop(self) -> None:
        self._cache.clear()
