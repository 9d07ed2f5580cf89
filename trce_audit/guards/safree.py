"""SAFREE (Yoon et al., ICLR 2025) as a guard, after jaehong31/SAFREE@b8b2c3f: the per-prompt projection
of guards/safree_projection.py on the family's trigger encoder, and the concept phrases, joined, as the
negative (unconditional) prompt of CFG, as the reference runs.

SD 1.x/2.x (models/modified_stable_diffusion_pipeline.py): the one CLIP pools, and its token states are
projected. SDXL (models/modified_stable_diffusion_xl_pipeline.py): the second encoder (OpenCLIP bigG)
pools with its projection, and only its columns of the concatenated token states are projected
(``text_embeddings[..., 768:]``); the first encoder's columns and the pooled embedding stay the prompt's.
The negative prompt is encoded as SDXL encodes any prompt (both encoders, its own pooled embedding).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from ..errors import ConfigError
from ..models.families import pipeline_family
from ..models.families.base import Conditioning
from ..models.tokens import tokenize
from .base import Guard
from .safree_projection import pooled, projector, row_plan, safe_embeddings


def trigger_text(pipe, family: str):
    """(tokenizer, encoder, first projected column): the encoder whose pooled embeddings decide the
    trigger tokens, and where its columns start in the family's token states."""
    if family == "sdxl":  # the reference's 768: CLIP-L's width, ahead of bigG's columns
        first = int(pipe.text_encoder.config.hidden_size) if pipe.text_encoder is not None else 0
        return pipe.tokenizer_2, pipe.text_encoder_2, first
    return pipe.tokenizer, pipe.text_encoder, 0


class SAFREEGuard(Guard):
    name: ClassVar[str] = "safree"
    version: ClassVar[str] = "1"
    retokenizes_prompts: ClassVar[bool] = True
    families: ClassVar[tuple[str, ...]] = ("sd", "sdxl")

    def concept_projector(self, tokenizer, encoder, device) -> torch.Tensor:
        key = (id(encoder), str(device))
        cache = self.__dict__.setdefault("_projectors", {})
        if key not in cache:
            with torch.no_grad():
                space = pooled(encoder, tokenize(tokenizer, self.config["concept_space"]).to(device))
            cache[key] = projector(space.T)
        return cache[key]

    def plans(self, tokenizer, encoder, texts, states) -> list[tuple[torch.Tensor, int]]:
        """(safe token states, steps that use them) per prompt, for ``states`` [B, L, D] of ``encoder``."""
        p_c = self.concept_projector(tokenizer, encoder, states.device)
        found = []
        for text, row in zip(texts, states):
            ids = tokenizer(text, truncation=True, max_length=tokenizer.model_max_length).input_ids
            keep, matrix, steps = row_plan(encoder, ids, row, p_c, self.config)
            found.append((safe_embeddings(keep, matrix, row), steps))
        return found

    def prepare(self, sampler, texts, uncond, cond):
        pipe, family, settings = sampler.pipe, sampler.family, sampler.settings
        tokenizer, encoder, first = trigger_text(pipe, family.name)
        plans = self.plans(tokenizer, encoder, texts, cond.states[..., first:])
        n = cond.states.shape[0]
        if self.config["negative_prompt"]:
            negative = sampler.condition([", ".join(self.config["concept_space"])])
        else:
            negative = uncond.rows([0])
        return {
            "family": family,
            "uncond": family.with_image(negative.expand(n), pipe, settings.height, settings.width),
            "cond": family.with_image(cond, pipe, settings.height, settings.width),
            "safe": torch.cat([cond.states[..., :first], torch.stack([safe for safe, _ in plans])], dim=-1),
            "until": torch.tensor([steps for _, steps in plans], device=cond.states.device),
        }

    def step_noise(self, unet, latents, t, step, guidance, state):
        use_safe = (step <= state["until"]).view(-1, 1, 1)
        cond = state["cond"]
        rows = Conditioning(torch.where(use_safe, state["safe"], cond.states), cond.pooled, cond.extra)
        noise = state["family"].call_denoiser(unet, torch.cat([latents] * 2), t, state["uncond"].concat(rows))
        eps_u, eps_c = noise.chunk(2)
        g = guidance.view(-1, 1, 1, 1)
        return torch.where(g > 1.0, eps_u + g * (eps_c - eps_u), eps_c)

    def attack_noise(self, pipe, x_t, t, hidden, ids):
        if pipeline_family(pipe) != "sd":  # the white-box attacks' guarded prediction is SD's
            raise ConfigError(f"white-box attacks through the {self.name} guard run on sd models; this is a {pipeline_family(pipe)} model")
        # Which tokens are triggers is a threshold on re-encoded token ids (no gradient): decided
        # without grad for the current tokens, then the projection is applied differentiably, at every
        # timestep (the self-validating filter counts sampling steps, which a one-timestep loss lacks).
        tokenizer = pipe.tokenizer
        p_c = self.concept_projector(tokenizer, pipe.text_encoder, hidden.device)
        rows = []
        for row_ids, row in zip(ids.tolist(), hidden):
            eos = row_ids.index(tokenizer.eos_token_id) if tokenizer.eos_token_id in row_ids else len(row_ids) - 1
            keep, matrix, _ = row_plan(pipe.text_encoder, row_ids[: eos + 1], row.detach(), p_c, self.config)
            rows.append(safe_embeddings(keep, matrix, row))
        return pipe.unet(x_t, t, encoder_hidden_states=torch.stack(rows)).sample
