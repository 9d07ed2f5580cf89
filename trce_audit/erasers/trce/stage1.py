"""TRCE stage 1: closed-form refinement of every cross-attention key and value projection.

For each attn2 projection W the edit solves
    W' = (Σ w·v*·cᵀ / N + λp·W·P + λ·W) (Σ w·c·cᵀ / N + λp·P + λ·I)⁻¹,   v* = W·c_safe,
where c are rows of the malicious prompts' text embeddings, c_safe the matching rows of the safe
prompts, w the per-row weights, N the number of prompt pairs and P the prior second moment of caption
embeddings. Because every projection reads the same embeddings, W' = W·M with one shared matrix M.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch
from safetensors.torch import load_file, save_file

from ...hashing import hash_obj
from ...models.tokens import token_count
from ...workspace import temp_sibling
from ...models.families.sd import cross_attention_projections
from ..common import encode_prompts, solve_closed_form
from .templates import augment

if TYPE_CHECKING:
    from ...data.concepts import Concept
    from ..base import EraseContext
    from .config import TRCEConfig

PRIOR_CACHE_VERSION = 1
REFERENCE_PRIOR_DIVISOR = 3e4  # the reference divides its cached COCO sums by 30k, whatever the set size


@dataclass(frozen=True)
class EditPrompt:
    malicious: str
    safe: str
    keyword: str


@dataclass(frozen=True)
class RowMap:
    """Which embedding rows of a malicious prompt map onto which rows of its safe twin, with weights."""

    malicious: tuple[int, ...]
    safe: tuple[int, ...]
    weights: tuple[float, ...]


def edit_prompts(concept: "Concept", config: "TRCEConfig") -> list[EditPrompt]:
    items = []
    for malicious, safe in concept.pairs[: config.concept_num]:
        for bad, good in zip(augment(malicious, config.augment_num), augment(safe, config.augment_num)):
            items.append(EditPrompt(bad, good, malicious))
    return items


def first_eot_index(tokenizer, prompt: str, reference: bool) -> int:
    """Position of the first [EoT]. The reference counts words, which is wrong whenever a word splits
    into several tokens; the default counts tokens."""
    last = tokenizer.model_max_length - 1
    count = len(prompt.split()) if reference else token_count(tokenizer, prompt)
    return min(count + 1, last)


def find_subsequence(sequence: Sequence, part: Sequence) -> int | None:
    for start in range(len(sequence) - len(part) + 1):
        if list(sequence[start : start + len(part)]) == list(part):
            return start
    return None


def keyword_positions(tokenizer, prompt: str, keyword: str, reference: bool) -> list[int]:
    if not keyword:
        return []
    if reference:
        start = find_subsequence(prompt.split(), keyword.split())
        return [] if start is None else [i + 1 for i in range(start, start + len(keyword.split()))]
    ids = tokenizer(prompt, truncation=True, max_length=tokenizer.model_max_length).input_ids
    part = tokenizer(keyword, add_special_tokens=False).input_ids
    start = find_subsequence(ids, part)
    return [] if start is None else list(range(start, start + len(part)))


def row_map(tokenizer, item: EditPrompt, weights: Sequence[float], reference: bool) -> RowMap:
    w_sot, w_eot, w_pad, w_key = weights
    last = tokenizer.model_max_length - 1
    eot_bad = first_eot_index(tokenizer, item.malicious, reference)
    eot_good = first_eot_index(tokenizer, item.safe, reference)
    keys = keyword_positions(tokenizer, item.malicious, item.keyword, reference)
    rows: list[tuple[int, int, float]] = [(0, 0, w_sot), (eot_bad, eot_good, w_eot)]
    if reference:
        # One row stands for all padding, weighted by the padding count (counted in words); only the
        # first keyword row is used, mapped onto the safe prompt's last padding row.
        rows.append((last, last, w_pad * (tokenizer.model_max_length - len(item.malicious.split()) - 2)))
        if keys:
            rows.append((keys[0], last, w_key))
    else:
        rows += [(i, i if i > eot_good else last, w_pad) for i in range(eot_bad + 1, last + 1)]
        rows += [(k, last, w_key) for k in keys]
    rows = [r for r in rows if r[2] > 0]
    return RowMap(tuple(r[0] for r in rows), tuple(r[1] for r in rows), tuple(float(r[2]) for r in rows))


@torch.no_grad()
def erase_moments(pipe, items: list[EditPrompt], maps: list[RowMap], device, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(X, E) with X = Σ w·c_safe·cᵀ / N and E = Σ w·c·cᵀ / N, in float64 [D, D]."""
    bad = encode_prompts(pipe, [i.malicious for i in items], device, batch_size).double()
    good = encode_prompts(pipe, [i.safe for i in items], device, batch_size).double()
    return row_moments(bad, good, maps)


