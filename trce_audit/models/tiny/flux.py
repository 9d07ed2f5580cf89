"""FLUX.1 shapes: `flux` (tiny, for tests) and `flux-schnell-random` (black-forest-labs/FLUX.1-schnell's).

The transformer reads T5's states as its text sequence and CLIP-L's pooled output as a vector; the pipeline
packs each 2×2 patch of latents into one token, so `in_channels` is 4 × the VAE's latent channels.
"""

from __future__ import annotations

from pathlib import Path

from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
from transformers import CLIPTextModel, T5EncoderModel

from . import parts
from .tokenizers import clip_tokenizer, t5_tokenizer

SHAPES = ("flux", "flux-schnell-random")

# FLUX.1-schnell transformer/config.json.
TRANSFORMER_SCHNELL = dict(
    patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
    num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=False,
    axes_dims_rope=(16, 56, 56),
)
# The tiny one carries FLUX.1-dev's guidance embedding, which schnell lacks, so tests reach that input too.
# RoPE's axes must sum to the head width (16).
TRANSFORMER_TINY = dict(
    TRANSFORMER_SCHNELL, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
    num_attention_heads=2, joint_attention_dim=parts.TINY_T5, pooled_projection_dim=parts.TINY_CLIP_L,
    guidance_embeds=True, axes_dims_rope=(4, 4, 8),
)
# FLUX.1-schnell vae/config.json (FLUX.1-dev's is the same): 16 latent channels, no quant convs.
VAE_SCHNELL = dict(
    in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32,
    sample_size=1024, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False,
)
# Halves the image size, so 32×32 images give 16×16 latents and 8×8 packed tokens.
VAE_TINY = dict(
    VAE_SCHNELL, latent_channels=4, block_out_channels=(32, 64), layers_per_block=1,
    down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, sample_size=32,
)
# FLUX.1-schnell scheduler/scheduler_config.json: no shift at all (shift 1, no dynamic shifting), as in
# black-forest-labs/flux's sampling, which skips the shift for flux-schnell; base/max shift are unused.
SCHEDULER_SCHNELL = dict(
    num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False, base_shift=0.5, max_shift=1.15,
    base_image_seq_len=256, max_image_seq_len=4096,
)
# FLUX.1-dev scheduler/scheduler_config.json: the shift follows the image's token count, from mu = 0.5 at
# 256 tokens to 1.15 at 4096 (extrapolated below 256 for tiny images).
SCHEDULER_DEV = dict(SCHEDULER_SCHNELL, shift=3.0, use_dynamic_shifting=True)


def build(shape: str, seed: int, tokenizer_dir: Path | None = None, dtype=None, device=None):
    """A FluxPipeline with random weights; fp32 on CPU unless `dtype` and `device` say otherwise."""
    full = shape == "flux-schnell-random"
    tokenizer = clip_tokenizer(tokenizer_dir)
    tokenizer_2 = t5_tokenizer()
    transformer = TRANSFORMER_SCHNELL if full else TRANSFORMER_TINY

    def part(name, make):
        return parts.component(seed, name, make, dtype, device)

    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**(SCHEDULER_SCHNELL if full else SCHEDULER_DEV)),
        vae=part("vae", lambda: AutoencoderKL(**(VAE_SCHNELL if full else VAE_TINY))),
        text_encoder=part("text_encoder", lambda: CLIPTextModel(parts.clip_l(tokenizer, full))),
        tokenizer=tokenizer,
        text_encoder_2=part("text_encoder_2", lambda: T5EncoderModel(parts.t5(tokenizer_2, full))),
        tokenizer_2=tokenizer_2,
        transformer=part("transformer", lambda: FluxTransformer2DModel(**transformer)),
    )
