"""What every command shares: the context object, common options and output rendering.

Command modules import only this, typer and rich at import time, so `trce-audit --help` stays fast.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Iterator, Optional, Sequence

import typer

from ..workspace import Workspace

if TYPE_CHECKING:
    from ..store import Store


@dataclass
class AppState:
    """Options given before the command; passed explicitly through typer's context (no globals)."""

    workspace_dir: Optional[Path] = None
    db_url: Optional[str] = None
    _store: "Store | None" = field(default=None, repr=False)

    def workspace(self, data_dir: Optional[Path] = None) -> Workspace:
        return Workspace.from_options(self.workspace_dir, self.db_url, data_dir)

    def existing_store(self, purpose: str) -> "Store":
        """The store, for a command that only reads it: a missing SQLite file is an error, never created."""
        from ..errors import StoreError

        if self._store is None:
            workspace = self.workspace()
            url = workspace.db_url
            if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file():
                raise StoreError(
                    f"no result store at {url[len('sqlite:///'):]}; {purpose} reads stored results and never creates "
                    "a store: run `trce-audit audit` first, or point --workspace/--db at an existing one"
                )
        return self.store()

    def store(self) -> "Store":
        if self._store is None:
            from ..store import Store

            self._store = Store(self.workspace().ensure().db_url)
        return self._store


def state(ctx: typer.Context) -> AppState:
    root = ctx.find_root()
    if not isinstance(root.obj, AppState):
        root.obj = AppState()
    return root.obj


JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
DataDirOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--data-dir",
        envvar="TRCE_AUDIT_DATA",
        help="Folder with local copies of the benchmark files (used instead of downloading).",
        show_default=False,
    ),
]
ModelOpt = Annotated[
    str, typer.Option("--model", "-m", help="pocket | hub id | local diffusers folder | artefact:ID.")
]
TargetModelOpt = Annotated[
    Optional[str],
    typer.Option(
        "--model", "-m", show_default=False,
        help="pocket | hub id | local diffusers folder | artefact:ID [default: the workspace's latest erased "
        "model for the concept, else the concept's reference model].",
    ),
]
DeviceOpt = Annotated[
    str, typer.Option("--device", metavar="DEVICE", help="auto, cpu, cuda or cuda:N; auto is CUDA when available (runtime only).")
]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", metavar="KEY=VALUE", help="Override one config key (repeatable).", show_default=False),
]
AllowPickleOpt = Annotated[
    bool, typer.Option("--allow-pickle", help="Allow .bin/.pt/.ckpt weights (pickle can run code on load).")
]


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


def executor_options(executor: str, address, workers, gpus_per_worker, cpus_per_worker: int, max_retries: int):
    """The executor options, checked (the same set on every command that draws images)."""
    from ..execution.options import ExecutorOptions

    return ExecutorOptions(executor, address, workers, gpus_per_worker, cpus_per_worker, max_retries).validate()


@contextmanager
def open_executor(options, device: str | None) -> Iterator[Any]:
    """The executor for a command, connected before the store is opened (an unreachable cluster
    writes nothing); None for local, whose path is the API's default."""
    if options.kind == "local":
        yield None
        return
    from ..execution import make_executor
    from ..models.device import resolve_device

    with make_executor(options, device=resolve_device(device)) as executor:
        yield executor


def emit_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str, ensure_ascii=False) + "\n")


def emit_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    # Values are user text (prompts, paths): escape them so "[brackets]" are not read as Rich markup.
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(escape(column))
    for row in rows:
        table.add_row(*("" if value is None else escape(str(value)) for value in row))
    Console().print(table)


def emit(payload: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    if as_json:
        emit_json(payload)
    else:
        render(payload)


def progress():
    """A Rich progress bar on stderr, so --json output on stdout stays parseable."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )


from .feedback import StageProgress  # noqa: E402  (re-exported: commands import it from here)


def parse_assignments(items: Sequence[str] | None, what: str = "--set") -> dict[str, str]:
    """`key=value` pairs from repeated options, with a one-line error for a malformed one."""
    from ..errors import ConfigError

    found: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{what} expects key=value, got {item!r}")
        found[key.strip()] = value.strip()
    return found


def pick_model(app_state: AppState, model: Optional[str], concept: Optional[str], *, erase: bool = False) -> tuple[str, Optional[str]]:
    """(model, concept) for a command given no --model: erase starts from the concept's reference model,
    attack and eval from the workspace's latest erased model for the concept. Says on stderr which."""
    if model is not None:
        return model, concept
    from ..models.defaults import default_for_erase, default_for_target, require_available

    chosen = default_for_erase(concept or "nudity") if erase else default_for_target(app_state.store(), concept)
    require_available(chosen.spec)
    sys.stderr.write(chosen.why + "\n")
    return chosen.spec, chosen.concept
