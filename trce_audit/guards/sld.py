"""Safe Latent Diffusion (Schramowski et al., CVPR 2023) as a guard, following diffusers'
StableDiffusionPipelineSafe: a third noise prediction for the safety concept, an element-wise
safety scale, momentum, and a warm-up before the safety term joins the guidance.

On SDXL (an extension of ours: diffusers' safe pipeline is SD's) the safety prediction is conditioned
as SDXL conditions any prompt (both encoders' states, the pooled embedding, the image's time ids), and
the unconditional one is SDXL's zeroed negative, as the sampler's.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..errors import ConfigError
from ..models.families import pipeline_family
from ..models.families.base import Conditioning
from ..models.tokens import encode_ids, tokenize
from .base import Guard


class SLDGuard(Guard):
    name: ClassVar[str] = "sld"
    version: ClassVar[str] = "1"
    families: ClassVar[tuple[str, ...]] = ("sd", "sdxl")

    def safety_term(self, eps_u, eps_c, eps_s, momentum):
        """(guidance to subtract, next momentum), diffusers' formulas element for element."""
        c = self.config
        diff = eps_c - eps_s
        scale = torch.clamp(diff.abs() * c["guidance_scale"], max=1.0)
        scale = torch.where(diff >= c["threshold"], torch.zeros_like(scale), scale)
        term = (eps_s - eps_u) * scale + c["momentum_scale"] * momentum
        return term, c["mom_beta"] * momentum + (1 - c["mom_beta"]) * term

    def prepare(self, sampler, texts, uncond, cond):
        n = cond.states.shape[0]
        safety = sampler.condition([self.config["safety_concept"]]).expand(n)
        stacked = Conditioning(*(None if parts[0] is None else torch.cat(parts)
                                 for parts in zip(uncond.fields(), cond.fields(), safety.fields())))
        settings = sampler.settings
        context = sampler.family.with_image(stacked, sampler.pipe, settings.height, settings.width)
        return {"context": context, "family": sampler.family, "momentum": None}

    def step_noise(self, unet, latents, t, step, guidance, state):
        # One UNet call for the CFG pair and the safety prediction (3 rows per image).
        noise = state["family"].call_denoiser(unet, torch.cat([latents] * 3), t, state["context"])
        eps_u, eps_c, eps_s = noise.chunk(3)
        if state["momentum"] is None:
            state["momentum"] = torch.zeros_like(eps_c)
        term, state["momentum"] = self.safety_term(eps_u, eps_c, eps_s, state["momentum"])
        text = eps_c - eps_u
        if step >= self.config["warmup_steps"]:
            text = text - term
        # Rows at guidance <= 1 get SLD at guidance 1 (diffusers would drop the guard with CFG; see fidelity.md).
        return eps_u + guidance.clamp(min=1.0).view(-1, 1, 1, 1) * text

    def attack_noise(self, pipe, x_t, t, hidden, ids):
        if pipeline_family(pipe) != "sd":  # the white-box attacks' guarded prediction is SD's
            raise ConfigError(f"white-box attacks through the {self.name} guard run on sd models; this is a {pipeline_family(pipe)} model")
        # No history at a single timestep: no momentum and no warm-up, so the safety term applies at
        # every timestep the attack visits (docs/attacks.md).
        cached = getattr(self, "_attack_context", None)
        if cached is None or cached.device != hidden.device:
            with torch.no_grad():
                ids_ = tokenize(pipe.tokenizer, ["", self.config["safety_concept"]]).to(hidden.device)
                cached = self._attack_context = encode_ids(pipe.text_encoder, ids_).to(hidden.dtype)
        n = hidden.shape[0]
        context = torch.cat([cached[:1].expand(n, -1, -1), hidden, cached[1:].expand(n, -1, -1)])
        # a timestep per sample (textual inversion's draws) repeats with the three stacked batches
        steps = torch.cat([t] * 3) if torch.is_tensor(t) and t.ndim > 0 and t.numel() > 1 else t
        noise = pipe.unet(torch.cat([x_t] * 3), steps, encoder_hidden_states=context).sample
        eps_u, eps_c, eps_s = noise.chunk(3)
        term, _ = self.safety_term(eps_u, eps_c, eps_s, torch.zeros_like(eps_c))
        return eps_c - term
