"""Diffusion-side helpers of the white-box attacks: the original model's target latents for a seed
prompt, forward noising at a training timestep, and the UNet's noise prediction for hidden states."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..generation import GenerationSettings
from ..records import PromptRow


def target_latents(pipe: Any, row: PromptRow, *, steps: int, device: str, use_mean: bool) -> Any:
    """Generate the seed prompt's image with ``pipe`` (row seed and guidance) and encode it with the VAE.

    UnlearnDiff encodes its target images with the posterior mean, P4D with a posterior sample; both
    scale by the VAE's scaling factor, as SD training does.
    """
    import torch  # torch stays off the light path: listing attacks imports this module

    generator = torch.Generator(device="cpu").manual_seed(int(row.seed))
    if getattr(pipe, "trce_guard", None) is not None:
        return _guarded_target_latents(pipe, row, steps=steps, device=device, use_mean=use_mean)
    with torch.no_grad():
        image = pipe(
            row.text,
            num_inference_steps=steps,
            guidance_scale=float(row.guidance),
            generator=generator,
            output_type="pt",
        ).images.to(device)
        posterior = pipe.vae.encode(image * 2.0 - 1.0).latent_dist
        sample_generator = torch.Generator(device="cpu").manual_seed(int(row.seed))
        if use_mean:
            latents = posterior.mean
        else:
            latents = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=sample_generator).to(device)
    return latents * pipe.vae.config.scaling_factor


def _guarded_target_latents(pipe: Any, row: PromptRow, *, steps: int, device: str, use_mean: bool) -> Any:
    """The same target for a guarded model (no un-erased parent known): its image through the guard,
    drawn by the batched engine (DDIM-free: the pipeline's own scheduler, as ``pipe(...)`` uses)."""
    import torch

    from ..generation.engine import BatchSampler  # the engine imports torch and diffusers at top

    size = int(pipe.unet.config.sample_size) * pipe.vae_scale_factor
    sampler = BatchSampler(pipe, GenerationSettings(steps=steps, height=size, width=size, device=str(device)).validate())
    with torch.no_grad():
        latents = sampler.denoise([row])
        image = (pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample / 2 + 0.5).clamp(0, 1)
        posterior = pipe.vae.encode(image * 2.0 - 1.0).latent_dist
        if use_mean:
            encoded = posterior.mean
        else:
            sample_generator = torch.Generator(device="cpu").manual_seed(int(row.seed))
            encoded = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=sample_generator).to(device)
    return encoded * pipe.vae.config.scaling_factor


def train_timesteps(pipe: Any) -> int:
    return int(pipe.scheduler.config.num_train_timesteps)


def add_noise(pipe: Any, x0: Any, noise: Any, t: Any) -> Any:
    """x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps with the model's training schedule (scheduler-independent)."""
    alphas = pipe.scheduler.alphas_cumprod.to(x0.device, x0.dtype)[t].view(-1, 1, 1, 1)
    return alphas.sqrt() * x0 + (1.0 - alphas).sqrt() * noise


def training_target(pipe: Any, x0: Any, noise: Any, t: Any) -> Any:
    """What the UNet is trained to predict at x_t: the noise, or v for a v-prediction model."""
    kind = pipe.scheduler.config.get("prediction_type", "epsilon")
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        alphas = pipe.scheduler.alphas_cumprod.to(x0.device, x0.dtype)[t].view(-1, 1, 1, 1)
        return alphas.sqrt() * noise - (1.0 - alphas).sqrt() * x0
    raise ConfigError(f"unknown prediction_type {kind!r} in the model's scheduler config")


def predict_noise(pipe: Any, x_t: Any, t: Any, hidden: Any, ids: Any = None) -> Any:
    """The model's conditional noise prediction; through its guard when it carries one (SLD, SAFREE),
    which needs the token ``ids`` behind ``hidden``."""
    guard = getattr(pipe, "trce_guard", None)
    if guard is not None:
        return guard.attack_noise(pipe, x_t, t, hidden, ids)
    return pipe.unet(x_t, t, encoder_hidden_states=hidden).sample


def freeze(pipe: Any, device: str) -> None:
    """Move a pipeline to ``device`` with every weight frozen: attacks optimise prompts, not models."""
    pipe.to(device)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.requires_grad_(False)
        module.eval()
