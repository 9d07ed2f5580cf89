"""What a model family is: how its pipeline encodes text, calls its denoiser, schedules and decodes.

A family object holds no weights; every method takes the loaded diffusers pipeline. The batched
sampler (generation/engine.py) drives the loop and asks the family for each family-specific step, so
one loop serves every family and per-row seeds and guidance work the same way on all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch


@dataclass
class Conditioning:
    """Text conditioning for a batch: the sequence the image stream attends to, and what rides beside it."""

    states: Any  # (B, S, D) encoder hidden states
    pooled: Any = None  # (B, P) pooled text embedding (SDXL, SD3, FLUX)
    extra: Any = None  # per-family tensors that are not text (SDXL's time ids; FLUX's text ids)

    def expand(self, n: int) -> "Conditioning":
        """A batch of ``n`` copies of a one-row conditioning (the unconditional one)."""
        return Conditioning(*(None if x is None else x.expand(n, *x.shape[1:]) for x in self.fields()))

    def concat(self, other: "Conditioning") -> "Conditioning":
        """Unconditional rows first, then conditional: the order classifier-free guidance splits back."""
        return Conditioning(*(None if a is None else torch.cat([a, b]) for a, b in zip(self.fields(), other.fields())))

    def fields(self) -> tuple:
        return (self.states, self.pooled, self.extra)


class Family:
    """One architecture of text-to-image pipeline. Subclasses fill in what differs."""

    name: ClassVar[str]
    pipeline_classes: ClassVar[tuple[str, ...]]  # model_index.json `_class_name`s that belong to the family
    denoiser: ClassVar[str]  # the pipeline attribute of the denoiser: "unet" or "transformer"
    # FLUX.1-dev conditions on guidance through an embedding: no unconditional pass.
    embedded_guidance: ClassVar[bool] = False

    def text_projections(self, denoiser) -> list[str]:
        """Names of the denoiser's modules that map text into the image stream (what erasers edit)."""
        raise NotImplementedError

    def encode(self, pipe, texts: Sequence[str], device, dtype, max_sequence_length: int | None) -> Conditioning:
        raise NotImplementedError

    def unconditional(self, pipe, device, dtype, max_sequence_length: int | None) -> Conditioning:
        """The one-row conditioning of the empty prompt, as the family's pipeline builds it."""
        return self.encode(pipe, [""], device, dtype, max_sequence_length)

    def latent_shape(self, pipe, n: int, height: int, width: int) -> tuple[int, ...]:
        """Shape of the noise each row's generator draws (before any packing)."""
        scale = pipe.vae_scale_factor
        return (n, getattr(pipe, self.denoiser).config.in_channels, height // scale, width // scale)

    def pack(self, latents):
        """The latents as the denoiser takes them (FLUX packs 2x2 patches into tokens)."""
        return latents

    def set_timesteps(self, pipe, scheduler, steps: int, shape: tuple[int, ...], device) -> None:
        """Set the scheduler's timesteps for latents of ``shape`` (as drawn, before packing)."""
        scheduler.set_timesteps(steps, device=device)

    def with_image(self, cond: Conditioning, pipe, height: int, width: int) -> Conditioning:
        """The conditioning with whatever depends on the image size (SDXL's time ids)."""
        return cond

    def predict(self, pipe, model_input, t, cond: Conditioning, guidance):
        """The denoiser's output for one step. ``guidance`` is per row; only embedded guidance uses it."""
        raise NotImplementedError

    def vae_latents(self, pipe, latents, height: int, width: int):
        """Final latents as the VAE decodes them (unpacked, unscaled, unshifted)."""
        vae = pipe.vae
        return latents.to(vae.dtype) / vae.config.scaling_factor
