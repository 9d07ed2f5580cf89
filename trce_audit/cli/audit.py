"""`trce-audit audit [SPEC.toml]`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from .. import api
from ..errors import ConfigError
from .common import AllowPickleOpt, DataDirOpt, JsonOpt, emit, emit_table, state
from .executor import executor_command
from .feedback import PlainProgress, say_warning

if TYPE_CHECKING:
    from ..api import ExecutorOptions


def _percent(metric: dict[str, Any] | None) -> str:
    if not metric:
        return ""
    low, high = metric.get("ci_low"), metric.get("ci_high")
    interval = "" if low is None else f" [{low * 100:.0f}–{high * 100:.0f}]"
    return f"{metric['value'] * 100:.1f}%{interval}"


def _render(result: dict[str, Any]) -> None:
    rows = []
    for row in result["rows"]:
        other = ", ".join(f"{name} {m['value']:.3g}" for name, m in row["metrics"].items())
        rows.append([row["model"], row["prompt_set"], row["attack"] or "", _percent(row["asr"]),
                     _percent(row["asr_before"]), _percent(row["asr_after"]), other])
    emit_table(
        f"audit {result['audit_run_id']}",
        ["model", "prompt set", "attack", "ASR", "ASR before", "ASR after", "preservation"],
        rows,
    )
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
        if spec is not None and not spec.is_file():
            raise ConfigError(f"audit spec {spec} does not exist")
        app_state = state(ctx)
        workspace = app_state.workspace(data_dir)
        with api.open_executor(executor_opts, device) as pool:
            steps = PlainProgress()  # numbered steps with elapsed time, and a heartbeat during long ones
            try:
                result = api.run_audit_spec(app_state.store(), workspace, spec, device=device, allow_pickle=allow_pickle, log=steps.step,
                                        **({"executor": pool} if pool is not None else {}))
            finally:
                steps.close()
        emit(result, json_, _render)
