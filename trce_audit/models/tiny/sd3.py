"""The SD3 shape `sd3`: a tiny MMDiT with two CLIPs and T5, flow matching, for tests.

Sized after stabilityai/stable-diffusion-3-medium-diffusers: the transformer reads the CLIP states (side by
side, zero-padded to T5's width) followed by T5's, and both CLIPs' pooled projections concatenated.
"""

from __future__ import annotations

from pathlib import Path

from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
from transformers import CLIPTextModelWithProjection, T5EncoderModel

from . import parts
from .tokenizers import OPENCLIP_PAD, clip_tokenizer, t5_tokenizer

SHAPES = ("sd3",)

# SD3-medium patchifies 2×2 inside the transformer (patch_size 2), so the tiny one does too: 16×16 latents
# become 64 tokens. Two joint blocks, since the last one is built differently (`context_pre_only`: its text
# stream is not carried on). pos_embed_max_size 32 covers latents up to 64×64.
TRANSFORMER = dict(
    sample_size=16, patch_size=2, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=8,
    num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=parts.TINY_T5,
    pooled_projection_dim=parts.TINY_CLIP_L + parts.TINY_CLIP_G, pos_embed_max_size=32,
)
# SD3-medium's VAE has no quant convs; its scaling and shift factors are vae/config.json's.
VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64), layers_per_block=1,
    down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=32,
    sample_size=32, scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False, use_post_quant_conv=False,
)
# SD3-medium scheduler/scheduler_config.json: a fixed shift of 3.
SCHEDULER = dict(num_train_timesteps=1000, shift=3.0)


def build(shape: str, seed: int, tokenizer_dir: Path | None = None, dtype=None, device=None):
    """A StableDiffusion3Pipeline with random weights; fp32 on CPU unless `dtype` and `device` say otherwise."""
    tokenizer = clip_tokenizer(tokenizer_dir)
    tokenizer_2 = clip_tokenizer(tokenizer_dir, pad_token=OPENCLIP_PAD)
    tokenizer_3 = t5_tokenizer()

    def part(name, make):
        return parts.component(seed, name, make, dtype, device)

    return StableDiffusion3Pipeline(
        transformer=part("transformer", lambda: SD3Transformer2DModel(**TRANSFORMER)),
        scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER),
        vae=part("vae", lambda: AutoencoderKL(**VAE)),
        text_encoder=part("text_encoder", lambda: CLIPTextModelWithProjection(parts.clip_l(tokenizer, False))),
        tokenizer=tokenizer,
        text_encoder_2=part("text_encoder_2", lambda: CLIPTextModelWithProjection(parts.clip_g(tokenizer_2, False))),
        tokenizer_2=tokenizer_2,
        text_encoder_3=part("text_encoder_3", lambda: T5EncoderModel(parts.t5(tokenizer_3, False))),
        tokenizer_3=tokenizer_3,
    )
