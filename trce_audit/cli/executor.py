"""The executor options, defined once for every command that draws images (generate, eval, attack,
erase, audit): ``@executor_command`` (an option group, groups.py) puts them in place of the command's
``executor_opts`` parameter and hands it ``api.executor_options(...)``.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .. import api
from .groups import option_group

PARAMETER = "executor_opts"

ExecutorOpt = Annotated[
    str,
    typer.Option("--executor", envvar="TRCE_AUDIT_EXECUTOR", metavar="local|ray",
                 help="Where image shards run: local (this process) or ray (worker actors on a Ray cluster; runtime only)."),
]
AddressOpt = Annotated[
    Optional[str],
    typer.Option("--address", metavar="ADDRESS", show_default=False,
                 help="ray: cluster to join (auto, HOST:PORT or ray://HOST:10001) [default: RAY_ADDRESS, else a cluster on localhost]."),
]
WorkersOpt = Annotated[
    Optional[int], typer.Option("--workers", show_default=False, help="ray: worker actors [default: cluster GPUs / --gpus-per-worker, or CPUs / --cpus-per-worker].")
]
GpusPerWorkerOpt = Annotated[
    Optional[float], typer.Option("--gpus-per-worker", show_default=False, help="ray: GPUs per worker, fractions allowed [default: 1 on CUDA, else 0].")
]
CpusPerWorkerOpt = Annotated[int, typer.Option("--cpus-per-worker", help="ray: CPUs (and torch threads) per worker.")]
MaxRetriesOpt = Annotated[int, typer.Option("--max-retries", help="ray: restarts of a dead worker and retries of its shards (bounded, 0-10).")]

# (name, type, default), in the order the options appear in --help and api.executor_options takes them
OPTIONS = (
    ("executor", ExecutorOpt, "local"),
    ("address", AddressOpt, None),
    ("workers", WorkersOpt, None),
    ("gpus_per_worker", GpusPerWorkerOpt, None),
    ("cpus_per_worker", CpusPerWorkerOpt, 1),
    ("max_retries", MaxRetriesOpt, 2),
)


# ``executor_opts`` receives api.executor_options(...) of the six, looked up at call time (tests replace it).
executor_command = option_group(PARAMETER, OPTIONS, lambda *values: api.executor_options(*values))
