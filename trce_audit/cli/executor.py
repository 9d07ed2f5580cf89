"""The executor options, defined once for every command that draws images (generate, eval, attack,
erase, audit): ``@executor_command`` adds them to a command and hands it the checked options.

The command declares a parameter ``executor_opts`` where the options belong in its ``--help``; the
decorator replaces it with the six options and calls the command with ``executor_opts`` set to
``api.executor_options(...)``, so a bad option is a one-line error before the command does anything.
"""

from __future__ import annotations

import functools
import inspect
import typing
from types import SimpleNamespace
from typing import Annotated, Any, Callable, Optional

import typer

from .. import api

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


def _resolved_annotations(command: Callable[..., Any]) -> dict[str, Any]:
    """The command's parameter types as objects. Under ``from __future__ import annotations`` they are
    strings, from which Typer would lose the option names and help inside ``Annotated``; the type of
    ``executor_opts`` is left out (it is the facade's, imported for type checkers only)."""
    annotations = {k: v for k, v in command.__annotations__.items() if k not in (PARAMETER, "return")}
    return typing.get_type_hints(SimpleNamespace(__annotations__=annotations, __globals__=command.__globals__), include_extras=True)


def executor_command(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` with the six executor options in place of its ``executor_opts`` parameter."""
    signature = inspect.signature(command)
    if PARAMETER not in signature.parameters:
        raise TypeError(f"{command.__name__} needs a parameter {PARAMETER} (where its executor options go)")
    hints = _resolved_annotations(command)
    parameters = []
    for parameter in signature.parameters.values():
        if parameter.name == PARAMETER:
            parameters += [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=hint)
                           for name, hint, default in OPTIONS]
        else:
            parameters.append(parameter.replace(annotation=hints.get(parameter.name, inspect.Parameter.empty)))

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        options = api.executor_options(*(kwargs.pop(name) for name, _, _ in OPTIONS))
        return command(*args, **kwargs, **{PARAMETER: options})

    wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters if p.annotation is not inspect.Parameter.empty}
    return wrapper
