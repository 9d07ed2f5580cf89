"""SDXL: a UNet conditioned on two CLIP encoders (penultimate states concatenated), the second one's
pooled embedding and the image-size "time ids"; noise prediction."""

from __future__ import annotations

import torch

from .base import Conditioning, Family, TextInput
from .sd import cross_attention_projections, padded_ids


class StableDiffusionXL(Family):
    name = "sdxl"
    pipeline_classes = ("StableDiffusionXLPipeline",)
    denoiser = "unet"

    def text_projections(self, denoiser) -> list[str]:
        return [name for name, _ in cross_attention_projections(denoiser)]

    def encode(self, pipe, texts, device, dtype, max_sequence_length=None) -> Conditioning:
        states, pooled = [], None
        for tokenizer, encoder in ((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)):
            if encoder is None:
                continue
            out = encoder(padded_ids(tokenizer, texts, device), output_hidden_states=True)
            # The pipeline keeps the first 2-D output it meets: the projected pooled embedding of the
            # encoder with a projection (text_encoder_2).
            if pooled is None and out[0].ndim == 2:
                pooled = out[0]
            states.append(out.hidden_states[-2])
        return Conditioning(torch.cat(states, dim=-1).to(dtype), pooled.to(dtype))

    def text_inputs(self, pipe, max_sequence_length=None) -> list[TextInput]:
        pairs = (("clip_l", "tokenizer", pipe.tokenizer, pipe.text_encoder), ("clip_g", "tokenizer_2", pipe.tokenizer_2, pipe.text_encoder_2))
        return [TextInput(key, name, tok, enc, int(tok.model_max_length)) for key, name, tok, enc in pairs if enc is not None]

    def encode_ids(self, pipe, ids, dtype, max_sequence_length=None) -> Conditioning:
        states, pooled = [], None
        for text in self.text_inputs(pipe):
            out = text.encoder(ids[text.key], output_hidden_states=True)
            if pooled is None and out[0].ndim == 2:  # as in encode
                pooled = out[0]
            states.append(out.hidden_states[-2])
        return Conditioning(torch.cat(states, dim=-1).to(dtype), pooled.to(dtype))

    def unconditional(self, pipe, device, dtype, max_sequence_length=None) -> Conditioning:
        empty = self.encode(pipe, [""], device, dtype)
        # SDXL base zeroes the negative conditioning when no negative prompt is given.
        if pipe.config.get("force_zeros_for_empty_prompt", True):
            return Conditioning(torch.zeros_like(empty.states), torch.zeros_like(empty.pooled))
        return empty

    def with_image(self, cond, pipe, height, width) -> Conditioning:
        # original size, crop top-left (0, 0), target size: the pipeline's defaults for a plain render.
        ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=cond.states.dtype, device=cond.states.device)
        return Conditioning(cond.states, cond.pooled, ids.expand(cond.states.shape[0], -1))

    def call_denoiser(self, denoiser, model_input, t, cond, guidance=None):
        added = {"text_embeds": cond.pooled, "time_ids": cond.extra}
        return denoiser(model_input, t, encoder_hidden_states=cond.states, added_cond_kwargs=added).sample

    def encoded_latents(self, pipe, sample):
        mean, std = self.latent_statistics(pipe, sample)
        if mean is None:
            return super().encoded_latents(pipe, sample)
        return (sample - mean) * pipe.vae.config.scaling_factor / std

    def latent_statistics(self, pipe, like):
        """The VAE's per-channel latents_mean/std (SDXL's refiner VAEs carry them), or (None, None)."""
        mean, std = getattr(pipe.vae.config, "latents_mean", None), getattr(pipe.vae.config, "latents_std", None)
        if mean is None or std is None:
            return None, None
        as_tensor = lambda v: torch.tensor(v).view(1, -1, 1, 1).to(like.device, like.dtype)  # noqa: E731
        return as_tensor(mean), as_tensor(std)

    def vae_latents(self, pipe, latents, height, width):
        mean, std = self.latent_statistics(pipe, latents)
        if mean is None:
            return super().vae_latents(pipe, latents, height, width)
        return (latents * std / pipe.vae.config.scaling_factor + mean).to(pipe.vae.dtype)
