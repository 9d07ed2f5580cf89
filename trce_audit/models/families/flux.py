"""FLUX.1: an MMDiT (joint and single blocks) conditioned on a T5 sequence and CLIP's pooled embedding,
with rotary position ids, latents packed 2x2 into tokens, flow matching, and (dev) guidance as an
embedding rather than a second, unconditional pass."""

from __future__ import annotations

import numpy as np
import torch

from . import DECLARED_T5_LENGTH, FLUX_SAMPLE_SIZE
from .base import Conditioning, TextInput
from .sd import padded_ids
from .sd3 import FlowMatching, flow_shift, joint_projections

T5_LENGTH = 512  # the FLUX pipeline's default max_sequence_length (schnell's presets use 256)


def declared_t5_length(pipe) -> int | None:
    """The T5 length the loaded folder declares (pocket-flux's 48); None on every other pipeline, which keeps T5_LENGTH."""
    return getattr(pipe, DECLARED_T5_LENGTH, None)


def packed(latents, height: int, width: int):
    """(B, C, H, W) -> (B, H/2 * W/2, 4C): each 2x2 patch becomes one token."""
    b, c = latents.shape[:2]
    grid = latents.view(b, c, height // 2, 2, width // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return grid.reshape(b, (height // 2) * (width // 2), c * 4)


def unpacked(tokens, height: int, width: int):
    b, _, channels = tokens.shape
    grid = tokens.view(b, height // 2, width // 2, channels // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return grid.reshape(b, channels // 4, height, width)


def image_ids(height: int, width: int, device, dtype):
    """Rotary position ids of the packed tokens: (row, column) in the last two of three axes."""
    ids = torch.zeros(height, width, 3)
    ids[..., 1] += torch.arange(height)[:, None]
    ids[..., 2] += torch.arange(width)[None, :]
    return ids.reshape(height * width, 3).to(device=device, dtype=dtype)


class Flux(FlowMatching):
    name = "flux"
    pipeline_classes = ("FluxPipeline",)
    denoiser = "transformer"
    embedded_guidance = True

    def text_projections(self, denoiser) -> list[str]:
        return joint_projections(denoiser)

    def encode(self, pipe, texts, device, dtype, max_sequence_length=None) -> Conditioning:
        ids = padded_ids(pipe.tokenizer, texts, device, pipe.tokenizer_max_length)
        pooled = pipe.text_encoder(ids, output_hidden_states=False).pooler_output
        t5_ids = padded_ids(pipe.tokenizer_2, texts, device, max_sequence_length or declared_t5_length(pipe) or T5_LENGTH)
        states = pipe.text_encoder_2(t5_ids, output_hidden_states=False)[0]
        return Conditioning(states.to(dtype), pooled.to(dtype))

    def text_inputs(self, pipe, max_sequence_length=None) -> list[TextInput]:
        return [TextInput("clip_l", "tokenizer", pipe.tokenizer, pipe.text_encoder, int(pipe.tokenizer_max_length)),
                TextInput("t5", "tokenizer_2", pipe.tokenizer_2, pipe.text_encoder_2,
                          max_sequence_length or declared_t5_length(pipe) or T5_LENGTH)]

    def encode_ids(self, pipe, ids, dtype, max_sequence_length=None) -> Conditioning:
        pooled = pipe.text_encoder(ids["clip_l"], output_hidden_states=False).pooler_output  # CLIP: pooled only
        states = pipe.text_encoder_2(ids["t5"], output_hidden_states=False)[0]
        return Conditioning(states.to(dtype), pooled.to(dtype))

    def native_size(self, pipe) -> int:
        # FluxPipeline's own default_sample_size (FLUX_SAMPLE_SIZE), which load_pipeline sets for a folder
        # that declares its own size (pocket-flux: 8 latent rows, 32 px); a pipeline built in code has 128.
        return getattr(pipe, "default_sample_size", FLUX_SAMPLE_SIZE) * pipe.vae_scale_factor

    def latent_grid(self, pipe, height: int, width: int) -> tuple[int, int]:
        # Packing needs an even latent grid: the pipeline rounds each side down to a multiple of 2.
        scale = pipe.vae_scale_factor * 2
        return 2 * (height // scale), 2 * (width // scale)

    def latent_shape(self, pipe, n, height, width):
        return (n, pipe.transformer.config.in_channels // 4, *self.latent_grid(pipe, height, width))

    def pack(self, latents):
        return packed(latents, latents.shape[-2], latents.shape[-1])

    def unpack(self, tokens, rows, cols):
        return unpacked(tokens, rows, cols)

    def set_timesteps(self, pipe, scheduler, steps, shape, device) -> None:
        tokens = (shape[-2] // 2) * (shape[-1] // 2)  # the packed sequence the shift is computed on
        mu = flow_shift(tokens, scheduler.config, 1.15)
        if scheduler.config.get("use_flow_sigmas", False):
            scheduler.set_timesteps(steps, device=device, mu=mu)
        else:
            scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), device=device, mu=mu)
        scheduler.set_begin_index(0)

    def with_image(self, cond, pipe, height, width) -> Conditioning:
        rows, cols = self.latent_grid(pipe, height, width)
        return Conditioning(cond.states, cond.pooled, image_ids(rows // 2, cols // 2, cond.states.device, cond.states.dtype))

    def call_denoiser(self, denoiser, model_input, t, cond, guidance=None):
        n = model_input.shape[0]
        timestep = t.expand(n).to(model_input.dtype) / 1000
        embedded = guidance.float() if denoiser.config.guidance_embeds else None
        text_ids = torch.zeros(cond.states.shape[1], 3, device=cond.states.device, dtype=cond.states.dtype)
        return denoiser(
            hidden_states=model_input, timestep=timestep, guidance=embedded, pooled_projections=cond.pooled,
            encoder_hidden_states=cond.states, txt_ids=text_ids, img_ids=cond.extra, return_dict=False,
        )[0]

    def vae_latents(self, pipe, latents, height, width):
        vae = pipe.vae
        grid = unpacked(latents, *self.latent_grid(pipe, height, width))
        return (grid.to(vae.dtype) / vae.config.scaling_factor) + vae.config.shift_factor
