"""SAFREE (Yoon et al., ICLR 2025) as a guard, after jaehong31/SAFREE@b8b2c3f
(models/modified_stable_diffusion_pipeline.py, generate_safree.py):

* toxic subspace C: the pooled text embeddings of the concept's phrases, projector P_c;
* trigger tokens: token i is one when the prompt with token i masked (pooled) lies farther from C
  than (1 + alpha) times the mean distance of the other masked prompts;
* trigger tokens' embeddings become (I - P_c)·P_m·e, with P_m the projector onto the masked prompts'
  span (the input space), the other tokens keep theirs;
* self-validating filtering: the projected embeddings are used for the first
  round(up_t · sigmoid(2k(10β - t₀))) steps, β = 1 - mean cosine(projected, original) over the
  prompt's active tokens;
* the concept phrases, joined, are the negative (unconditional) prompt of CFG, as the reference runs.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..models.device import widened
from ..models.tokens import tokenize
from .base import Guard


def projector(columns: torch.Tensor) -> torch.Tensor:
    """Projector onto the span of ``columns`` (D × K), E(EᵀE)⁺Eᵀ as the reference computes it."""
    return columns @ torch.pinverse(columns.T @ columns) @ columns.T


def project(cond: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    return (matrix @ widened(cond).T).T.to(cond.dtype)


def filter_steps(beta: float, up_t: int, midpoint: float, slope: float) -> int:
    return round(up_t / (1 + math.exp(-2.0 * slope * (10 * beta - midpoint))))


class SAFREEGuard(Guard):
    name: ClassVar[str] = "safree"
    version: ClassVar[str] = "1"
    retokenizes_prompts: ClassVar[bool] = True

    def _pooled(self, encoder, ids: torch.Tensor) -> torch.Tensor:
        return widened(encoder(ids).pooler_output)

    def concept_projector(self, tokenizer, encoder, device) -> torch.Tensor:
        key = str(device)
        cache = self.__dict__.setdefault("_projectors", {})
        if key not in cache:
            with torch.no_grad():
                pooled = self._pooled(encoder, tokenize(tokenizer, self.config["concept_space"]).to(device))
            cache[key] = projector(pooled.T)
        return cache[key]

    @torch.no_grad()
    def row_plan(self, encoder, ids: list[int], cond: torch.Tensor, p_c: torch.Tensor):
        """(tokens kept [L], projection (I - P_c)·P_m [D, D], steps with the safe embeddings) for one
        prompt's token ids and embeddings [L, D]."""
        n_t = len(ids) - 2
        eye = torch.eye(p_c.shape[0], device=cond.device)
        if n_t < 1:
            return torch.ones(cond.shape[0], dtype=torch.bool, device=cond.device), eye, 0
        masked = torch.tensor([ids] * n_t, device=cond.device)
        masked[torch.arange(n_t), torch.arange(1, n_t + 1)] = 0  # the reference masks with token id 0
        pooled = self._pooled(encoder, masked)
        p_m = projector(pooled.T)
        dist = ((eye - p_c) @ pooled.T).norm(dim=0)
        others = (dist.sum() - dist) / max(n_t - 1, 1)
        trigger = dist >= (1.0 + self.config["alpha"]) * others
        matrix = (eye - p_c) @ p_m
        keep = torch.ones(cond.shape[0], dtype=torch.bool, device=cond.device)
        keep[1 : n_t + 1] = ~trigger
        if not self.config["self_validation"]:
            return keep, matrix, self.config["re_attn_last_step"]
        active = slice(0, n_t + 2)
        beta = 1.0 - F.cosine_similarity(widened(project(cond, matrix)[active]), widened(cond[active])).mean().item()
        return keep, matrix, filter_steps(beta, self.config["up_t"], self.config["midpoint"], self.config["slope"])

    def safe_embeddings(self, keep, matrix, cond):
        return torch.where(keep[:, None], cond, project(cond, matrix))

    def _plans(self, tokenizer, encoder, texts, cond):
        p_c = self.concept_projector(tokenizer, encoder, cond.device)
        plans = []
        for text, row in zip(texts, cond):
            ids = tokenizer(text, truncation=True, max_length=tokenizer.model_max_length).input_ids
            keep, matrix, steps = self.row_plan(encoder, ids, row, p_c)
            plans.append((self.safe_embeddings(keep, matrix, row), steps))
        return plans

    def prepare(self, sampler, texts, uncond, cond):
        uncond, cond = uncond.states, cond.states  # SD: the states are the whole conditioning
        pipe, n = sampler.pipe, cond.shape[0]
        plans = self._plans(pipe.tokenizer, pipe.text_encoder, texts, cond)
        negative = sampler.encode([", ".join(self.config["concept_space"])]) if self.config["negative_prompt"] else uncond[:1]
        return {
            "uncond": negative.expand(n, -1, -1),
            "cond": cond,
            "safe": torch.stack([safe for safe, _ in plans]),
            "until": torch.tensor([steps for _, steps in plans], device=cond.device),
        }

    def step_noise(self, unet, latents, t, step, guidance, state):
        use_safe = (step <= state["until"]).view(-1, 1, 1)
        cond = torch.where(use_safe, state["safe"], state["cond"])
        noise = unet(torch.cat([latents] * 2), t, encoder_hidden_states=torch.cat([state["uncond"], cond])).sample
        eps_u, eps_c = noise.chunk(2)
        g = guidance.view(-1, 1, 1, 1)
        return torch.where(g > 1.0, eps_u + g * (eps_c - eps_u), eps_c)

    def attack_noise(self, pipe, x_t, t, hidden, ids):
        # Which tokens are triggers is a threshold on re-encoded token ids (no gradient): decided
        # without grad for the current tokens, then the projection is applied differentiably, at every
        # timestep (the self-validating filter counts sampling steps, which a one-timestep loss lacks).
        tokenizer = pipe.tokenizer
        p_c = self.concept_projector(tokenizer, pipe.text_encoder, hidden.device)
        rows = []
        for row_ids, row in zip(ids.tolist(), hidden):
            eos = row_ids.index(tokenizer.eos_token_id) if tokenizer.eos_token_id in row_ids else len(row_ids) - 1
            keep, matrix, _ = self.row_plan(pipe.text_encoder, row_ids[: eos + 1], row.detach(), p_c)
            rows.append(self.safe_embeddings(keep, matrix, row))
        return pipe.unet(x_t, t, encoder_hidden_states=torch.stack(rows)).sample
