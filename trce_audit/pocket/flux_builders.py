"""pocket-flux's modules, built from ``flux_models.py``'s configs and the pocket SD model's shipped parts,
and the FluxPipeline folder they are saved as (fp16, as the pocket SD model stores its weights)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel

from ..hashing import hash_tree, sha256_file
from .flux_models import SCHEDULER_CONFIG, T5_CONFIG, T5_LENGTH, TRANSFORMER_CONFIG
from .models import MODEL_DIR, TEXT_CONFIG, VAE_CONFIG

STORED_DTYPE = torch.float16
# AdaLN modulations and the output projection: zeroed at initialisation, so that every block starts as the
# identity and the model predicts zero (adaLN-Zero, Peebles & Xie 2023, DiT). diffusers' FLUX leaves them
# random; pretrained FLUX never starts from scratch.
ZERO_INIT = ("norm1.linear", "norm1_context.linear", "norm.linear", "norm_out.linear")


def build_transformer(zero_init: bool = True) -> FluxTransformer2DModel:
    """The transformer to train (``zero_init``), or with diffusers' random initialisation throughout."""
    model = FluxTransformer2DModel(**TRANSFORMER_CONFIG)
    for name, module in model.named_modules():
        if zero_init and (name.endswith(ZERO_INIT) or name == "proj_out"):
            torch.nn.init.zeros_(module.weight)
            torch.nn.init.zeros_(module.bias)
    return model


def build_t5() -> T5EncoderModel:
    return T5EncoderModel(T5Config(**T5_CONFIG))


def build_scheduler() -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG)


def shipped_parts(folder: Path = MODEL_DIR) -> dict:
    """The pocket SD model's tokenizer (twice: T5's with its own length), CLIP text encoder and VAE, in fp32."""
    return dict(
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        tokenizer_2=CLIPTokenizer.from_pretrained(folder / "tokenizer", model_max_length=T5_LENGTH),
        text_encoder=CLIPTextModel.from_pretrained(folder / "text_encoder", torch_dtype=torch.float32).eval(),
        vae=AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=torch.float32).eval(),
    )


def assemble(transformer, text_encoder_2, parts: dict) -> FluxPipeline:
    pipe = FluxPipeline(scheduler=build_scheduler(), transformer=transformer, text_encoder_2=text_encoder_2, **parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def random_pipeline(seed: int = 0, parts: dict | None = None) -> FluxPipeline:
    """pocket-flux with a random transformer (no zero init, so it draws something) and T5, seeded, on the
    shipped CLIP encoder and VAE; a VAE without FLUX's shift_factor (SD's config) gets shift 0."""
    parts = parts or shipped_parts()
    if parts["vae"].config.get("shift_factor") is None:
        parts["vae"].register_to_config(shift_factor=0.0)
    with torch.random.fork_rng():  # the caller's random stream stays where it was
        torch.manual_seed(seed)
        return assemble(build_transformer(zero_init=False), build_t5(), parts)


def save_flux_pipeline(pipe: FluxPipeline, out: Path, extra: dict) -> Path:
    """Write the folder in STORED_DTYPE (loads in fp32 with ``torch_dtype=torch.float32``), the pocket world
    marker, and ``pocket_training.json``: ``extra`` plus the sha256 of every weights file and of them all."""
    out = Path(out)
    pipe.to(STORED_DTYPE)
    try:
        pipe.save_pretrained(out, safe_serialization=True)
    finally:
        pipe.to(torch.float32)
    # transformers 5 writes a tokenizer as one tokenizer.json of 3.6 MB; the shipped vocab.json and
    # merges.txt (1.5 MB) load as the same tokenizer. T5's copy records the length it was trained at.
    for name in ("tokenizer", "tokenizer_2"):
        shutil.rmtree(out / name)
        shutil.copytree(MODEL_DIR / "tokenizer", out / name)
    config = json.loads((out / "tokenizer_2" / "tokenizer_config.json").read_text())
    (out / "tokenizer_2" / "tokenizer_config.json").write_text(json.dumps(dict(config, model_max_length=T5_LENGTH), indent=2))
    # models.folder.WORLD_MARKER's name, spelled out: pocket sits below models and may not import it
    (out / "trce_audit.json").write_text(json.dumps({"world": "pocket"}))
    files = {p.relative_to(out).as_posix(): sha256_file(p) for p in sorted(out.rglob("*.safetensors"))}
    record = dict(extra, weights_sha256=hash_tree(out, (".safetensors",)), weights_files=files)
    (out / "pocket_training.json").write_text(json.dumps(record, indent=2))
    return out


def stored_bytes() -> dict[str, int]:
    """What the folder takes on disk, per component, from parameter counts (built on the meta device) and
    STORED_DTYPE, plus both tokenizers' files; safetensors headers and configs add a few kB."""
    width = torch.finfo(STORED_DTYPE).bits // 8
    with torch.device("meta"):
        modules = dict(transformer=build_transformer(), text_encoder_2=build_t5(),
                       text_encoder=CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG)), vae=AutoencoderKL(**VAE_CONFIG))
    sizes = {name: width * sum(p.numel() for p in m.parameters()) for name, m in modules.items()}
    tokenizer = sum(p.stat().st_size for p in (MODEL_DIR / "tokenizer").iterdir())
    return dict(sizes, tokenizer=tokenizer, tokenizer_2=tokenizer)
