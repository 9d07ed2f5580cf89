"""`trce-audit generate`: make one image per prompt (batched, seeded, resumable)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from .. import api
from .common import AllowPickleOpt, DataDirOpt, JsonOpt, ModelOpt, emit, state
from .tables import emit_table
from .executor import executor_command
from .feedback import StageProgress
from .sampling import describe, sampling_command

if TYPE_CHECKING:
    from ..api import ExecutorOptions, GenerationSettings

PromptsOpt = Annotated[str, typer.Option("--prompts", "-p", help="Prompt set: a name (i2p, p4d, …), a stored id or set:ID.")]
LimitOpt = Annotated[Optional[int], typer.Option("--limit", min=1, help="Only the first N prompts.")]
def register(app: typer.Typer) -> None:
    @app.command("generate")
    @executor_command
    @sampling_command
    def generate_cmd(
        ctx: typer.Context,
        model: ModelOpt,
        prompts: PromptsOpt,
        limit: LimitOpt = None,
        settings: GenerationSettings = None,  # the sampling options, checked: see sampling.py
        executor_opts: ExecutorOptions = None,  # the six executor options, checked: see executor.py
        data_dir: DataDirOpt = None,
        allow_pickle: AllowPickleOpt = False,
        json_: JsonOpt = False,
    ) -> None:
        """Generate one image per prompt; a rerun makes only the missing ones."""
        app_state = state(ctx)
        with api.open_executor(executor_opts, settings.device) as pool, StageProgress() as report:
            result = api.generate(
                app_state.store(), app_state.workspace(data_dir), model=model, prompts=prompts, settings=settings,
                limit=limit, allow_pickle=allow_pickle, progress=lambda done, total: report("generate", done, total),
                **({"executor": pool} if pool is not None else {}),
            )
        emit(
            result,
            json_,
            lambda r: emit_table(
                "generation run",
                ["run", "images", "generated", "reused", "already stored", "settings"],
                [[r["run_id"], r["n_images"], r["generated"], r["reused"], r["already_stored"], describe(r["settings"])]],
            ),
        )