def row_moments(bad: torch.Tensor, good: torch.Tensor, maps: list[RowMap]) -> tuple[torch.Tensor, torch.Tensor]:
    """(X, E) of ``erase_moments`` from the prompts' embeddings [N, L, D] (float64) and their row maps."""
    dim = bad.shape[-1]
    cross = torch.zeros(dim, dim, dtype=torch.float64, device=bad.device)
    second = torch.zeros_like(cross)
    for k, rows in enumerate(maps):
        if not rows.weights:
            continue
        c = bad[k, list(rows.malicious)]
        target = good[k, list(rows.safe)]
        w = torch.tensor(rows.weights, dtype=torch.float64, device=bad.device)[:, None]
        cross += (target * w).T @ c
        second += (c * w).T @ c
    return cross / len(maps), second / len(maps)


@torch.no_grad()
def prior_moment(pipe, captions: Sequence[str], rows: str, device, batch_size: int) -> torch.Tensor:
    """Σ c·cᵀ over the chosen rows of every caption's embedding, float64 [D, D]."""
    total = None
    for start in range(0, len(captions), batch_size):
        chunk = list(captions[start : start + batch_size])
        emb = encode_prompts(pipe, chunk, device, batch_size).double()
        if rows == "prompt":
            ends = [first_eot_index(pipe.tokenizer, c, reference=False) for c in chunk]
            flat = torch.cat([emb[i, : end + 1] for i, end in enumerate(ends)])
        else:
            flat = emb.reshape(-1, emb.shape[-1])
        moment = flat.T @ flat
        total = moment if total is None else total + moment
    return total


def _text_encoder_hash(pipe) -> str:
    digest = hashlib.sha256()
    for key, value in sorted(pipe.text_encoder.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().float().cpu().numpy().tobytes())
    second = getattr(pipe, "text_encoder_2", None)  # SDXL's rows read both encoders
    for key, value in sorted(second.state_dict().items()) if second is not None else ():
        digest.update(f"text_encoder_2.{key}".encode())
        digest.update(value.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def cached_prior(pipe, config: "TRCEConfig", context: "EraseContext") -> tuple[torch.Tensor, int, dict[str, Any]]:
    """The prior moment of the caption set, cached by model + captions + row selection."""
    captions = context.caption_list(config.caption_set, config.n_captions)
    key = hash_obj(
        {
            "v": PRIOR_CACHE_VERSION,
            "model": context.model_fingerprint or _text_encoder_hash(pipe),
            "captions": hash_obj(captions),
            "rows": config.prior_rows,
        }
    )
    folder = Path(context.cache_dir) / "trce-prior"
    path = folder / f"{key[:32]}.safetensors"
    info = {"caption_set": config.caption_set, "n_captions": len(captions), "cache": str(path)}
    if path.is_file():
        return load_file(str(path))["moment"].to(context.device), len(captions), {**info, "cache_hit": True}
    context.progress("stage 1: caption prior", 0, len(captions))
    moment = prior_moment(pipe, captions, config.prior_rows, context.device, context.batch_size * 4)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)  # erasers of one audit may run at once
    save_file({"moment": moment.cpu().contiguous()}, str(tmp), metadata={"info": json.dumps(info)})
    tmp.replace(path)
    context.progress("stage 1: caption prior", len(captions), len(captions))
    return moment, len(captions), {**info, "cache_hit": False}


@torch.no_grad()
def refine(pipe, cross: torch.Tensor, second: torch.Tensor, prior: torch.Tensor, config: "TRCEConfig") -> list[str]:
    """Apply the closed form to every attn2 to_k / to_v and return the edited parameter names."""
    dim = second.shape[0]
    eye = torch.eye(dim, dtype=torch.float64, device=second.device)
    projections = cross_attention_projections(pipe.unet)
    if config.reference:
        for _, layer in projections:
            weight = layer.weight.data.float()
            mat1 = weight @ (cross + prior).float() + config.lamb * weight
            mat2 = (second + prior + config.lamb * eye).float()
            layer.weight.data = solve_closed_form(mat1, mat2, exact_inverse=True).to(layer.weight.dtype)
    else:
        shared = solve_closed_form(cross + prior + config.lamb * eye, second + prior + config.lamb * eye)
        for _, layer in projections:
            layer.weight.data = (layer.weight.data.double() @ shared).to(layer.weight.dtype)
    return [f"unet.{name}.weight" for name, _ in projections]


def run_stage1(pipe, concept: "Concept", config: "TRCEConfig", context: "EraseContext") -> dict[str, Any]:
    items = edit_prompts(concept, config)
    maps = [row_map(pipe.tokenizer, item, config.token_weights, config.reference) for item in items]
    context.progress("stage 1: closed form", 0, 1)
    cross, second = erase_moments(pipe, items, maps, context.device, context.batch_size * 4)
    scale = config.effective_preserve_scale
    if scale > 0:
        moment, n_captions, prior_info = cached_prior(pipe, config, context)
        moment = moment.to(second.device, torch.float64)
        if config.reference:
            prior = scale * scale * moment / REFERENCE_PRIOR_DIVISOR
        else:
            prior = scale * moment / n_captions
    else:
        prior, prior_info = torch.zeros_like(second), {"caption_set": None}
    edited = refine(pipe, cross, second, prior, config)
    context.progress("stage 1: closed form", 1, 1)
    return {
        "n_edit_prompts": len(items),
        "n_rows": sum(len(m.weights) for m in maps),
        "preserve_scale": scale,
        "prior": prior_info,
        "edited": len(edited),
    }
