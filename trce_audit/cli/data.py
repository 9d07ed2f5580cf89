"""`trce-audit data list|fetch|show|add`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .. import api
from ..errors import DataError
from .common import DataDirOpt, JsonOpt, emit, state
from .tables import emit_table


def _short(text: object, width: int = 60) -> str:
    value = "" if text is None else str(text)
    return value if len(value) <= width else value[: width - 1] + "…"


def register(app: typer.Typer) -> None:
    data = typer.Typer(help="Benchmark prompt sets and concept lists: status, download, inspect.", no_args_is_help=True)

    @data.command("list")
    def list_(ctx: typer.Context, data_dir: DataDirOpt = None, json_: JsonOpt = False) -> None:
        """Every prompt set and concept list: kind, rows, source, sha256 pin and local status."""
        records = api.list_data(state(ctx).workspace(data_dir))
        emit(
            records,
            json_,
            lambda records: emit_table(
                "data",
                ["name", "kind", "rows", "status", "sha256", "source"],
                [[r["name"], r["kind"], r["rows"], r["status"], (r["sha256"] or "")[:12], r["source"]] for r in records],
            ),
        )

    @data.command("fetch")
    def fetch_(
        ctx: typer.Context,
        names: Annotated[Optional[list[str]], typer.Argument(help="Prompt set or concept list names.", show_default=False)] = None,
        all_: Annotated[bool, typer.Option("--all", help="Fetch every pinned file.")] = False,
        url: Annotated[Optional[str], typer.Option("--url", help="Download this one file from this URL instead.")] = None,
        base_url: Annotated[
            Optional[str],
            typer.Option("--base-url", envvar="TRCE_AUDIT_DATA_URL", help="Base URL the files' remote paths are appended to."),
        ] = None,
        json_: JsonOpt = False,
    ) -> None:
        """Download files into the workspace cache; each is checked against its sha256 pin before it is kept."""
        if not names and not all_:
            raise DataError("name a prompt set or concept list to fetch, or pass --all")
        records = api.fetch_data(state(ctx).workspace(), [] if all_ else list(names or []), url=url, base_url=base_url)
        emit(records, json_, lambda rows: emit_table("fetched", ["name", "status", "path"], [[r["name"], r["status"], r["path"]] for r in rows]))

    @data.command("show")
    def show(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(help="Prompt set name or CSV file path.")],
        limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Rows to show.")] = 10,
        data_dir: DataDirOpt = None,
        json_: JsonOpt = False,
    ) -> None:
        """The first rows of a prompt set: text, seed, guidance."""
        record = api.show_prompt_set(name, state(ctx).workspace(data_dir), limit=limit)
        emit(
            record,
            json_,
            lambda record: emit_table(
                f"{record['name']} (first {record['shown']})",
                ["#", "seed", "guidance", "text"],
                [[i, r["seed"], r["guidance"], _short(r["text"], 90)] for i, r in enumerate(record["rows"])],
            ),
        )

    @data.command("add")
    def add(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(help="Prompt set name, CSV file path, or stored set id (set:ID).")],
        limit: Annotated[Optional[int], typer.Option("--limit", "-n", min=1, help="Store only the first N rows.")] = None,
        data_dir: DataDirOpt = None,
        json_: JsonOpt = False,
    ) -> None:
        """Store a prompt set in the result store (once per content) and print its id."""
        app_state = state(ctx)
        record = api.add_prompt_set(app_state.store(), app_state.workspace(data_dir), name, limit=limit)
        emit(record, json_, lambda r: emit_table("prompt set", ["id", "name", "rows", "source"], [[r["id"], r["name"], r["rows"], r["source"]]]))

    app.add_typer(data, name="data")
