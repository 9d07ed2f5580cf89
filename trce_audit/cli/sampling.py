"""The sampling options, defined once for every command that draws images to measure them (generate,
eval, attack): ``@sampling_command`` (an option group, groups.py) puts them in place of the command's
``settings`` parameter and hands it the checked ``GenerationSettings``.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from .. import api
from .common import DeviceOpt
from .groups import option_group

StepsOpt = Annotated[Optional[int], typer.Option("--steps", min=1, show_default=False, help="Denoising steps [default: the preset's, else 30].")]
HeightOpt = Annotated[Optional[int], typer.Option("--height", min=8, metavar="PIXELS", show_default=False, help="Image height [default: the preset's, else the model's].")]
WidthOpt = Annotated[Optional[int], typer.Option("--width", min=8, metavar="PIXELS", show_default=False, help="Image width [default: the preset's, else the model's].")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Prompts per batch (does not change images).")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="fp32, fp16, bf16, or fp64 (reference checks on a CPU).")]
SchedulerOpt = Annotated[
    Optional[str], typer.Option("--scheduler", help="ddim, pndm, dpm++, euler, euler-a, lms [default: the model's].")
]
PresetOpt = Annotated[
    Optional[str],
    typer.Option("--preset", help="Protocol preset of the model's family (sdxl-base, sd3-medium, flux-schnell, flux-dev, …): fills what is not given."),
]
GuidanceOpt = Annotated[
    Optional[float], typer.Option("--guidance", min=0.0, show_default=False, help="One guidance scale for every prompt [default: the preset's, else each prompt's own].")
]
SequenceOpt = Annotated[
    Optional[int], typer.Option("--max-sequence-length", min=1, max=512, show_default=False, help="T5 prompt tokens (SD3, FLUX) [default: the preset's, else the model's (pocket-flux: 48), else the pipeline's].")
]

# (name, type, default), in --help order
OPTIONS = (
    ("steps", StepsOpt, None),
    ("height", HeightOpt, None),
    ("width", WidthOpt, None),
    ("batch_size", BatchOpt, 8),
    ("dtype", DtypeOpt, "fp32"),
    ("scheduler", SchedulerOpt, None),
    ("device", DeviceOpt, "auto"),
    ("preset", PresetOpt, None),
    ("guidance", GuidanceOpt, None),
    ("max_sequence_length", SequenceOpt, None),
)


def make_settings(steps, height, width, batch_size, dtype, scheduler, device, preset, guidance, max_sequence_length) -> Any:
    return api.GenerationSettings.for_preset(
        preset, steps=steps, height=height, width=width, batch_size=batch_size, dtype=dtype, scheduler=scheduler,
        device=device, guidance=guidance, max_sequence_length=max_sequence_length,
    ).validate()


sampling_command = option_group("settings", OPTIONS, make_settings)


def describe(settings: dict[str, Any]) -> str:
    scheduler = settings.get("scheduler") or "model's scheduler"
    preset = f", preset {settings['preset']}" if settings.get("preset") else ""
    return f"{settings['steps']} steps, {settings['height']}x{settings['width']}, {settings['dtype']}, {scheduler}{preset}"
