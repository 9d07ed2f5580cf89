"""`trce-audit audit [SPEC.toml]`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from .. import api
from ..errors import ConfigError
from .common import AllowPickleOpt, DataDirOpt, JsonOpt, emit, say, state
from .tables import emit_table
from .executor import executor_command
from .feedback import PlainProgress, say_warning

if TYPE_CHECKING:
    from ..api import ExecutorOptions


# What the terminal shows of a row's other metrics: preservation only (ASR has its own columns; the
# calibrated ASR and the rest are in `trce-audit report`).
PRESERVATION = {"preserve_acc": "preserve", "clip_score": "CLIP", "fid": "FID"}
LEGEND = ("ASR: share of images the first scorer flags, its 95% interval in brackets; before → after: "
          "the attack's seed prompts, then its adversarial prompts; preserve: share of preserve-set images "
          "that show what their prompt asked for. Every scorer and image: trce-audit report.")


def _percent(metric: dict[str, Any] | None) -> str:
    if not metric:
        return ""
    low, high = metric.get("ci_low"), metric.get("ci_high")
    interval = "" if low is None else f" [{low * 100:.0f}–{high * 100:.0f}]"
    return f"{metric['value'] * 100:.1f}%{interval}"


def _preservation(metrics: dict[str, Any]) -> str:
    shown = []
    for name, label in PRESERVATION.items():
        metric = metrics.get(name)
        if metric:
            shown.append(f"{label} {_percent(metric)}" if name == "preserve_acc" else f"{label} {metric['value']:.3g}")
    return ", ".join(shown)


def _render(result: dict[str, Any], console: Any = None) -> None:
    """One table per kind (no attack; attacks), few short columns that fold rather than cut, so the
    summary reads at 80 columns (a CI log) and wider terminals get it on fewer lines."""
    plain = [row for row in result["rows"] if not row["attack"]]
    attacked = [row for row in result["rows"] if row["attack"]]
    audit = f"audit {result['audit_run_id']}"
    if plain:
        emit_table(f"{audit}: erasure and preservation", ["model", "prompt set", "ASR", "preservation"],
                   [[r["model"], r["prompt_set"], _percent(r["asr"]), _preservation(r["metrics"])] for r in plain], console=console)
    if attacked:
        emit_table(f"{audit}: attacks", ["model", "attack", "seeds", "ASR before → after"],
                   [[r["model"], r["attack"], r["prompt_set"], f"{_percent(r['asr_before']) or 'n/a'} → {_percent(r['asr_after'])}"]
                    for r in attacked], console=console)
    say(LEGEND, console=console)
    for problem in result.get("problems", []):
        say_warning(problem)


def register(app: typer.Typer) -> None:
    @app.command("audit")
    @executor_command
    def audit(
        ctx: typer.Context,
        spec: Annotated[
            Optional[Path],
            typer.Argument(help="Audit spec (TOML). Default: the pocket-world audit shipped with trce-audit."),
        ] = None,
        spec_option: Annotated[
            Optional[Path], typer.Option("--spec", metavar="FILE", show_default=False, help="The audit spec, as an option (same as SPEC).")
        ] = None,
        device: Annotated[
            Optional[str],
            typer.Option("--device", metavar="DEVICE", show_default=False, help="auto, cpu, cuda or cuda:N (runtime only) [default: the spec's, auto].")
        ] = None,
        executor_opts: ExecutorOptions = None,  # the six executor options, checked: see executor.py
        data_dir: DataDirOpt = None,
        allow_pickle: AllowPickleOpt = False,
        json_: JsonOpt = False,
    ) -> None:
        """Run erase -> evaluate -> attack as the spec says, reusing everything already stored."""
        if spec is not None and spec_option is not None and spec != spec_option:
            raise ConfigError("give the audit spec once: as SPEC or as --spec FILE")
        spec = spec or spec_option
        if spec is not None and not os.path.isfile(spec):  # False, not an OSError, for a name too long to be a file
            raise ConfigError(f"audit spec {spec} does not exist")
        app_state = state(ctx)
        workspace = app_state.workspace(data_dir)
        with api.open_executor(executor_opts, device) as pool:
            steps = PlainProgress()  # numbered steps with elapsed time, and a heartbeat during long ones
            try:
                result = api.run_audit_spec(app_state.store(), workspace, spec, device=device, allow_pickle=allow_pickle, log=steps.step,
                                            progress=steps, **({"executor": pool} if pool is not None else {}))
            finally:
                steps.close()
        emit(result, json_, _render)
