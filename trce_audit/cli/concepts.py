"""`trce-audit concepts`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .. import api
from .common import DataDirOpt, JsonOpt, emit, state
from .tables import emit_table

PAIRS_SHOWN = 3


def _pairs_cell(record: dict) -> str:
    if record.get("pairs") is None:
        return record.get("error", "")
    shown = "; ".join(f"{bad} -> {safe}" for bad, safe in record["pairs"][:PAIRS_SHOWN])
    more = len(record["pairs"]) - PAIRS_SHOWN
    return f"{len(record['pairs'])}: {shown}" + (f"; … (+{more})" if more > 0 else "")


def register(app: typer.Typer) -> None:
    @app.command("concepts")
    def concepts(
        ctx: typer.Context,
        model: Annotated[
            Optional[str], typer.Option("--model", "-m", help="List the concepts of this model's world (pocket or SD).")
        ] = None,
        data_dir: DataDirOpt = None,
        json_: JsonOpt = False,
    ) -> None:
        """Concepts an eraser can target: keyword/safe pairs, detector, evaluation prompt sets."""
        app_state = state(ctx)
        workspace = app_state.workspace(data_dir)
        needs_store = model is not None and (model.startswith("artefact:") or (model.isascii() and model.isdigit()))
        store = app_state.existing_store("concepts --model artefact:ID") if needs_store else None  # read only
        world = api.model_world(model, store=store, workspace=workspace)
        records = api.list_concepts(world, workspace=workspace)
        emit(
            records,
            json_,
            lambda records: emit_table(
                f"concepts ({world} world)",
                ["name", "pairs (malicious -> safe)", "detector", "evaluation sets", "preserve sets"],
                [
                    [r["name"], _pairs_cell(r), r.get("detector"), ", ".join(r.get("eval_sets") or ()), ", ".join(r.get("preserve_sets") or ())]
                    for r in records
                ],
            ),
        )
