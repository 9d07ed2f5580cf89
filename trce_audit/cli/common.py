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


WHOLE_WORD = 24  # a column is at least as wide as its longest word up to this: names fold between words, not inside


def fitted_widths(cells: Sequence[Sequence[str]], room: int) -> list[int] | None:
    """Column widths for ``cells`` (one list of texts per column, the header first) in ``room`` characters:
    None when every column fits whole; else each column gets its longest word (up to ``WHOLE_WORD``) and
    the rest of the room makes whole the columns that lack least, then goes to the others in proportion."""
    longest = [max((len(line) for text in column for line in text.splitlines() or [""]), default=1) for column in cells]
    if sum(longest) <= room:
        return None
    floor = [min(WHOLE_WORD, full, max((len(w) for text in column for w in text.split()), default=1))
             for column, full in zip(cells, longest)]
    widths, spare = list(floor), max(0, room - sum(floor))
    for index in sorted(range(len(cells)), key=lambda i: longest[i] - floor[i]):
        if longest[index] - floor[index] <= spare:
            spare -= longest[index] - floor[index]
            widths[index] = longest[index]
    lacking = {i: longest[i] - widths[i] for i in range(len(cells)) if widths[i] < longest[i]}
    for index, lack in lacking.items():
        widths[index] += spare * lack // sum(lacking.values())
    return widths


def emit_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], console: Any = None) -> None:
    """A table whose cells fold onto more lines rather than end in "…" when the terminal is narrow,
    at spaces first: each column keeps its longest word (``fitted_widths``), so a narrow terminal breaks
    "0.0% [0–32] → 87.5% [53–98]" at its spaces rather than "finetune-resurgence" inside."""
    from rich.console import Console  # deferred, as in every rich use: --help stays fast
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    texts = [["" if value is None else str(value) for value in row] for row in rows]
    # each cell is padded by one space a side, and the columns have n + 1 rules between and around them
    widths = fitted_widths([[column, *(row[i] for row in texts)] for i, column in enumerate(columns)],
                           console.width - 3 * len(columns) - 1)
    # Values are user text (prompts, paths): escape them so "[brackets]" are not read as Rich markup.
    table = Table(title=title, show_lines=False)
    for index, column in enumerate(columns):
        table.add_column(escape(column), overflow="fold", width=None if widths is None else widths[index])
    for row in texts:
        table.add_row(*(escape(text) for text in row))
    console.print(table)


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
