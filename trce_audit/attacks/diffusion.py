"""Diffusion-side helpers of the white-box attacks: the original model's target latents for a seed
prompt, forward noising at a training timestep, and the UNet's noise prediction for hidden states."""

from __future__ import annotations

from typing import Any

from ..generation import GenerationSettings
from ..models.families import load_family, pipeline_family
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


def image_settings(pipe: Any, steps: int, device: str, generation: Any = None) -> GenerationSettings:
    """Settings for an attack's own images of ``pipe``: ``steps`` steps, at the run's image size and T5
    length when ``generation`` sets them, else at the family's native size."""
    size = family(pipe).native_size(pipe)
    height = getattr(generation, "height", None) or size
    width = getattr(generation, "width", None) or size
    length = getattr(generation, "max_sequence_length", None)
    return GenerationSettings(steps=steps, height=height, width=width, device=str(device), max_sequence_length=length).validate()


def _guarded_target_latents(pipe: Any, row: PromptRow, *, steps: int, device: str, use_mean: bool) -> Any:
    """The same target for a guarded model (no un-erased parent known): its image through the guard,
    drawn by the batched engine (DDIM-free: the pipeline's own scheduler, as ``pipe(...)`` uses)."""
    import torch

    from ..generation.engine import BatchSampler  # the engine imports torch and diffusers at top

    sampler = BatchSampler(pipe, image_settings(pipe, steps, device))
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


def family(pipe: Any) -> Any:
    """The loaded pipeline's model family (models/families): its training forward process and target."""
    return load_family(pipeline_family(pipe))


def latents_of(pipe: Any) -> Any:
    """VAE sample -> the denoiser's latent space for ``pipe`` (scaled; shifted for the flow families)."""
    chosen = family(pipe)
    return lambda sample: chosen.encoded_latents(pipe, sample)


def train_timesteps(pipe: Any) -> int:
    return family(pipe).train_timesteps(pipe)


def add_noise(pipe: Any, x0: Any, noise: Any, t: Any) -> Any:
    """x_t at training timestep ``t`` (the family's forward process; DDPM for the UNet families)."""
    return family(pipe).noised(pipe, x0, noise, t)


def training_target(pipe: Any, x0: Any, noise: Any, t: Any) -> Any:
    """What the denoiser is trained to predict at x_t (noise, v, or a flow's velocity)."""
    return family(pipe).training_target(pipe, x0, noise, t)


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
