"""SPEED's edit (``edit_model`` and ``generate_perturbed_embs`` of the reference's ``train_erase_null.py``):
the target sums, the invariant rows, the retained rows, and per projection the update, in float64.
Torch at import: the SPEED class imports this when it erases."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ...models.families.sd import cross_attention_projections
from ..common import encode_prompts
from ..uce import last_token_rows

if TYPE_CHECKING:
    from ..base import EraseContext
    from .config import SPEEDConfig

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


def kmeans_centres(rows, k: int, seed: int, iterations: int = 50):
    """Lloyd's k-means (Euclidean), k-means++ seeding drawn with ``seed`` (the reference's kmeans_pytorch
    starts from random rows, unseeded, and can settle with two centres in one cluster)."""
    generator = torch.Generator().manual_seed(seed)
    picks = [int(torch.randint(len(rows), (1,), generator=generator))]
    while len(picks) < min(k, len(rows)):
        d2 = torch.cdist(rows, rows[picks]).min(dim=1).values ** 2
        if float(d2.sum()) == 0:
            break
        picks.append(int(torch.multinomial((d2 / d2.sum()).float(), 1, generator=generator)))
    centres = rows[picks].clone()
    for _ in range(iterations):
        nearest = torch.cdist(rows, centres).argmin(dim=1)
        moved = torch.stack([rows[nearest == j].mean(0) if (nearest == j).any() else centres[j] for j in range(len(centres))])
        # converged: at the fixed point the assignments repeat and the means come out equal; allclose's
        # rtol 1e-5 also stops a step before it, when the centres move by rounding only
        if torch.allclose(moved, centres):
            break
        centres = moved
    return centres


def edit_projections(
    pipe, config: "SPEEDConfig", targets: list[str], anchors: list[str], retain: list[str], context: "EraseContext"
) -> tuple[list[int], int]:
    """Edit the chosen cross-attention projections in place; returns the retained rows that shaped each
    projection's update and how many projections were edited."""
    device = context.device
    c_tt, c_at = target_sums(pipe, targets, anchors, config.target_rows, device)
    null = encode_prompts(pipe, [""], device)[0].double()
    invariant = torch.cat([null[:1], kmeans_centres(null[1:], config.clusters, config.seed)]).T
    rows = retained_rows(pipe, retain, device)
    which = {"V": ("to_v",), "K": ("to_k",), "KV": ("to_k", "to_v")}[config.params]
    projections = cross_attention_projections(pipe.unet, which)
    generator = torch.Generator().manual_seed(config.seed)
    kept: list[int] = []
    with torch.no_grad():
        for i, (_, layer) in enumerate(projections):
            weight = layer.weight.data.double()
            delta, n_rows = speed_delta(weight, c_tt, c_at, rows, invariant, config, generator)
            layer.weight.data = (weight + delta).to(layer.weight.dtype)
            kept.append(n_rows)
            context.progress("speed: closed form", i + 1, len(projections))
    return kept, len(projections)
