"""`trce-audit generate`: make one image per prompt (batched, seeded, resumable)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from .. import api
from .common import AllowPickleOpt, DataDirOpt, DeviceOpt, JsonOpt, ModelOpt, emit, emit_table, state
from .executor import executor_command
from .feedback import StageProgress

if TYPE_CHECKING:
    from ..api import ExecutorOptions, GenerationSettings

PromptsOpt = Annotated[str, typer.Option("--prompts", "-p", help="Prompt set: a name (i2p, p4d, …), a stored id or set:ID.")]
LimitOpt = Annotated[Optional[int], typer.Option("--limit", min=1, help="Only the first N prompts.")]
StepsOpt = Annotated[Optional[int], typer.Option("--steps", min=1, show_default=False, help="Denoising steps [default: the preset's, else 30].")]
PresetOpt = Annotated[
    Optional[str],
    typer.Option("--preset", help="Protocol preset of the model's family (sdxl-base, sd3-medium, flux-schnell, flux-dev, …): fills what is not given."),
]
GuidanceOpt = Annotated[
    Optional[float], typer.Option("--guidance", min=0.0, show_default=False, help="One guidance scale for every prompt [default: the preset's, else each prompt's own].")
]
SequenceOpt = Annotated[
    Optional[int], typer.Option("--max-sequence-length", min=1, max=512, show_default=False, help="T5 prompt tokens (SD3, FLUX) [default: the preset's, else the pipeline's].")
]
HeightOpt = Annotated[Optional[int], typer.Option("--height", min=8, metavar="PIXELS", show_default=False, help="Image height [default: the model's].")]
WidthOpt = Annotated[Optional[int], typer.Option("--width", min=8, metavar="PIXELS", show_default=False, help="Image width [default: the model's].")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Prompts per batch (does not change images).")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="fp32, fp16, bf16, or fp64 (reference checks on a CPU).")]
SchedulerOpt = Annotated[
    Optional[str], typer.Option("--scheduler", help="ddim, pndm, dpm++, euler, euler-a, lms [default: the model's].")
]


def make_settings(
    steps, height, width, batch_size: int, dtype: str, scheduler, device: str, preset=None, guidance=None, max_sequence_length=None
) -> GenerationSettings:
    return api.GenerationSettings.for_preset(
        preset, steps=steps, height=height, width=width, batch_size=batch_size, dtype=dtype, scheduler=scheduler,
        device=device, guidance=guidance, max_sequence_length=max_sequence_length,
    ).validate()


def describe(settings: dict[str, Any]) -> str:
    scheduler = settings.get("scheduler") or "model's scheduler"
    preset = f", preset {settings['preset']}" if settings.get("preset") else ""
    return f"{settings['steps']} steps, {settings['height']}x{settings['width']}, {settings['dtype']}, {scheduler}{preset}"


def register(app: typer.Typer) -> None:
    @app.command("generate")
    @executor_command
    def generate_cmd(
        ctx: typer.Context,
        model: ModelOpt,
        prompts: PromptsOpt,
        limit: LimitOpt = None,
        steps: StepsOpt = None,
        height: HeightOpt = None,
        width: WidthOpt = None,
        batch_size: BatchOpt = 8,
        dtype: DtypeOpt = "fp32",
        scheduler: SchedulerOpt = None,
        device: DeviceOpt = "auto",
        preset: PresetOpt = None,
        guidance: GuidanceOpt = None,
        max_sequence_length: SequenceOpt = None,
        executor_opts: ExecutorOptions = None,  # the six executor options, checked: see executor.py
        data_dir: DataDirOpt = None,
        allow_pickle: AllowPickleOpt = False,
        json_: JsonOpt = False,
    ) -> None:
        """Generate one image per prompt; a rerun makes only the missing ones."""
        app_state = state(ctx)
        settings = make_settings(steps, height, width, batch_size, dtype, scheduler, device, preset, guidance, max_sequence_length)
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
