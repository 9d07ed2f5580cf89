"""LoRA files as diffusers writes them (``save_lora_weights``): published erased models ship this way
(EraseAnything's FLUX nudity LoRA), and ``--model BASE+lora:PATH`` audits one folded into its base.

A file is safetensors with keys ``<component>.<layer>.lora_A.weight`` / ``.lora_B.weight`` (component
``unet``, ``transformer`` or ``text_encoder``; a key without one is the denoiser's, as peft saves it) and,
optionally, diffusers' ``lora_adapter_metadata`` header entry, whose ``<component>.lora_alpha`` sets the
scale ``alpha / rank`` (1 without it, peft's default of alpha = rank). Other layouts (kohya's
``lora_unet_…`` keys, ``.alpha`` tensors) are refused in one line: their layer names need a conversion
table that is not guessed here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..errors import ModelError
from ..hashing import sha256_file
from . import lora

COMPONENTS = ("unet", "transformer", "text_encoder")
METADATA_KEY = "lora_adapter_metadata"  # diffusers.loaders.lora_base.LORA_ADAPTER_METADATA_KEY


def read_lora_file(path: Path, denoiser: str) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, float]]:
    """({component: peft-style state}, {component: alpha}) of a diffusers LoRA file; ``denoiser`` is the
    component an unprefixed key belongs to."""
    path = Path(path)
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except Exception as exc:  # a truncated or foreign file
        raise ModelError(f"cannot read LoRA file {path}: {type(exc).__name__}: {exc}") from None
    states: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if not key.endswith((".lora_A.weight", ".lora_B.weight")):
            raise ModelError(f"LoRA file {path} holds {key!r}, which is not in diffusers' LoRA layout "
                             "(<component>.<layer>.lora_A.weight / lora_B.weight); convert it with diffusers first")
        component, _, rest = key.partition(".")
        if component not in COMPONENTS:
            component, rest = denoiser, key
        states.setdefault(component, {})[rest] = value
    alphas: dict[str, float] = {}
    if METADATA_KEY in header:
        try:
            metadata = json.loads(header[METADATA_KEY])
        except (ValueError, RecursionError):
            raise ModelError(f"LoRA file {path} has a {METADATA_KEY} entry that is not JSON") from None
        if not isinstance(metadata, dict):
            raise ModelError(f"LoRA file {path} has a {METADATA_KEY} entry that is not a JSON object")
        for component in states:
            alpha = metadata.get(f"{component}.lora_alpha")
            if alpha is not None:
                if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
                    raise ModelError(f"LoRA file {path}: {component}.lora_alpha must be a finite number, got {json.dumps(alpha)[:40]}")
                alphas[component] = float(alpha)
    return states, alphas


def write_lora_file(path: Path, states: dict[str, dict[str, torch.Tensor]], alphas: dict[str, float]) -> str:
    """Write ``states`` ({component: peft-style state}) in diffusers' layout; returns the file's sha256."""
    tensors = {f"{component}.{key}": value.detach().to("cpu").contiguous()
               for component, state in states.items() for key, value in state.items()}
    metadata = {METADATA_KEY: json.dumps({f"{c}.lora_alpha": a for c, a in sorted(alphas.items())}, sort_keys=True)}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return sha256_file(Path(path))


def fold_lora_files(pipe: Any, files: list[tuple[str, str]], denoiser: str) -> list[str]:
    """Fold each (path, sha256) LoRA file into ``pipe``'s weights, checking the file is still the one
    the model was resolved with; returns the layers changed (``component.layer``)."""
    changed = []
    for path, sha in files:
        if sha256_file(Path(path)) != sha:
            raise ModelError(f"LoRA file {path} changed since the model was resolved (sha256 {sha[:12]}…); rerun")
        states, alphas = read_lora_file(Path(path), denoiser)
        for component, state in sorted(states.items()):
            module = getattr(pipe, component, None)
            if module is None:
                raise ModelError(f"LoRA file {path} adapts the {component}, which this pipeline has not")
            try:
                lora.load_adapter_state(module, state, alphas.get(component))
            except Exception as exc:  # a layer the model lacks, a shape that does not fit
                lora.detach(module)
                raise ModelError(f"LoRA file {path} does not fit this model's {component}: {exc}") from None
            changed += [f"{component}.{name}" for name in lora.merge(module)]
    return changed
