"""What every command shares: the context object, common options and output rendering.

Command modules import only this, the facade (trce_audit.api, whose names load on first use), typer
and rich at import time, so `trce-audit --help` stays fast.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Optional, Sequence

import typer

from .. import api
from ..errors import ConfigError
from ..workspace import Workspace

if TYPE_CHECKING:
    from ..api import Store


class LazyStore:
    """A Store opened on its first attribute access; ``close`` before that opens nothing."""

    def __init__(self, opener: Callable[[], "Store"]):
        self._opener = opener
        self._opened: "Store | None" = None

    def __getattr__(self, name: str) -> Any:
        if self._opened is None:
            self._opened = self._opener()
        return getattr(self._opened, name)

    def close(self) -> None:
        if self._opened is not None:
            self._opened.close()


@dataclass
class AppState:
    """Options given before the command; passed explicitly through typer's context (no globals)."""

    workspace_dir: Optional[Path] = None
    db_url: Optional[str] = None
    _store: "Store | None" = field(default=None, repr=False)

    def workspace(self, data_dir: Optional[Path] = None) -> Workspace:
        return Workspace.from_options(self.workspace_dir, self.db_url, data_dir)

    def existing_store(self, purpose: str) -> "Store":
        """The store, read-only, for a command that only reads it: a missing store is an error, never created."""
        if self._store is None:
            self._store = api.open_store(self.workspace(), read_only_for=purpose)
        return self._store

    def store(self) -> "Store":
        """The store for a command that writes it, opened (and created, with the workspace) when the
        command first uses it: a command that refuses its input before then leaves no store behind."""
        if self._store is None:
            self._store = LazyStore(lambda: api.open_store(self.workspace()))  # type: ignore[assignment]
        return self._store

    def close(self) -> None:
        """Release the store's connections when the command ends, so that SQLite removes its -wal and
        -shm files then (not at garbage collection) and an in-process caller finds the folder as it was."""
        if self._store is not None:
            self._store.close()
            self._store = None


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
    str, typer.Option("--model", "-m", help="pocket | pocket-flux | hub id | local diffusers folder | artefact:ID.")
]
TargetModelOpt = Annotated[
    Optional[str],
    typer.Option(
        "--model", "-m", show_default=False,
        help="pocket | pocket-flux | hub id | local diffusers folder | artefact:ID [default: the workspace's latest erased "
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


def emit_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str, ensure_ascii=False) + "\n")


def say(text: str, console: Any = None) -> None:
    """A plain paragraph, wrapped to the terminal."""
    from rich.console import Console  # deferred, as in every rich use: --help stays fast
    from rich.markup import escape

    (console or Console()).print(escape(text))


def emit(payload: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    if as_json:
        emit_json(payload)
    else:
        render(payload)


def parse_assignments(items: Sequence[str] | None, what: str = "--set") -> dict[str, str]:
    """`key=value` pairs from repeated options, with a one-line error for a malformed one."""
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
    chosen = api.default_model(concept, erase=True) if erase else api.default_model(concept, store=app_state.store())
    sys.stderr.write(chosen.why + "\n")
    return chosen.spec, chosen.concept
