"""Where a command's image shards (and erase or attack-seed calls) run: its executor options, checked,
and the executor they name, opened for the length of the command."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from ..execution import Executor, ExecutorOptions, make_executor  # imports neither ray nor torch
from ..models.device import resolve_device

__all__ = ["ExecutorOptions", "executor_options", "open_executor"]


def executor_options(executor: str = "local", address: str | None = None, workers: int | None = None,
                     gpus_per_worker: float | None = None, cpus_per_worker: int = 1, max_retries: int = 2) -> ExecutorOptions:
    """The executor options, checked (the same set on every command that draws images)."""
    return ExecutorOptions(executor, address, workers, gpus_per_worker, cpus_per_worker, max_retries).validate()


@contextmanager
def open_executor(options: ExecutorOptions, device: str | None) -> Iterator[Executor | None]:
    """The executor the options name, connected before the caller opens its store (an unreachable
    cluster writes nothing); None for local, whose path is every run's default."""
    if options.kind == "local":
        yield None
        return
    with make_executor(options, device=resolve_device(device)) as executor:
        yield executor
