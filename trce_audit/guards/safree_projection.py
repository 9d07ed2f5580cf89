"""SAFREE's per-prompt arithmetic (Yoon et al., ICLR 2025; jaehong31/SAFREE@b8b2c3f
models/modified_stable_diffusion_pipeline.py and models/modified_stable_diffusion_xl_pipeline.py):

* toxic subspace C: the pooled text embeddings of the concept's phrases, projector P_c;
* trigger tokens: token i is one when the prompt with token i masked (pooled) lies farther from C
  than (1 + alpha) times the mean distance of the other masked prompts;
* trigger tokens' embeddings become (I - P_c)·P_m·e, with P_m the projector onto the masked prompts'
  span (the input space), the other tokens keep theirs;
* self-validating filtering: the projected embeddings are used for the first
  round(up_t · sigmoid(2k(10β - t₀))) steps, β = 1 - mean cosine(projected, original) over the
  prompt's active tokens.

Which encoder pools and which columns of the token states are projected is the family's choice
(guards/safree.py); everything here works on one encoder and the token states it produced.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ..models.device import widened


def projector(columns: torch.Tensor) -> torch.Tensor:
    """Projector onto the span of ``columns`` (D × K), E(EᵀE)⁺Eᵀ as the reference computes it."""
    return columns @ torch.pinverse(columns.T @ columns) @ columns.T


def project(cond: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    return (matrix @ widened(cond).T).T.to(cond.dtype)


def filter_steps(beta: float, up_t: int, midpoint: float, slope: float) -> int:
    return round(up_t / (1 + math.exp(-2.0 * slope * (10 * beta - midpoint))))


def pooled(encoder, ids: torch.Tensor) -> torch.Tensor:
    """What the reference pools with: the projected embedding of an encoder that has a projection (SDXL's
    ``text_encoder_2(ids)[0]``), the pooler output of one that has none (SD's ``pooler_output``)."""
    out = encoder(ids)
    embeds = getattr(out, "text_embeds", None)
    return widened(out.pooler_output if embeds is None else embeds)


@torch.no_grad()
def row_plan(encoder, ids: list[int], cond: torch.Tensor, p_c: torch.Tensor, config: dict[str, Any]):
    """(tokens kept [L], projection (I - P_c)·P_m [D, D], steps with the safe embeddings) for one
    prompt's token ids (unpadded, as the reference masks them) and token states [L, D]."""
    n_t = len(ids) - 2
    eye = torch.eye(p_c.shape[0], device=cond.device, dtype=p_c.dtype)
    if n_t < 1:
        return torch.ones(cond.shape[0], dtype=torch.bool, device=cond.device), eye, 0
    masked = torch.tensor([ids] * n_t, device=cond.device)
    masked[torch.arange(n_t), torch.arange(1, n_t + 1)] = 0  # the reference masks with token id 0
    masked_pooled = pooled(encoder, masked)
    p_m = projector(masked_pooled.T)
    dist = ((eye - p_c) @ masked_pooled.T).norm(dim=0)
    others = (dist.sum() - dist) / max(n_t - 1, 1)
    trigger = dist >= (1.0 + config["alpha"]) * others
    matrix = (eye - p_c) @ p_m
    keep = torch.ones(cond.shape[0], dtype=torch.bool, device=cond.device)
    keep[1 : n_t + 1] = ~trigger
    if not config["self_validation"]:
        return keep, matrix, config["re_attn_last_step"]
    active = slice(0, n_t + 2)
    beta = 1.0 - F.cosine_similarity(widened(project(cond, matrix)[active]), widened(cond[active])).mean().item()
    return keep, matrix, filter_steps(beta, config["up_t"], config["midpoint"], config["slope"])


def safe_embeddings(keep: torch.Tensor, matrix: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    return torch.where(keep[:, None], cond, project(cond, matrix))
