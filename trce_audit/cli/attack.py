"""`trce-audit attack` and `trce-audit attacks`."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from .. import api
from .common import AllowPickleOpt, DataDirOpt, JsonOpt, TargetModelOpt, emit, parse_assignments, pick_model, state
from .tables import emit_table
from .executor import executor_command
from .feedback import StageProgress, say_warning
from .sampling import sampling_command

if TYPE_CHECKING:
    from ..api import ExecutorOptions, GenerationSettings


def _render(summary: dict[str, Any]) -> None:
    def pct(value: Any) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}%"

    rows = [
        ["attack run", summary.get("run_id")],
        ["component", summary.get("component")],
        ["tier", summary.get("tier")],
        ["concept", summary.get("concept")],
        ["prompts", summary.get("n_prompts")],
        ["seed set", summary.get("seed_set_id")],
        ["adversarial set", summary.get("adversarial_set_id")],
        ["ASR before", pct(summary.get("asr_before"))],
        ["ASR after", pct(summary.get("asr_after"))],
        ["below paper budget", summary.get("below_paper_budget")],
    ]
    if summary.get("transfer_from"):
        rows.insert(2, ["transfer from", summary["transfer_from"]["spec"]])
    if summary.get("resumed"):
        rows.append(["note", "already complete: stored result shown"])
    emit_table("attack", ["", "value"], rows)


def register(app: typer.Typer) -> None:
    @app.command("attack")
    @executor_command
    @sampling_command
    def attack_cmd(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(help="ring-a-bell | unlearndiff | p4d-n | p4d-k | mma-diffusion | concept-inversion | finetune-resurgence | replay (see `trce-audit attacks`).")],
        model: TargetModelOpt = None,
        concept: Annotated[Optional[str], typer.Option("--concept", "-c", help="Concept to bring back [default: the world's default].")] = None,
        prompts: Annotated[Optional[str], typer.Option("--prompts", "-p", help="Seed prompt set (name or set:ID); for replay, the published set.")] = None,
        budget: Annotated[
            Optional[list[str]],
            typer.Option(
                "--set", "--budget", metavar="KEY=VALUE", show_default=False,
                help="Override one budget or config key (repeatable; --budget is the deprecated old name).",
            ),
        ] = None,
        limit: Annotated[Optional[int], typer.Option("--limit", help="Attack only the first N seed prompts.")] = None,
        original_model: Annotated[Optional[str], typer.Option("--original-model", help="Un-erased model for white-box attacks [default: the artefact's parent].")] = None,
        transfer_from: Annotated[
            Optional[str],
            typer.Option("--transfer-from", metavar="MODEL", help="Search on this SD model's text encoder and replay the prompts on --model (a transfer attack; text-encoder searches only)."),
        ] = None,
        settings: GenerationSettings = None,  # the sampling options of the before/after evaluation: see sampling.py
        executor_opts: ExecutorOptions = None,  # the six executor options, checked: see executor.py
        data_dir: DataDirOpt = None,
        allow_pickle: AllowPickleOpt = False,
        json_: JsonOpt = False,
    ) -> None:
        """Optimise adversarial prompts against a model (or replay a published set) and store ASR before/after."""
        app_state = state(ctx)
        workspace = app_state.workspace(data_dir)
        overrides = parse_assignments(budget, "--set")
        with api.open_executor(executor_opts, settings.device) as pool, warnings.catch_warnings():
            model, concept = pick_model(app_state, model, concept)
            warnings.simplefilter("ignore", api.BelowPaperBudgetWarning)
            with StageProgress() as bars:
                summary = api.attack(
                    app_state.store(), workspace, name=name, model=model, concept=concept, prompts=prompts,
                    budget=overrides, limit=limit, original_model=original_model, settings=settings, transfer_from=transfer_from,
                    allow_pickle=allow_pickle, progress=lambda done, total, what: bars(f"attack {name}", done, total),
                    **({"executor": pool} if pool is not None else {}),
                )
        for text in summary.get("warnings", []):
            say_warning(text)
        emit(summary, json_, _render)

    @app.command("attacks")
    def attacks_cmd(json_: JsonOpt = False) -> None:
        """List attacks with their threat tiers and paper budgets."""
        rows = api.list_attacks()
        emit(
            rows,
            json_,
            lambda rows: emit_table(
                "attacks",
                ["name", "tier", "paper budget", "white-box", "replay"],
                [[r["name"], r.get("tier"), ", ".join(f"{k}={v}" for k, v in r.get("paper_budget", {}).items()), r.get("needs_original"), r.get("replay")] for r in rows],
            ),
        )
