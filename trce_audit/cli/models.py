"""`trce-audit models`."""

from __future__ import annotations

import typer

from .. import api
from .common import JsonOpt, emit, state
from .tables import emit_table


def register(app: typer.Typer) -> None:
    @app.command("models")
    def models(ctx: typer.Context, json_: JsonOpt = False) -> None:
        """List built-in models, reference hub models and erased models (artefacts) in the store."""
        rows = api.list_models(state(ctx).existing_store("models"))
        emit(rows, json_, lambda rows: emit_table("models", ["model", "kind", "description"], [[r["model"], r["kind"], r["description"]] for r in rows]))
