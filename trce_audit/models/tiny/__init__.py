"""Random-weight diffusers pipelines built in code: tiny ones for tests, full-size ones for GPU timing.

Nothing here is downloaded. One module per family builds its shapes:

| shape | family | pipeline | for |
|---|---|---|---|
| `tiny` | SD 1.x | StableDiffusionPipeline | tests (32 px) |
| `sd14` | SD 1.x | StableDiffusionPipeline | timing: CompVis/stable-diffusion-v1-4's shapes |
| `sdxl` | SDXL | StableDiffusionXLPipeline | tests (32 px) |
| `sdxl-random` | SDXL | StableDiffusionXLPipeline | timing: stable-diffusion-xl-base-1.0's shapes |
| `sd3` | SD3 | StableDiffusion3Pipeline | tests (32 px) |
| `flux` | FLUX.1 | FluxPipeline | tests (32 px; with FLUX.1-dev's guidance embedding) |
| `flux-schnell-random` | FLUX.1 | FluxPipeline | timing: FLUX.1-schnell's shapes |

Tiny images are 32×32 (16×16 latents) and build in a fraction of a second. The full-size ones hold 1.1
(`sd14`), 3.5 (`sdxl-random`) and 16.9 (`flux-schnell-random`) billion parameters: build the last two on the
accelerator in half precision (`device="cuda", dtype=torch.bfloat16`), or on `device="meta"` to read their
architecture without memory.
"""

from __future__ import annotations

from pathlib import Path

# Torch, diffusers and transformers at the top: only tests and benchmarks import this package.
import torch

from . import flux, sd, sd3, sdxl
from .tokenizers import clip_tokenizer, t5_tokenizer, write_char_tokenizer

_FAMILY = {shape: module for module in (sd, sdxl, sd3, flux) for shape in module.SHAPES}
SHAPES = tuple(_FAMILY)

__all__ = ["SHAPES", "build_pipeline", "clip_tokenizer", "save_pipeline", "t5_tokenizer", "write_char_tokenizer"]


def build_pipeline(
    shape: str = "tiny",
    seed: int = 0,
    tokenizer_dir: Path | None = None,
    scheduler: str | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
):
    """A diffusers pipeline with random weights of the given shape, on CPU in fp32 unless told otherwise.

    `tokenizer_dir` is a CLIP vocabulary folder (the character-level one otherwise). `scheduler` picks
    "ddim" (default) or "pndm" for the SD shapes; the other families use their model's own scheduler.
    `device`: SD shapes are drawn on CPU and moved, so their weights are the same everywhere; the other
    families draw on `device` itself (a 12-billion-parameter fp32 CPU copy would not fit a GPU host's
    disk or time budget), so their weights depend on the device's generator as well as the seed.
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    family = _FAMILY[shape]
    if family is sd:
        pipe = sd.build(shape, seed, tokenizer_dir, scheduler or "ddim")
        if device is not None or dtype is not None:
            pipe = pipe.to(device=device, dtype=dtype)
    elif scheduler is not None:
        raise ValueError(f"shape {shape!r} uses its model's own scheduler; `scheduler` applies to SD shapes only")
    else:
        pipe = family.build(shape, seed, tokenizer_dir, dtype, device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_pipeline(folder: Path, shape: str = "tiny", seed: int = 0) -> Path:
    """Build and save a random-weight pipeline as a diffusers folder (safetensors)."""
    pipe = build_pipeline(shape, seed)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder
