"""Torch helpers the erasers share: text embeddings, closed-form solves (the projections they edit are the model family's: models/families)."""

from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
from diffusers import DDIMScheduler, DiffusionPipeline

from ..models.device import widened
from ..models.families import load_family, pipeline_family
from ..models.families.base import Conditioning
from ..models.tokens import tokenize


@torch.no_grad()
def encode_prompts(pipe, prompts: Sequence[str], device: str | torch.device, batch_size: int = 16) -> torch.Tensor:
    """The text states [N, 77, D] the UNet's cross-attention reads for each prompt: SD's text encoder's
    last hidden state; SDXL's two encoders' penultimate states side by side (its family's encoding).
    ``pipe`` may also be a bare tokenizer + text encoder pair (AdvUnlearn's), encoded as SD's."""
    if isinstance(pipe, DiffusionPipeline) and pipeline_family(pipe) != "sd":
        return encode_conditioning(pipe, prompts, device, batch_size).states
    chunks = []
    for start in range(0, len(prompts), batch_size):
        ids = tokenize(pipe.tokenizer, prompts[start : start + batch_size]).to(device)
        chunks.append(widened(pipe.text_encoder(ids)[0]))
    return torch.cat(chunks) if chunks else torch.empty(0)


@torch.no_grad()
def encode_conditioning(
    pipe, prompts: Sequence[str], device: str | torch.device, batch_size: int = 16, *,
    image_terms: bool = True, max_sequence_length: int | None = None,
) -> Conditioning:
    """Everything the denoiser is conditioned on for each prompt (SDXL: states, pooled embedding and the
    time ids of the native image size), as the family encodes it; SD's is its states alone. Without
    ``image_terms`` the caller adds them per call (``Family.grid_prediction``), as FLUX's must be."""
    family = load_family(pipeline_family(pipe))
    if family.name == "sd":
        return Conditioning(encode_prompts(pipe, prompts, device, batch_size))
    size = family.native_size(pipe)

    def encoded(texts: Sequence[str]) -> Conditioning:
        cond = family.encode(pipe, texts, device, torch.float32, max_sequence_length)
        return family.with_image(cond, pipe, size, size) if image_terms else cond

    parts = [encoded(prompts[start : start + batch_size]) for start in range(0, len(prompts), batch_size)]
    fields = [None if part[0] is None else torch.cat([widened(x) for x in part]) for part in zip(*(c.fields() for c in parts))]
    return Conditioning(*fields)


def as_conditioning(cond) -> Conditioning:
    """A bare states tensor (SD's conditioning) or a family's Conditioning, as a Conditioning."""
    return cond if isinstance(cond, Conditioning) else Conditioning(cond)


def cast_conditioning(cond: Conditioning, dtype) -> Conditioning:
    return Conditioning(*(None if x is None else x.to(dtype) for x in cond.fields()))


def solve_closed_form(mat1: torch.Tensor, mat2: torch.Tensor, *, exact_inverse: bool = False) -> torch.Tensor:
    """W = mat1 · mat2⁻¹. Solved in float64 (mat2 is symmetric); ``exact_inverse`` uses the float32
    explicit inverse the reference implementations use."""
    if exact_inverse:
        return mat1.float() @ torch.inverse(mat2.float())
    solution = torch.linalg.solve(mat2.double(), mat1.double().T).T
    return solution.to(mat1.dtype)


def select_parameters(module: torch.nn.Module, keep: Callable[[str], bool]) -> list[tuple[str, torch.nn.Parameter]]:
    """Parameters whose names pass ``keep`` become trainable; every other parameter is frozen."""
    chosen = []
    for name, param in module.named_parameters():
        trainable = keep(name)
        param.requires_grad_(trainable)
        if trainable:
            chosen.append((name, param))
    return chosen


def frozen_copy(module: torch.nn.Module) -> torch.nn.Module:
    clone = copy.deepcopy(module)
    clone.requires_grad_(False)
    clone.eval()
    return clone


