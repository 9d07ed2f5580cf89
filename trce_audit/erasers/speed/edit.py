"""SPEED's per-layer arithmetic (``edit_model`` and ``generate_perturbed_embs`` of the reference's
``train_erase_null.py``), in float64."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .common import encode_prompts
from .uce import last_token_rows

if TYPE_CHECKING:
    from .speed import SPEEDConfig

CHUNK = 128  # the reference's chunk_size: augmentation filters each chunk by the chunk's own mean
MINI_BATCH = 8


def target_sums(pipe, targets: list[str], anchors: list[str], rows: str, device) -> tuple[torch.Tensor, torch.Tensor]:
    """C_tt = mean_i Tᵢᵀ·Tᵢ and C_at = mean_i Aᵢᵀ·Tᵢ over the chosen rows of each (target, anchor) pair."""
    if rows == "all":
        t = encode_prompts(pipe, targets, device)[:, 1:].double()
        a = encode_prompts(pipe, anchors, device)[:, 1:].double()
    else:
        t = last_token_rows(pipe, targets, device)[:, None]
        a = last_token_rows(pipe, anchors, device)[:, None]
    return (t.transpose(1, 2) @ t).mean(0), (a.transpose(1, 2) @ t).mean(0)


def retained_rows(pipe, texts: list[str], device) -> torch.Tensor:
    """Last-token rows of the retained texts, or, with none, the empty prompt's rows after [SoT]
    (the reference's default retain set [""])."""
    if not texts:
        return encode_prompts(pipe, [""], device)[0, 1:].double()
    return last_token_rows(pipe, texts, device)


def perturbed(rows: torch.Tensor, direction: torch.Tensor, erase_weight: torch.Tensor, copies: int, generator) -> torch.Tensor:
    """``copies`` perturbations of every row along ``direction`` (unit input vector), kept where the plain
    erase would move them more than the chunk's mean (directed prior augmentation)."""
    out = []
    for start in range(0, len(rows), MINI_BATCH):
        mini = rows[start : start + MINI_BATCH]
        for _ in range(copies):
            noise = torch.randn(mini.shape, generator=generator, dtype=torch.float64).to(mini.device)
            out.append(mini + (noise @ direction[:, None]) * direction[None])
    out_rows = torch.cat(out)
    norms = (out_rows @ erase_weight.T).norm(dim=1)
    return out_rows[norms > norms.mean()]


def speed_delta(weight, c_tt, c_at, rows, invariant, config: "SPEEDConfig", generator) -> tuple[torch.Tensor, int]:
    """The update of one projection and how many retained rows (after filter and augmentation) shaped it."""
    dim = weight.shape[1]
    eye = torch.eye(dim, dtype=torch.float64, device=weight.device)
    erase_weight = weight @ (c_at - c_tt) @ torch.linalg.inv(eye + c_tt)
    least = torch.linalg.svd(weight, full_matrices=False).Vh[-1]  # V0[:, -1] of the reference's torch.svd
    chosen = rows[torch.randperm(len(rows), generator=generator).to(rows.device)]
    if config.aug_num > 0 and config.influence_filter:
        norms = (chosen @ erase_weight.T).norm(dim=1)
        chosen = chosen[norms > norms.mean()]
    total, count = torch.zeros_like(eye), 0
    for start in range(0, len(chosen), CHUNK):
        chunk = chosen[start : start + CHUNK]
        if config.aug_num > 0:
            chunk = torch.cat([chunk, perturbed(chunk, least, erase_weight, config.aug_num, generator)])
        total += chunk.T @ chunk
        count += len(chunk)
    c_rr = total / max(count, 1)
    values, vectors = torch.linalg.eigh(c_rr)  # symmetric PSD: eigh equals the reference's SVD here
    null = vectors[:, values < config.threshold]
    proj = null @ null.T
    m = torch.linalg.inv(c_tt @ proj + config.retain_scale * eye)
    k = invariant
    # pinv: equals the reference's inverse when it exists, and stays finite at λ = 0 when K leaves P's range
    inner = torch.linalg.pinv(k.T @ proj @ m @ k + config.lamb * torch.eye(k.shape[1], dtype=torch.float64, device=k.device))
    delta = weight @ (c_at - c_tt) @ proj @ (eye - m @ k @ inner @ k.T @ proj) @ m
    return delta, count
