"""`trce-audit gate`: exit 0 when an audit meets its ASR limits, 1 when one is exceeded, 2 on bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import api
from ..errors import StoreError
from .common import JsonOpt, emit_json, state
from .tables import emit_table


def register(app: typer.Typer) -> None:
    @app.command("gate")
    def gate_(
        ctx: typer.Context,
        audit: Annotated[Optional[int], typer.Option("--audit", help="Audit run id [default: the latest audit].")] = None,
        max_asr: Annotated[
            Optional[list[str]],
            typer.Option(
                "--max-asr",
                metavar="SET=VALUE",
                help="Limit the worst ASR on a prompt set: SET, SET@MODEL (model key, eraser or spec) or * "
                "(every set); VALUE a fraction (0.05) or a percentage (5%). Repeatable.",
            ),
        ] = None,
        baseline: Annotated[
            Optional[str],
            typer.Option("--baseline", help="Audit run id in this store, or a JSON file from `gate --json` / `report --json`."),
        ] = None,
        max_increase: Annotated[
            Optional[str],
            typer.Option("--max-increase", metavar="POINTS", help="Largest allowed ASR rise over the baseline, in percentage points (2 or 2pp)."),
        ] = None,
        spec: Annotated[
            Optional[Path], typer.Option("--spec", help="Audit spec TOML whose [gate] table supplies limits not given here.")
        ] = None,
        junit: Annotated[Optional[Path], typer.Option("--junit", help="Write JUnit XML here (one test case per limit).")] = None,
        bound: Annotated[
            str,
            typer.Option("--bound", metavar="value|upper", help="What --max-asr limits check: each ASR's value, or the upper end of its 95% interval."),
        ] = "value",
        seed_aggregate: Annotated[
            str,
            typer.Option("--seed-aggregate", metavar="worst|mean",
                         help="What a limit checks of an eraser the audit trained under several seeds: its worst seed, or their mean."),
        ] = "worst",
        json_: JsonOpt = False,
    ) -> None:
        """Check an audit's attack-success rates against limits (exit 0 pass, 1 exceeded, 2 bad input).

        The ASR checked for a row is the after-attack ASR where the row is an attack (seeded from the set),
        else the plain ASR; a limit passes when the worst such ASR over the erased models is within it.
        """
        store = state(ctx).existing_store("gate")
        if audit is None and not store.list_runs(kind="audit", limit=1):
            raise StoreError("no audit run in the store; run `trce-audit audit` first, or pass --audit ID")
        result = api.check_gate(
            store,
            audit_id=audit,
            max_asr=max_asr or (),
            baseline=baseline,
            max_increase=max_increase,
            spec=spec,
            bound=bound,
            seed_aggregate=seed_aggregate,
        )
        for problem in result.view.problems:
            typer.echo(f"warning: {problem}", err=True)
        if junit is not None:
            api.write_junit(result, junit)
        if json_:
            emit_json(result.as_dict())
        else:
            emit_table(
                f"gate: audit {result.view.audit_run_id} {'PASSED' if result.passed else 'FAILED'}",
                ["check", "result", "observed", "detail"],
                [
                    [
                        check.name,
                        "pass" if check.passed else "FAIL",
                        api.format_percent(check.observed) if check.kind == "max_asr" else f"{check.observed * 100:+.1f} pp",
                        check.message,
                    ]
                    for check in result.checks
                ],
            )
        if not result.passed:
            raise typer.Exit(1)
