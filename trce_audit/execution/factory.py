"""Make the executor the options name; apart from options.py so that ray_pool can import the options."""

from __future__ import annotations

from .base import Executor
from .local import LocalExecutor
from .options import ExecutorOptions
from .ray_pool import RayExecutor


def make_executor(options: ExecutorOptions | None = None, *, device: str = "cpu") -> Executor:
    """The executor the options name, connected and with its workers admitted."""
    options = (options or ExecutorOptions()).validate()
    if options.kind == "ray":
        return RayExecutor(options, device=device)
    return LocalExecutor()
