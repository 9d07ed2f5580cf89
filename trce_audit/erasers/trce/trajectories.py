"""The latents TRCE's stage 2 trains on: trajectories of the malicious prompts and of the empty prompt,
sampled by the original model on its family's schedule, keeping only the states the plan draws.

The UNet families (SD, SDXL) sample with DDIM (eta 0) on the model's own betas, as the reference does;
the flow-matching families (FLUX) with their own Euler scheduler and shift (``Family.set_timesteps``),
so "step s of ``steps``" is the same place on each family's schedule: early steps are the high-noise end.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from ...errors import ConfigError
from ...generation.engine import make_scheduler
from ...hashing import hash_obj
from ...models.families.base import Conditioning, Family
from ...workspace import temp_sibling
from ..common import ddim_scheduler, sample_states, seeded_noise

if TYPE_CHECKING:
    from ..base import EraseContext
    from .config import TRCEConfig

TRAJECTORY_CACHE_VERSION = 1


@dataclass(frozen=True)
class Sample:
    trajectory: int
    state: int  # index of the latent along the trajectory (0 = initial noise)
    timestep: float  # the denoiser's own timestep: an integer on the UNet families, sigma·1000 on FLUX


@dataclass
class Plan:
    """Which latents each iteration uses, drawn up front so only those latents are kept."""

    prompts: list[tuple[str, str]]  # per malicious trajectory: (malicious prompt, safe prompt)
    malicious: list[Sample]
    regulariser: list[list[Sample | None]]  # None: a draw the reference skips (index past the end)
    n_uncond: int


def stage2_shape(pipe, family: Family, config: "TRCEConfig") -> tuple[int, ...]:
    """(C, H, W) of the unpacked latents: ``latent_size`` a side, or the family's native image's."""
    side = config.latent_size * pipe.vae_scale_factor if config.latent_size else family.native_size(pipe)
    shape = tuple(int(n) for n in family.latent_shape(pipe, 1, side, side)[1:])
    if config.latent_size and shape[-1] != config.latent_size:
        raise ConfigError(f"config key 'latent_size' must be even on {family.name} models (2x2 patches), got {config.latent_size}")
    return shape


def stage2_scheduler(pipe, family: Family, config: "TRCEConfig", shape: tuple[int, ...], device):
    """The sampling schedule of ``config.steps`` steps the trajectories and the plan's timesteps follow."""
    if not family.flow_matching:
        return ddim_scheduler(pipe, config.steps, steps_offset=0 if config.reference else None)
    scheduler = make_scheduler(pipe, None)
    family.set_timesteps(pipe, scheduler, config.steps, (1, *shape), device)
    return scheduler


def trajectory_latents(
    pipe, family: Family, denoiser, scheduler, plan: Plan, config: "TRCEConfig", context: "EraseContext",
    embeddings: dict[str, Conditioning],
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Latents aligned with the plan: [I, C, H, W] malicious and [I, R, C, H, W] regulariser (zeros where
    a draw is skipped). Cached in the workspace by everything that determines them."""
    shape = stage2_shape(pipe, family, config)
    key = hash_obj(
        {
            "v": TRAJECTORY_CACHE_VERSION,
            "model": context.model_fingerprint or "unhashed",
            "prompts": plan.prompts,
            "mal": [(s.trajectory, s.state) for s in plan.malicious],
            "reg": [[(s.trajectory, s.state) if s else None for s in b] for b in plan.regulariser],
            "shape": shape,
            "steps": config.steps,
            "guidance": config.trajectory_guidance,
            "seed": config.seed,
            "mode": config.mode,
            # SDXL's time ids now follow the latents' grid, not the native size (SD has none: its keys stay)
            **({"image_terms": "grid"} if family.name != "sd" else {}),
        }
    )
    path = Path(context.cache_dir) / "trce-trajectories" / f"{key[:32]}.safetensors"
    info = {"cache": str(path), "n_malicious": len(plan.prompts), "n_uncond": plan.n_uncond}
    if context.model_fingerprint and path.is_file():
        data = load_file(str(path))
        return data["malicious"], data["regulariser"], {**info, "cache_hit": True}
    wanted_mal: list[set[int]] = [set() for _ in plan.prompts]
    for s in plan.malicious:
        wanted_mal[s.trajectory].add(s.state)
    wanted_reg: list[set[int]] = [set() for _ in range(plan.n_uncond)]
    for batch in plan.regulariser:
        for s in batch:
            if s is not None:
                wanted_reg[s.trajectory].add(s.state)
    device = context.device
    n_mal, n_all = len(plan.prompts), len(plan.prompts) + plan.n_uncond
    context.progress("stage 2: trajectories", 0, n_all)
    noise = seeded_noise(n_mal, shape, config.seed * 1_000_003, device)
    mal = sample_states(
        denoiser, scheduler, embeddings["trajectory"], embeddings["null"], config.trajectory_guidance, noise, wanted_mal,
        context.batch_size, lambda done: context.progress("stage 2: trajectories", done, n_all), family=family, pipe=pipe,
    )
    noise = seeded_noise(plan.n_uncond, shape, config.seed * 1_000_003 + 500_000, device)
    reg = sample_states(
        denoiser, scheduler, None, embeddings["null"], 1.0, noise, wanted_reg, context.batch_size,
        lambda done: context.progress("stage 2: trajectories", n_mal + done, n_all), family=family, pipe=pipe,
    )
    context.progress("stage 2: trajectories", n_all, n_all)
    malicious = torch.stack([mal[(s.trajectory, s.state)] for s in plan.malicious]) if plan.malicious else torch.empty((0, *shape))
    zeros = torch.zeros(shape)
    regulariser = (
        torch.stack([torch.stack([reg[(s.trajectory, s.state)] if s else zeros for s in b]) for b in plan.regulariser])
        if plan.regulariser
        else torch.empty((0, config.reg_batch_size, *shape))
    )
    if context.model_fingerprint:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_sibling(path)  # erasers of one audit may run at once
        save_file({"malicious": malicious.contiguous(), "regulariser": regulariser.contiguous()}, str(tmp))
        tmp.replace(path)
    return malicious, regulariser, {**info, "cache_hit": False}
