"""Stable Diffusion 1.x/2.x: a UNet conditioned on one CLIP text encoder, noise prediction."""

from __future__ import annotations

from typing import Sequence

import torch

from .base import Conditioning, Family


def padded_ids(tokenizer, texts: Sequence[str], device, length: int | None = None):
    """Token ids padded to ``length`` (the tokenizer's own by default), as every pipeline pads them."""
    length = length or tokenizer.model_max_length
    return tokenizer(list(texts), padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids.to(device)


def attention_mask(encoder, tokenizer, ids):
    """The mask a text encoder configured to use one (SD 2.x some) reads; None for CLIP as SD 1.x has it."""
    return (ids != tokenizer.pad_token_id).long() if getattr(encoder.config, "use_attention_mask", False) else None


def cross_attention_projections(unet, which: tuple[str, ...] = ("to_k", "to_v")) -> list[tuple[str, torch.nn.Linear]]:
    """Every cross-attention key/value projection of a UNet (the layers that read the text embedding)."""
    found = []
    for name, module in unet.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if ".attn2." in f".{name}" and leaf in which and isinstance(module, torch.nn.Linear):
            found.append((name, module))
    return found


class StableDiffusion(Family):
    name = "sd"
    pipeline_classes = ("StableDiffusionPipeline",)
    denoiser = "unet"

    def text_projections(self, denoiser) -> list[str]:
        return [name for name, _ in cross_attention_projections(denoiser)]

    def encode(self, pipe, texts, device, dtype, max_sequence_length=None) -> Conditioning:
        ids = padded_ids(pipe.tokenizer, texts, device)
        encoder = pipe.text_encoder
        return Conditioning(encoder(ids, attention_mask=attention_mask(encoder, pipe.tokenizer, ids))[0].to(dtype))

    def call_denoiser(self, denoiser, model_input, t, cond, guidance=None):
        return denoiser(model_input, t, encoder_hidden_states=cond.states).sample