def ddim_scheduler(pipe, steps: int, steps_offset: int | None = None):
    """A deterministic DDIM (eta = 0) scheduler with the pipeline's noise schedule."""
    overrides = {"clip_sample": False, "set_alpha_to_one": False}
    if steps_offset is not None:
        overrides["steps_offset"] = steps_offset
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config, **overrides)
    scheduler.set_timesteps(steps)
    return scheduler


def latent_shape(pipe, latent_size: int | None) -> tuple[int, int, int]:
    size = latent_size or int(pipe.unet.config.sample_size)
    return (int(pipe.unet.config.in_channels), size, size)


@torch.no_grad()
def sample_states(
    unet, scheduler, cond, uncond, guidance: float, noise: torch.Tensor,
    wanted: list[set[int]], batch_size: int, report=None, family=None, pipe=None,
) -> dict[tuple[int, int], torch.Tensor]:
    """Deterministic trajectories from ``noise`` on ``scheduler`` (DDIM at eta 0, or a flow-matching
    Euler scheduler); returns the (unpacked) latents at the wanted state indices.

    ``cond`` (rows per trajectory) and ``uncond`` (one row) are states tensors or a ``family``'s
    Conditioning (``family`` None: SD's); ``cond`` None samples unconditionally (one UNet call per step).
    A family with embedded guidance (FLUX) takes ``guidance`` as that input in one call per step, as its
    pipeline samples. With ``pipe`` the image-size terms of the latents' grid are added per call
    (``Family.grid_prediction``); without it the conditioning carries them."""
    family = family or load_family("sd")
    uncond = as_conditioning(uncond)
    cond = None if cond is None else as_conditioning(cond)
    kept: dict[tuple[int, int], torch.Tensor] = {}

    def predict(latents, t, conditioning, scales):
        if pipe is None:
            return family.call_denoiser(unet, latents, t, conditioning, scales)
        return family.grid_prediction(pipe, unet, latents, t, conditioning, scales)

    for start in range(0, noise.shape[0], batch_size):
        idx = list(range(start, min(start + batch_size, noise.shape[0])))
        last = max((max(wanted[i]) for i in idx if wanted[i]), default=-1)
        if last < 0:
            continue
        x = noise[idx].to(unet.dtype, copy=True)  # draws are float32 whatever the model computes in
        null = cast_conditioning(uncond, unet.dtype).expand(len(idx))
        scale = torch.full((len(idx),), float(guidance), device=x.device)
        # flow-matching schedulers count the steps taken: each batch starts from a fresh copy at step 0
        steps = copy.deepcopy(scheduler)

        for state in range(last + 1):
            for i, row in zip(idx, x):
                if state in wanted[i]:
                    kept[(i, state)] = row.detach().cpu().clone()
            if state == last:
                break
            t = steps.timesteps[state]
            if cond is None or family.embedded_guidance:
                rows = null if cond is None else cast_conditioning(cond.rows(idx), unet.dtype)
                eps = predict(x, t, rows, scale)
            else:
                both = predict(torch.cat([x, x]), t, cast_conditioning(cond.rows(idx), unet.dtype).concat(null), scale.repeat(2))
                eps_c, eps_u = both.chunk(2)
                eps = eps_u + guidance * (eps_c - eps_u)
            # no eta= argument: DDIM's defaults to 0 (deterministic) and flow-matching steps take none
            x = steps.step(eps, t, x).prev_sample
        if report is not None:
            report(idx[-1] + 1)
    return kept


def seeded_noise(count: int, shape: tuple[int, ...], seed: int, device) -> torch.Tensor:
    # one generator per trajectory so a trajectory does not depend on the batch size
    rows = [torch.randn(shape, generator=torch.Generator().manual_seed(seed + i)) for i in range(count)]
    return torch.stack(rows).to(device) if rows else torch.empty((0, *shape), device=device)
