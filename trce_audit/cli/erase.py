"""`trce-audit erase NAME --concept C [--model M]` and `trce-audit erasers`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from .. import api
from .common import AllowPickleOpt, DataDirOpt, DeviceOpt, JsonOpt, SetOpt, emit, emit_json, parse_assignments, pick_model, state
from .tables import emit_table
from .executor import executor_command
from .feedback import StageProgress

if TYPE_CHECKING:
    from ..api import ExecutorOptions


def register(app: typer.Typer) -> None:
    @app.command("erase")
    @executor_command
    def erase(
        ctx: typer.Context,
        eraser: Annotated[str, typer.Argument(help="Eraser id: trce, esd-x, esd-u, uce (see `trce-audit erasers`).")],
        concept: Annotated[str, typer.Option("--concept", "-c", help="Concept name (nudity, unsafe, a pocket concept) or a TOML/JSON file of pairs.")],
        model: Annotated[
            Optional[str],
            typer.Option(
                "--model", "-m", show_default=False,
                help="pocket | pocket-flux | hub id | local diffusers folder | artefact:ID [default: the concept's reference model: "
                "CompVis/stable-diffusion-v1-4 for nudity and unsafe, pocket for pocket concepts].",
            ),
        ] = None,
        out: Annotated[Optional[Path], typer.Option("--out", help="Output folder [default: the workspace's artefacts folder].")] = None,
        config: Annotated[Optional[Path], typer.Option("--config", help="TOML file of config keys (top level or an [ERASER] table).")] = None,
        set_: SetOpt = None,
        stages: Annotated[Optional[str], typer.Option("--stages", help="trce only: 1, 2 or 1,2 [default: 1,2].")] = None,
        device: DeviceOpt = "auto",
        batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Samples per UNet call (runtime only).")] = 8,
        executor_opts: ExecutorOptions = None,  # the six executor options, checked: see executor.py
        allow_pickle: AllowPickleOpt = False,
        data_dir: DataDirOpt = None,
        json_: JsonOpt = False,
    ) -> None:
        """Erase a concept from a model; prints the artefact id, usable as --model artefact:ID."""
        overrides = parse_assignments(set_)
        app_state = state(ctx)
        model, _ = pick_model(app_state, model, concept, erase=True)
        workspace = app_state.workspace(data_dir).ensure()
        with api.open_executor(executor_opts, device) as pool, StageProgress() as reporter:
            result = api.erase(
                app_state.store(), workspace, eraser=eraser, concept=concept, model=model, out=out,
                config_file=config, overrides=overrides, device=device, stages=stages, batch_size=batch_size,
                allow_pickle=allow_pickle, progress=reporter, **({"executor": pool} if pool is not None else {}),
            )

        def render(r: dict) -> None:
            note = " (already erased: reused)" if r["reused"] else f" ({r['seconds']:.1f} s)"
            typer.echo(f"artefact {r['artefact_id']}{note}: {r['path']}")
            typer.echo(f"use it as --model {r['model']}")

        emit(result, json_, render)

    @app.command("erasers")
    def erasers(ctx: typer.Context, json_: JsonOpt = False) -> None:
        """List the registered erasers and their default configs."""
        rows = api.list_erasers()
        if json_:
            emit_json(rows)
        else:
            emit_table("erasers", ["name", "version", "description"], [[r["name"], r["version"], r["description"]] for r in rows])
