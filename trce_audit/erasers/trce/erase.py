"""TRCE's erase: stage 1 and stage 2 in turn on one pipeline, each timed (torch at import)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ...models.families import load_family, pipeline_family
from ..common import frozen_copy
from .stage1 import run_stage1
from .stage1_flux import run_stage1_flux
from .stage2 import run_stage2

if TYPE_CHECKING:
    from ...data.concepts import Concept
    from ..base import EraseContext
    from .config import TRCEConfig


def run_stages(
    pipe, concept: "Concept", config: "TRCEConfig", context: "EraseContext", stages: tuple[int, ...]
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """(stats, loss curves) of the chosen stages; stage 2 fine-tunes against the model before stage 1."""
    stats: dict = {"stages": list(stages), "mode": config.mode}
    losses: dict = {}
    family = load_family(pipeline_family(pipe))
    original = frozen_copy(getattr(pipe, family.denoiser)) if 2 in stages else None
    started = time.perf_counter()
    if 1 in stages:
        stage1 = run_stage1_flux if family.name == "flux" else run_stage1
        stats["stage1"] = stage1(pipe, concept, config, context)
        stats["stage1"]["seconds"] = time.perf_counter() - started
    if 2 in stages:
        started = time.perf_counter()
        stats["stage2"], losses = run_stage2(pipe, original, concept, config, context)
        stats["stage2"]["seconds"] = time.perf_counter() - started
    return stats, losses
