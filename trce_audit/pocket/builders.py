"""The pocket model's modules, built from the configs in ``models.py``, and the diffusers folder they
are saved as (a StableDiffusionPipeline layout without safety checker or feature extractor)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import diffusers
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from .models import SCHEDULER_CONFIG, TEXT_CONFIG, UNET_CONFIG, VAE_CONFIG


def build_text_encoder():
    return CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))


def build_unet():
    return UNet2DConditionModel(**UNET_CONFIG)


def build_vae():
    return AutoencoderKL(**VAE_CONFIG)


def build_scheduler():
    return DDIMScheduler(**SCHEDULER_CONFIG)


def n_params(m) -> int:
    return sum(p.numel() for p in m.parameters())


def save_pipeline(out_dir, text_encoder, tokenizer_dir, unet, vae, scheduler=None,
                  text_dtype=torch.float16, unet_dtype=torch.float32, vae_dtype=torch.float32, extra: dict | None = None) -> Path:
    """Write a diffusers StableDiffusionPipeline folder (no safety checker / feature extractor)."""
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
