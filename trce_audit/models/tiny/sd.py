"""Stable Diffusion 1.x shapes: `tiny` for tests and `sd14` (CompVis/stable-diffusion-v1-4's shapes) for timing.

One seed, then the UNet, VAE and text encoder in this order: that order fixes the weights, and the tests
and the costs in docs/ were measured on exactly these, so it must not change.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from .tokenizers import write_char_tokenizer

SHAPES = ("tiny", "sd14")


def build(shape: str, seed: int, tokenizer_dir: Path | None = None, scheduler: str = "ddim"):
    """A StableDiffusionPipeline with random weights of the given shape, on CPU in fp32."""
    torch.manual_seed(seed)
    if tokenizer_dir is None:
        tokenizer_dir = write_char_tokenizer(Path(tempfile.mkdtemp(prefix="trce-tok-")))
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
    if shape == "tiny":
        text_config = CLIPTextConfig(
            vocab_size=max(len(tokenizer), 1000), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )
        unet = UNet2DConditionModel(
            sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=8,
            norm_num_groups=32,
        )
        vae = AutoencoderKL(
            block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
            norm_num_groups=32, sample_size=32,
        )
    else:  # the shapes of CompVis/stable-diffusion-v1-4
        text_config = CLIPTextConfig(
            vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
            max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, projection_dim=768,
        )
        unet = UNet2DConditionModel(
            sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280),
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=768,
            attention_head_dim=8,
        )
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512), in_channels=3, out_channels=3, latent_channels=4,
            layers_per_block=2, down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4, sample_size=512,
        )
    text_encoder = CLIPTextModel(text_config)
    betas = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)
    if scheduler == "pndm":
        sched = PNDMScheduler(skip_prk_steps=True, steps_offset=1, **betas)
    else:
        sched = DDIMScheduler(clip_sample=False, set_alpha_to_one=False, steps_offset=1, **betas)
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=sched,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
