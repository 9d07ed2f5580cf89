"""What a model family is: how its pipeline encodes text, calls its denoiser, schedules and decodes.

A family object holds no weights; every method takes the loaded diffusers pipeline. The batched
sampler (generation/engine.py) drives the loop and asks the family for each family-specific step, so
one loop serves every family and per-row seeds and guidance work the same way on all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch

from ...errors import ConfigError


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
        """``self``'s rows, then ``other``'s: the caller's order is the one classifier-free guidance splits back."""
        return Conditioning(*(None if a is None else torch.cat([a, b]) for a, b in zip(self.fields(), other.fields())))

    def fields(self) -> tuple:
        return (self.states, self.pooled, self.extra)

    def rows(self, index) -> "Conditioning":
        """The rows at ``index`` (a 1-D integer tensor or list) of every field, in that order."""
        return Conditioning(*(None if x is None else x[torch.as_tensor(index, device=x.device)] for x in self.fields()))


@dataclass(frozen=True)
class TextInput:
    """One text encoder of a family as its ``encode`` tokenises for it."""

    key: str  # its name in a learned-embedding file: "clip_l", "clip_g" or "t5" (diffusers' pivotal-tuning keys)
    component: str  # the pipeline attribute of its tokenizer ("tokenizer_2"), for messages
    tokenizer: Any
    encoder: Any
    length: int  # the padded length the family's pipeline tokenises prompts to


class Family:
    """One architecture of text-to-image pipeline. Subclasses fill in what differs."""

    name: ClassVar[str]
    pipeline_classes: ClassVar[tuple[str, ...]]  # model_index.json `_class_name`s that belong to the family
    denoiser: ClassVar[str]  # the pipeline attribute of the denoiser: "unet" or "transformer"
    # FLUX.1-dev conditions on guidance through an embedding: no unconditional pass.
    embedded_guidance: ClassVar[bool] = False
    # Rectified flow (SD3, FLUX): sampled on the model's own flow-matching scheduler, which has no DDIM form.
    flow_matching: ClassVar[bool] = False

    def text_projections(self, denoiser) -> list[str]:
        """Names of the denoiser's modules that map text into the image stream (what erasers edit)."""
        raise NotImplementedError

    def encode(self, pipe, texts: Sequence[str], device, dtype, max_sequence_length: int | None) -> Conditioning:
        raise NotImplementedError

    def text_inputs(self, pipe, max_sequence_length: int | None = None) -> list[TextInput]:
        """The text encoders ``encode`` runs, in its order, with how it tokenises for each (the
        families whose learned tokens travel one vector per encoder; SD's travel as one vector)."""
        raise ConfigError(f"the {self.name} family does not list its text encoders (text_inputs)")

    def encode_ids(self, pipe, ids: dict[str, Any], dtype, max_sequence_length: int | None = None) -> Conditioning:
        """``encode`` from token ids already laid out for each of ``text_inputs`` (by key): what
        ``encode`` returns when ``ids`` are its own tokenisation of the texts."""
        raise ConfigError(f"the {self.name} family cannot encode from token ids (encode_ids)")

    def unconditional(self, pipe, device, dtype, max_sequence_length: int | None) -> Conditioning:
        """The one-row conditioning of the empty prompt, as the family's pipeline builds it."""
        return self.encode(pipe, [""], device, dtype, max_sequence_length)

    def native_size(self, pipe) -> int:
        """The image side the family's pipeline renders when given none."""
        sample = getattr(pipe, self.denoiser).config.sample_size
        return int(sample[0] if isinstance(sample, (list, tuple)) else sample) * pipe.vae_scale_factor

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
        return self.call_denoiser(getattr(pipe, self.denoiser), model_input, t, cond, guidance)

    def call_denoiser(self, denoiser, model_input, t, cond: Conditioning, guidance=None):
        """``predict`` on a given denoiser module (an eraser's frozen original or trained copy)."""
        raise NotImplementedError

    def unpack(self, tokens, rows: int, cols: int):
        """The inverse of ``pack`` for a latent grid of ``rows`` x ``cols``."""
        return tokens

    def vae_latents(self, pipe, latents, height: int, width: int):
        """Final latents as the VAE decodes them (unpacked, unscaled, unshifted)."""
        vae = pipe.vae
        return latents.to(vae.dtype) / vae.config.scaling_factor

    # Training, as the white-box attacks fine-tune and invert: the forward process at an integer
    # training timestep t in [0, train_timesteps), larger t noisier, and what the denoiser learns to
    # predict there. The base is DDPM (the UNet families); flow-matching families override all three.
    def train_timesteps(self, pipe) -> int:
        return int(pipe.scheduler.config.num_train_timesteps)

    def encoded_latents(self, pipe, sample):
        """A VAE posterior sample in the denoiser's latent space (the inverse of ``vae_latents``)."""
        return sample * pipe.vae.config.scaling_factor

    def noised(self, pipe, x0, noise, t):
        """x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps on the model's training schedule (scheduler-independent)."""
        alphas = pipe.scheduler.alphas_cumprod.to(x0.device, x0.dtype)[t].view(-1, 1, 1, 1)
        return alphas.sqrt() * x0 + (1.0 - alphas).sqrt() * noise

    def training_target(self, pipe, x0, noise, t):
        """What the denoiser is trained to predict at x_t: the noise, or v for a v-prediction model."""
        kind = pipe.scheduler.config.get("prediction_type", "epsilon")
        if kind == "epsilon":
            return noise
        if kind == "v_prediction":
            alphas = pipe.scheduler.alphas_cumprod.to(x0.device, x0.dtype)[t].view(-1, 1, 1, 1)
            return alphas.sqrt() * noise - (1.0 - alphas).sqrt() * x0
        raise ConfigError(f"unknown prediction_type {kind!r} in the model's scheduler config")

    def training_prediction(self, pipe, x_t, t, cond: Conditioning, guidance=None):
        """The denoiser's output for unpacked latents ``x_t`` at training timesteps ``t``, conditioned
        on ``cond`` (one row per latent; image-size terms are added here), unpacked like ``x_t``."""
        if guidance is None:
            guidance = torch.ones(x_t.shape[0], device=x_t.device)
        return self.grid_prediction(pipe, getattr(pipe, self.denoiser), x_t, self.model_timestep(pipe, t), cond, guidance)

    def grid_prediction(self, pipe, denoiser, x, t, cond: Conditioning, guidance=None):
        """``call_denoiser`` on unpacked latents ``x`` at the denoiser's own timesteps ``t``, with the
        image-size terms of x's grid added here (FLUX's position ids cannot ride in a conditioning that is
        stacked or indexed by row); unpacked like ``x``. ``denoiser`` may be a frozen or trained copy."""
        rows, cols = x.shape[-2:]
        scale = pipe.vae_scale_factor
        cond = self.with_image(cond, pipe, rows * scale, cols * scale)
        return self.unpack(self.call_denoiser(denoiser, self.pack(x), t, cond, guidance), rows, cols)

    def model_timestep(self, pipe, t):
        """The denoiser's timestep input for training timestep ``t``."""
        return t
