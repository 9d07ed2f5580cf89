"""Executor options as the CLI and the API take them, checked before anything runs."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..errors import ConfigError

EXECUTORS = ("local", "ray")
# Retries are bounded: a shard that kills its worker every time must end the run, not loop.
MAX_RETRIES_LIMIT = 10


@dataclass(frozen=True)
class ExecutorOptions:
    """``workers`` None: one per GPU (``gpus_per_worker`` each), else one per ``cpus_per_worker`` CPUs.
    ``gpus_per_worker`` None: 1 when the device is CUDA, else 0."""

    kind: str = "local"
    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float | None = None
    cpus_per_worker: int = 1
    max_retries: int = 2

    def validate(self) -> "ExecutorOptions":
        if self.kind not in EXECUTORS:
            raise ConfigError(f"unknown executor {self.kind!r} (--executor or TRCE_AUDIT_EXECUTOR); expected one of {', '.join(EXECUTORS)}")
        if self.kind == "local":
            given = [name for name, value, default in (
                ("--address", self.address, None), ("--workers", self.workers, None),
                ("--gpus-per-worker", self.gpus_per_worker, None), ("--cpus-per-worker", self.cpus_per_worker, 1),
                ("--max-retries", self.max_retries, 2)) if value != default]
            if given:
                raise ConfigError(f"{', '.join(given)} apply to --executor ray; the local executor runs in this process")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        if self.gpus_per_worker is not None and not 0 <= self.gpus_per_worker < math.inf:  # NaN fails both
            raise ConfigError(f"--gpus-per-worker must be 0 or more (and finite), got {self.gpus_per_worker}")
        if self.cpus_per_worker < 1:
            raise ConfigError(f"--cpus-per-worker must be at least 1, got {self.cpus_per_worker}")
        if not 0 <= self.max_retries <= MAX_RETRIES_LIMIT:
            raise ConfigError(f"--max-retries must be between 0 and {MAX_RETRIES_LIMIT}, got {self.max_retries}")
        return self

    def as_dict(self) -> dict:
        return asdict(self)

