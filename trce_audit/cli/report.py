"""`trce-audit report`: one self-contained HTML file comparing models, attacks and metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import api
from .common import JsonOpt, emit_json, state


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        ctx: typer.Context,
        out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write (a .md name writes Markdown tables).")] = Path("report.html"),
        audit: Annotated[
            Optional[str], typer.Option("--audit", metavar="AUDIT", help="Audit run id or spec name [default: the latest audit].")
        ] = None,
        runs: Annotated[
            Optional[str], typer.Option("--runs", metavar="ID,ID…", help="Report exactly these runs (eval, attack or audit runs).")
        ] = None,
        unblur: Annotated[bool, typer.Option("--unblur", help="Show detector-flagged images unblurred.")] = False,
        max_images: Annotated[int, typer.Option("--max-images", help="At most this many images per comparison (0: none).")] = 12,
        beside: Annotated[
            Optional[str], typer.Option("--beside", metavar="AUDIT", help="Set each model's numbers beside its counterpart's in this audit (run id or spec name).")
        ] = None,
        section: Annotated[
            Optional[str], typer.Option("--section", metavar="NAME", help="Write the Markdown report into this section of --out, keeping the rest of the file.")
        ] = None,
        json_: JsonOpt = False,
    ) -> None:
        """Write an offline HTML report: ASR tables and chart, preservation metrics, image grids, provenance."""
        result = api.render_report(
            state(ctx).existing_store("report"),
            out,
            audit_id=audit,
            run_ids=api.parse_run_ids(runs) if runs is not None else None,
            unblur=unblur,
            max_images=max_images,
            beside=beside,
            section=section,
        )
        if json_:
            emit_json(result)
        else:
            stats = result["report"]
            if stats.get("format") == "markdown":
                typer.echo(f"wrote {stats['out']} ({stats['bytes'] / 1024:.0f} KiB, {len(result['rows'])} comparisons, Markdown tables)")
                return
            typer.echo(
                f"wrote {stats['out']} ({stats['bytes'] / 1024:.0f} KiB, {len(result['rows'])} comparisons, "
                f"{stats['n_images']} images, {stats['n_flagged_shown']} flagged"
                + (" shown unblurred)" if unblur else " blurred)")
            )
