"""SDXL shapes: `sdxl` (tiny, for tests) and `sdxl-random` (stabilityai/stable-diffusion-xl-base-1.0's).

The UNet reads both CLIPs' penultimate hidden states side by side (`cross_attention_dim` = CLIP-L + bigG
widths) and an added embedding of bigG's pooled output plus six size/crop numbers, each embedded at
`addition_time_embed_dim` (`projection_class_embeddings_input_dim` = bigG projection + 6 × that).
"""

from __future__ import annotations

from pathlib import Path

from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTextModelWithProjection

from . import parts
from .tokenizers import OPENCLIP_PAD, clip_tokenizer

SHAPES = ("sdxl", "sdxl-random")

# stable-diffusion-xl-base-1.0 unet/config.json (fields left at diffusers' defaults are not repeated).
UNET_BASE = dict(
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(5, 10, 20),
    transformer_layers_per_block=(1, 2, 10), cross_attention_dim=2048, use_linear_projection=True,
    addition_embed_type="text_time", addition_embed_type_num_heads=64, addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816, norm_num_groups=32,
)
# The same block layout (no attention at the highest resolution) at 32/64 channels, 16×16 latents.
UNET_TINY = dict(
    UNET_BASE, sample_size=16, layers_per_block=1, block_out_channels=(32, 64),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=(2, 4), transformer_layers_per_block=(1, 2),
    cross_attention_dim=parts.TINY_CLIP_L + parts.TINY_CLIP_G, addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=parts.TINY_CLIP_G + 6 * 8,
)
# stable-diffusion-xl-base-1.0 vae/config.json; the tiny VAE halves the image size, as SD's `tiny` does.
VAE_BASE = dict(
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32,
    sample_size=1024, scaling_factor=0.13025,
)
VAE_TINY = dict(
    VAE_BASE, block_out_channels=(32, 64), layers_per_block=1, down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2, sample_size=32,
)
# stable-diffusion-xl-base-1.0 scheduler/scheduler_config.json.
SCHEDULER = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    prediction_type="epsilon", interpolation_type="linear", use_karras_sigmas=False, steps_offset=1,
    timestep_spacing="leading",
)


def build(shape: str, seed: int, tokenizer_dir: Path | None = None, dtype=None, device=None):
    """A StableDiffusionXLPipeline with random weights; fp32 on CPU unless `dtype` and `device` say otherwise."""
    full = shape == "sdxl-random"
    tokenizer = clip_tokenizer(tokenizer_dir)
    tokenizer_2 = clip_tokenizer(tokenizer_dir, pad_token=OPENCLIP_PAD)

    def part(name, make):
        return parts.component(seed, name, make, dtype, device)

    return StableDiffusionXLPipeline(
        vae=part("vae", lambda: AutoencoderKL(**(VAE_BASE if full else VAE_TINY))),
        text_encoder=part("text_encoder", lambda: CLIPTextModel(parts.clip_l(tokenizer, full))),
        text_encoder_2=part("text_encoder_2", lambda: CLIPTextModelWithProjection(parts.clip_g(tokenizer_2, full))),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=part("unet", lambda: UNet2DConditionModel(**(UNET_BASE if full else UNET_TINY))),
        scheduler=EulerDiscreteScheduler(**SCHEDULER),
        # The base model's own setting (its model_index.json): an empty negative prompt is zeros, not encoded.
        force_zeros_for_empty_prompt=True,
        # Where invisible-watermark is installed the pipeline would otherwise mark every image, so the same
        # build would render differently on two machines.
        add_watermarker=False,
    )
