"""Stable Diffusion 1.x/2.x: a UNet conditioned on one CLIP text encoder, noise prediction."""

from __future__ import annotations

from typing import Sequence

from .base import Conditioning, Family


def padded_ids(tokenizer, texts: Sequence[str], device, length: int | None = None):
    """Token ids padded to ``length`` (the tokenizer's own by default), as every pipeline pads them."""
    length = length or tokenizer.model_max_length
    return tokenizer(list(texts), padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids.to(device)


def cross_attention_projections(denoiser) -> list[str]:
    return sorted(name for name, _ in denoiser.named_modules() if name.endswith(("attn2.to_k", "attn2.to_v")))


class StableDiffusion(Family):
    name = "sd"
    pipeline_classes = ("StableDiffusionPipeline",)
    denoiser = "unet"

    def text_projections(self, denoiser) -> list[str]:
        return cross_attention_projections(denoiser)

    def encode(self, pipe, texts, device, dtype, max_sequence_length=None) -> Conditioning:
        ids = padded_ids(pipe.tokenizer, texts, device)
        encoder = pipe.text_encoder
        mask = (ids != pipe.tokenizer.pad_token_id).long() if getattr(encoder.config, "use_attention_mask", False) else None
        return Conditioning(encoder(ids, attention_mask=mask)[0].to(dtype))

    def predict(self, pipe, model_input, t, cond, guidance):
        return pipe.unet(model_input, t, encoder_hidden_states=cond.states).sample
