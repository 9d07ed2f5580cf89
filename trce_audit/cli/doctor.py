"""`trce-audit doctor`: what this installation can do, one line per check, with the fix for what is missing."""

from __future__ import annotations

import typer

from .. import api
from .common import JsonOpt, emit_json, state


def register(app: typer.Typer) -> None:
    @app.command("doctor")
    def doctor_cmd(ctx: typer.Context, json_: JsonOpt = False) -> None:
        """Check packages, device, hub access, cached models, optional extras and the store (writes nothing)."""
        rows = api.doctor(state(ctx).workspace())
        if json_:
            emit_json(rows)
            return
        width = max(len(row["check"]) for row in rows)
        for row in rows:
            mark = "ok  " if row["ok"] else "MISS"
            fix = f"  -> {row['fix']}" if row["fix"] else ""
            typer.echo(f"{mark} {row['check']:<{width}}  {row['detail']}{fix}")
        missing = sum(not row["ok"] for row in rows)
        typer.echo(f"{len(rows) - missing} of {len(rows)} checks ok" + (f"; {missing} missing (fixes above)" if missing else ""))
