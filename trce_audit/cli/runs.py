"""`trce-audit runs list|show`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .. import api
from .common import JsonOpt, emit, emit_json, state
from .tables import emit_table


def register(app: typer.Typer) -> None:
    runs = typer.Typer(help="Inspect runs recorded in the store.", no_args_is_help=True)

    @runs.command("list")
    def list_(
        ctx: typer.Context,
        kind: Annotated[Optional[str], typer.Option(help="Only runs of this kind (generate, eval, erase, attack, audit…).")] = None,
        status: Annotated[Optional[str], typer.Option(help="started, complete or failed.")] = None,
        limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
        json_: JsonOpt = False,
    ) -> None:
        """List runs, newest first."""
        rows = api.list_runs(state(ctx).existing_store("runs list"), kind=kind, status=status, limit=limit)
        emit(
            rows,
            json_,
            lambda rows: emit_table(
                "runs",
                ["id", "kind", "component", "status", "model", "created"],
                [[r["id"], r["kind"], r["component"], r["status"], r["model"], r["created_at"]] for r in rows],
            ),
        )

    @runs.command("show")
    def show(ctx: typer.Context, run_id: Annotated[int, typer.Argument(help="Run id.")], json_: JsonOpt = False) -> None:
        """Show one run: config, versions, metrics and child runs."""
        record = api.show_run(state(ctx).existing_store("runs show"), run_id)
        if json_:
            emit_json(record)
            return
        emit_table("run", ["field", "value"], [[k, v] for k, v in record.items() if k not in ("metrics", "children")])
        if record["metrics"]:
            emit_table(
                "metrics",
                ["name", "value", "n", "95% interval"],
                [
                    [m["name"], f"{m['value']:.4f}", m["n"], "" if m["ci_low"] is None else f"[{m['ci_low']:.3f}, {m['ci_high']:.3f}]"]
                    for m in record["metrics"]
                ],
            )

    app.add_typer(runs, name="runs")
