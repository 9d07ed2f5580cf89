"""What the SDXL, SD3 and FLUX shapes share: seeding per component, and their text encoders' shapes.

Each text encoder plays one role in the real models: CLIP ViT-L/14 (`clip_l`), OpenCLIP ViT-bigG/14
(`clip_g`) and the encoder of T5 v1.1 XXL (`t5`). Full-size configs are those roles' published ones; tiny
ones keep the real models' proportions that code could trip on: CLIP-L narrower than bigG, both CLIPs
together narrower than T5 (SD3 zero-pads the CLIP states up to T5's width), T5's gated-GELU feed-forward.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Callable

import torch
from transformers import CLIPTextConfig, T5Config

# Widths of the tiny roles; the transformers and UNets that read them are sized from these.
TINY_CLIP_L, TINY_CLIP_G, TINY_T5 = 32, 48, 96


def component(seed: int, name: str, make: Callable[[], torch.nn.Module], dtype=None, device=None):
    """Build one component from a seed of its own, so its weights do not depend on what was built before it.

    The weights are drawn on `device` (CPU by default), so a build there holds no CPU copy; each component is
    cast before the next is drawn, which keeps the peak near one component in fp32. In eval mode: T5 and
    CLIP configs carry dropout, which would make every call's output random.
    """
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    torch.manual_seed(int.from_bytes(digest[:8], "big"))
    with torch.device(device) if device is not None else contextlib.nullcontext():
        module = make()
    if dtype is not None:
        module = module.to(dtype)
    return module.eval()


def _clip_ids(tokenizer) -> dict:
    return dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id, max_position_embeddings=77)


def clip_l(tokenizer, full: bool) -> CLIPTextConfig:
    """openai/clip-vit-large-patch14's text tower (SDXL, SD3 and FLUX.1 `text_encoder`)."""
    if full:
        shape = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                     num_attention_heads=12, projection_dim=768, hidden_act="quick_gelu")
    else:
        shape = dict(vocab_size=len(tokenizer), hidden_size=TINY_CLIP_L, intermediate_size=37,
                     num_hidden_layers=2, num_attention_heads=4, projection_dim=TINY_CLIP_L)
    return CLIPTextConfig(**shape, **_clip_ids(tokenizer))


def clip_g(tokenizer, full: bool) -> CLIPTextConfig:
    """OpenCLIP ViT-bigG/14's text tower (SDXL and SD3 `text_encoder_2`)."""
    if full:
        shape = dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                     num_attention_heads=20, projection_dim=1280, hidden_act="gelu")
    else:
        shape = dict(vocab_size=len(tokenizer), hidden_size=TINY_CLIP_G, intermediate_size=64,
                     num_hidden_layers=2, num_attention_heads=4, projection_dim=TINY_CLIP_G, hidden_act="gelu")
    return CLIPTextConfig(**shape, **_clip_ids(tokenizer))


def t5(tokenizer, full: bool) -> T5Config:
    """google/t5-v1_1-xxl's encoder (SD3 `text_encoder_3`, FLUX.1 `text_encoder_2`)."""
    if full:
        shape = dict(vocab_size=32128, d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24,
                     relative_attention_num_buckets=32, relative_attention_max_distance=128)
    else:
        shape = dict(vocab_size=len(tokenizer), d_model=TINY_T5, d_ff=128, d_kv=24, num_heads=4, num_layers=2,
                     relative_attention_num_buckets=8, relative_attention_max_distance=32)
    return T5Config(**shape, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                    pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                    decoder_start_token_id=tokenizer.pad_token_id)
