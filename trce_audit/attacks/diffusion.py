"""Diffusion-side helpers of the white-box attacks: the original model's target latents for a seed
prompt, forward noising at a training timestep, and the UNet's noise prediction for hidden states."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..generation import GenerationSettings
from ..models.families import load_family, pipeline_family
from ..records import PromptRow


def target_latents(pipe: Any, row: PromptRow, *, steps: int, device: str, use_mean: bool, generation: Any = None) -> Any:
    """Generate the seed prompt's image with ``pipe`` (row seed and guidance) and encode it with the VAE.

    UnlearnDiff encodes its target images with the posterior mean, P4D with a posterior sample; both
    scale by the VAE's scaling factor, as SD training does. An SD model draws with its own pipeline at
    its native size (``generation`` unused); the other families draw with the batched engine at the
    run's image size (``generation``, see ``_engine_target_latents``).
    """
    import torch  # torch stays off the light path: listing attacks imports this module

    generator = torch.Generator(device="cpu").manual_seed(int(row.seed))
    if getattr(pipe, "trce_guard", None) is not None:
        return _guarded_target_latents(pipe, row, steps=steps, device=device, use_mean=use_mean)
    if family(pipe).name != "sd":
        return _engine_target_latents(pipe, row, steps=steps, device=device, use_mean=use_mean, generation=generation)
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
    drawn by the batched engine (DDIM-free: the pipeline's own scheduler, as ``pipe(...)`` uses) at the
    native size, decoded and re-encoded as ``_engine_target_latents`` does (SD's arithmetic: the
    scaling factor out and back in)."""
    return _engine_target_latents(pipe, row, steps=steps, device=device, use_mean=use_mean, generation=None)


def _engine_target_latents(pipe: Any, row: PromptRow, *, steps: int, device: str, use_mean: bool, generation: Any) -> Any:
    """The target drawn by the batched engine: the row (its seed; its guidance unless the run fixes
    one) at the run's image size and T5 length (``image_settings``), the image decoded as the engine
    decodes it, encoded by the VAE, and the posterior mean or sample mapped into the denoiser's latent
    space by the family (SD and SDXL: scaled; SD3 and FLUX: shifted and scaled), unpacked as
    ``Family.noised`` takes it. Every family but SD's unguarded path draws its target here."""
    import torch

    from ..generation.engine import BatchSampler  # the engine imports torch and diffusers at top

    settings = image_settings(pipe, steps, device, generation)
    if getattr(generation, "guidance", None) is not None:
        settings = dataclasses.replace(settings, guidance=float(generation.guidance))
    sampler = BatchSampler(pipe, settings)
    with torch.no_grad():
        image = sampler.decode_float(sampler.denoise([row])).to(device)
        posterior = pipe.vae.encode((image * 2.0 - 1.0).to(pipe.vae.dtype)).latent_dist
        if use_mean:
            sample = posterior.mean
        else:
            sample_generator = torch.Generator(device="cpu").manual_seed(int(row.seed))
            sample = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=sample_generator).to(device)
        return family(pipe).encoded_latents(pipe, sample)


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
    for module in frozen_parts(pipe):
        module.requires_grad_(False)
        module.eval()


def frozen_parts(pipe: Any) -> list[Any]:
    """The pipeline's torch modules: SD's UNet, VAE and text encoder, and whatever other module
    component the family's pipeline holds (the second and third text encoders, a transformer)."""
    parts = [getattr(pipe, name, None) for name in ("unet", "vae", "text_encoder")]
    # a module is what has weights to freeze (tokenizers, schedulers and image processors do not)
    parts += [part for part in (getattr(pipe, "components", None) or {}).values() if callable(getattr(part, "requires_grad_", None))]
    unique = {id(part): part for part in parts if part is not None}
    return list(unique.values())
