"""Architectures of the pocket model (Stable Diffusion's, scaled down) and the detector-free
helpers used to build, save and load the diffusers folder."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .tokenizer import VOCAB_SIZE, MAX_LENGTH

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MODEL_DIR = WEIGHTS_DIR / "pocket-sd"
LATENT_CHANNELS = 4
LATENT_SIZE = 8
TEXT_HIDDEN = 96

TEXT_CONFIG = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=TEXT_HIDDEN,
    intermediate_size=4 * TEXT_HIDDEN,
    num_hidden_layers=4,
    num_attention_heads=4,
    max_position_embeddings=MAX_LENGTH,
    hidden_act="quick_gelu",
    projection_dim=TEXT_HIDDEN,
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=49407,
)

UNET_CONFIG = dict(
    sample_size=LATENT_SIZE,
    in_channels=LATENT_CHANNELS,
    out_channels=LATENT_CHANNELS,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(32, 64, 128),
    layers_per_block=1,
    cross_attention_dim=TEXT_HIDDEN,
    attention_head_dim=4,  # diffusers' legacy name: number of heads
    norm_num_groups=16,
)

VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(16, 32, 64),
    layers_per_block=1,
    latent_channels=LATENT_CHANNELS,
    norm_num_groups=16,
    sample_size=32,
)

SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    prediction_type="epsilon",
)


def build_text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))


def build_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**UNET_CONFIG)


def build_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(**VAE_CONFIG)


def build_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(**SCHEDULER_CONFIG)


def n_params(m) -> int:
    return sum(p.numel() for p in m.parameters())


def save_pipeline(out_dir, text_encoder, tokenizer_dir, unet, vae, scheduler=None,
                  text_dtype=torch.float16, unet_dtype=torch.float32, vae_dtype=torch.float32, extra: dict | None = None) -> Path:
    """Write a diffusers StableDiffusionPipeline folder (no safety checker / feature extractor)."""
    import shutil

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scheduler = scheduler or build_scheduler()
    text_encoder.to(text_dtype).save_pretrained(out / "text_encoder", safe_serialization=True)
    text_encoder.to(torch.float32)
    unet.to(unet_dtype).save_pretrained(out / "unet", safe_serialization=True)
    unet.to(torch.float32)
    vae.to(vae_dtype).save_pretrained(out / "vae", safe_serialization=True)
    vae.to(torch.float32)
    scheduler.save_pretrained(out / "scheduler")
    tdir = out / "tokenizer"
    if Path(tokenizer_dir).resolve() != tdir.resolve():
        shutil.copytree(tokenizer_dir, tdir, dirs_exist_ok=True)
    import diffusers

    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", type(scheduler).__name__],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (out / "model_index.json").write_text(json.dumps(index, indent=2))
    if extra is not None:
        (out / "pocket_training.json").write_text(json.dumps(extra, indent=2))
    return out
