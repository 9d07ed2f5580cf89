"""MACE's two closed forms (Lu et al., CVPR 2024; github.com/Shilin-LU/MACE, docs/fidelity.md).

Refinement (stage 1): the rows a concept prompt shares with its guide prompt (the common prefix, the
common suffix and the padding after it, aligned from each prompt's end) are mapped onto the guide's
rows by UCE's closed form (``uce.closed_form_edit``), with a caption prior:
    W' = (λ·W + Σ W·g·cᵀ + s·W·P)(λ·I + Σ c·cᵀ + s·P)⁻¹.
The concept's own tokens are left out: their residue in the words around them is what this removes.

Fusion (stage 3): one W per projection that reproduces every concept's LoRA-tuned projection Wᵢ on that
concept's prompts (all 77 rows) and the original W⁰ on the caption prior,
    W* = argmin Σᵢ Σ_c ‖W·c − Wᵢ·c‖² + s·Σ_k ‖W·k − W⁰·k‖² + λ·‖W − W_cfr‖²
       = (Σᵢ Wᵢ·Cᵢ + s·W⁰·P + λ·W_cfr)(Σᵢ Cᵢ + s·P + λ·I)⁻¹,   Cᵢ = Σ_c c·cᵀ.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ...models.tokens import tokenize
from ..common import encode_prompts, solve_closed_form
from ..trce.stage1 import keyword_positions
from .config import REFERENCE_PRIOR_CAPTIONS


def matched_rows(old_ids: Sequence[int], new_ids: Sequence[int], length: int) -> tuple[list[int], list[int]]:
    """Row pairs (old, new) that two unpadded token sequences share: the common prefix, the common
    suffix ([EoT] included) and the padding rows, paired by their distance from each prompt's end."""
    n_old, n_new = len(old_ids), len(new_ids)
    start = 0
    while start < min(n_old, n_new) and old_ids[start] == new_ids[start]:
        start += 1
    end_old, end_new = n_old - 1, n_new - 1
    while end_old >= start and end_new >= start and old_ids[end_old] == new_ids[end_new]:
        end_old, end_new = end_old - 1, end_new - 1
    old = list(range(start)) + list(range(end_old + 1, n_old))
    new = list(range(start)) + list(range(end_new + 1, n_new))
    shift = n_old - n_new
    padding = [p for p in range(n_old, length) if n_new <= p - shift < length]
    return old + padding, new + [p - shift for p in padding]


@torch.no_grad()
def refinement_rows(pipe, prompts: Sequence[tuple[str, str]], device, batch_size: int = 16):
    """(c, g) [N, D] float64: the concept prompts' shared rows and the guide prompts' matching rows."""
    old_emb = encode_prompts(pipe, [p for p, _ in prompts], device, batch_size).double()
    new_emb = encode_prompts(pipe, [g for _, g in prompts], device, batch_size).double()
    length = pipe.tokenizer.model_max_length
    erase, guide = [], []
    for k, (prompt, guide_prompt) in enumerate(prompts):
        ids = [pipe.tokenizer(text, truncation=True, max_length=length).input_ids for text in (prompt, guide_prompt)]
        rows_old, rows_new = matched_rows(ids[0], ids[1], length)
        erase.append(old_emb[k, rows_old])
        guide.append(new_emb[k, rows_new])
    return torch.cat(erase), torch.cat(guide)


@torch.no_grad()
def prompt_moment(pipe, prompts: Sequence[str], device, batch_size: int = 16) -> torch.Tensor:
    """Σ c·cᵀ over all rows of every prompt (the fusion's Cᵢ), float64 [D, D]."""
    emb = encode_prompts(pipe, list(prompts), device, batch_size).double()
    flat = emb.reshape(-1, emb.shape[-1])
    return flat.T @ flat


def fused_weight(
    tuned: Sequence[torch.Tensor], moments: Sequence[torch.Tensor], original: torch.Tensor, refined: torch.Tensor,
    prior: torch.Tensor, lamb: float,
) -> torch.Tensor:
    """The fusion's minimiser for one projection (module docstring), float64 [out, D]; ``prior`` is s·P."""
    eye = torch.eye(refined.shape[1], dtype=torch.float64, device=refined.device)
    mat1 = sum(w.double() @ m for w, m in zip(tuned, moments)) + original.double() @ prior + lamb * refined.double()
    mat2 = sum(moments) + prior + lamb * eye
    return solve_closed_form(mat1, mat2)


def fusion_objective(weight, tuned, moments, original, refined, prior, lamb: float) -> float:
    """The quantity ``fused_weight`` minimises (tests compare it at the solution and nearby)."""
    def quad(diff, moment):
        return float(torch.trace(diff @ moment @ diff.T))

    total = sum(quad(weight - w.double(), m) for w, m in zip(tuned, moments))
    return total + quad(weight - original.double(), prior) + lamb * float((weight - refined.double()).pow(2).sum())


def prior_weight(scale: float, n_captions: int, reference_captions: int = REFERENCE_PRIOR_CAPTIONS) -> float:
    """The weight on our caption sum that gives the prior the weight ``scale`` gives the reference's sum
    over ``reference_captions`` captions (the same multiple of the caption mean)."""
    return scale * reference_captions / max(n_captions, 1)


def concept_positions(tokenizer, prompt: str, phrase: str, use_pooler: bool) -> torch.Tensor:
    """Bool [77]: the phrase's tokens in the prompt and, with ``use_pooler``, every [EoT]-token row (with
    SD's tokenizer the padding is [EoT] too, so the reference's rule takes all of it)."""
    ids = tokenize(tokenizer, [prompt])[0]
    mask = torch.zeros(len(ids), dtype=torch.bool)
    mask[keyword_positions(tokenizer, prompt, phrase, reference=False)] = True
    if use_pooler:
        mask |= ids == tokenizer.eos_token_id
    return mask
