"""The batched sampler: one text-encoder pass, one denoiser pass per step and one VAE decode per batch.

What differs between model families (text encoders, the denoiser's call, scheduling, latent packing,
decoding) is asked of the pipeline's family (models/families); the loop, the per-row seeds and the
per-row guidance are the same for every family.

A pipeline that carries an inference-time guard (``pipe.trce_guard``, trce_audit/guards) hands each
step's prediction to the guard, which still makes one UNet call per step for the whole batch.

Each row brings its own seed (a CPU ``torch.Generator`` per sample draws its initial latents and any
per-step noise) and its own guidance scale (classifier-free guidance is applied with a per-row guidance
tensor), so an image does not depend on which batch it was in, nor on the device's random generator.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Sequence

import diffusers
import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from ..errors import ConfigError
from ..models.determinism import deterministic
from ..models.families import load_family, pipeline_family
from ..models.families.base import Conditioning
from ..models.families.sd import attention_mask, padded_ids  # learned tokens: the SD text path
from ..models.device import torch_dtype
from ..models.tokens import substituted_token_embeddings
from ..records import PromptRow
from . import learned_tokens as lt
from .settings import SCHEDULERS, GenerationSettings


def make_scheduler(pipe, name: str | None):
    """A fresh scheduler (multistep schedulers keep state between steps, so never share one)."""
    cls = type(pipe.scheduler) if name is None else getattr(diffusers, SCHEDULERS[name])
    return cls.from_config(pipe.scheduler.config)


@dataclass
class BatchSampler:
    """Turns prompt rows into uint8 RGB arrays with a loaded diffusers pipeline's components."""

    pipe: Any
    settings: GenerationSettings
    # torch's deterministic kernels (models/determinism.py); off only to measure what they cost
    # (benchmarks/determinism_cost.py): they never change an image on a CPU.
    deterministic: bool = True

    def __post_init__(self) -> None:
        self.device = torch.device(self.settings.device)
        self.dtype = torch_dtype(self.settings.dtype)
        self.family = load_family(pipeline_family(self.pipe))
        self._uncond: Conditioning | None = None
        self._learned: dict[str, torch.Tensor] = {}  # learned token vectors by sha256

    @torch.no_grad()
    def condition(self, texts: Sequence[str], rows: Sequence[PromptRow] = ()) -> Conditioning:
        """The family's text conditioning of ``texts`` (``rows``, the same prompts, may carry learned tokens)."""
        if any(lt.learned_sha(row) for row in rows):
            return self._encode_learned(texts, rows)
        return self.family.encode(self.pipe, texts, self.device, self.dtype, self.settings.max_sequence_length)

    def encode(self, texts: Sequence[str], rows: Sequence[PromptRow] = ()) -> torch.Tensor:
        """Encoder states of ``texts`` (what the SD guards consult)."""
        return self.condition(texts, rows).states

    def _encode_learned(self, texts: Sequence[str], rows: Sequence[PromptRow]) -> Conditioning:
        """The conditioning with the rows' learned token vectors in place of their placeholder tokens:
        SD's one vector in its one encoder, the other families' one vector per text encoder."""
        if self.family.name != "sd":
            return lt.learned_condition(self.family, self.pipe, texts, rows, self.device, self.dtype,
                                        self.settings.max_sequence_length, self._learned)
        tokenizer, encoder = self.pipe.tokenizer, self.pipe.text_encoder
        ids, embeds = lt.learned_inputs(tokenizer, encoder, padded_ids(tokenizer, texts, self.device), rows, self._learned)
        with substituted_token_embeddings(encoder, embeds):
            return Conditioning(encoder(ids, attention_mask=attention_mask(encoder, tokenizer, ids))[0].to(self.dtype))

    def unconditional(self) -> Conditioning:
        if self._uncond is None:
            self._uncond = self.family.unconditional(self.pipe, self.device, self.dtype, self.settings.max_sequence_length)
        return self._uncond

    def sample(self, rows: Sequence[PromptRow]) -> np.ndarray:
        """(B, H, W, 3) uint8 images for ``rows``."""
        return self.decode(self.denoise(rows))

    def generators(self, rows: Sequence[PromptRow]) -> list[torch.Generator]:
        return [torch.Generator("cpu").manual_seed(int(row.seed)) for row in rows]

    def initial_latents(self, rows: Sequence[PromptRow], generators: list[torch.Generator], sigma: float) -> torch.Tensor:
        shape = self.family.latent_shape(self.pipe, len(rows), self.settings.height, self.settings.width)
        # Drawn on the CPU from each row's generator in float32, then moved: the same noise on every
        # device and precision. Scaled in the working precision, as the diffusers pipelines scale it
        # (in float32 the order changes nothing).
        latents = randn_tensor(shape, generator=generators, device=torch.device("cpu"), dtype=torch.float32)
        return latents.to(self.device, self.dtype) * sigma

    @torch.no_grad()
    def denoise(self, rows: Sequence[PromptRow]) -> torch.Tensor:
        """Final latents for ``rows``, with torch's deterministic kernels (models/determinism.py)."""
        if not self.deterministic:
            return self._denoise(rows)
        with deterministic(record_ops=False):
            return self._denoise(rows)

    def _denoise(self, rows: Sequence[PromptRow]) -> torch.Tensor:
        pipe, settings, n = self.pipe, self.settings, len(rows)
        generators = self.generators(rows)
        scales = [float(row.guidance) if settings.guidance is None else float(settings.guidance) for row in rows]
        guidance = torch.tensor(scales, device=self.device, dtype=self.dtype)
        # Rows at guidance <= 1 use the conditional prediction alone, as the diffusers pipeline does; a
        # family with embedded guidance (FLUX) never runs an unconditional pass.
        use_cfg = guidance > 1.0 if not self.family.embedded_guidance else torch.zeros_like(guidance, dtype=torch.bool)
        any_cfg = bool(use_cfg.any())

        cond = self.condition([row.text for row in rows], rows)
        guard = getattr(pipe, "trce_guard", None)
        if guard is not None and self.family.name not in guard.families:
            raise ConfigError(f"the {guard.name} guard runs on {', '.join(guard.families)} models; this is a {self.family.name} model")
        if guard is not None and getattr(guard, "retokenizes_prompts", False) and any(lt.learned_sha(r) for r in rows):
            raise ConfigError(f"the {guard.name} guard re-tokenises prompt text and cannot see a learned token embedding")
        if guard is not None:  # an inference-time eraser owns every step's prediction
            state = guard.prepare(self, [row.text for row in rows], self.unconditional().expand(n), cond)
        context = self.unconditional().expand(n).concat(cond) if any_cfg else cond
        context = self.family.with_image(context, pipe, settings.height, settings.width)

        scheduler = make_scheduler(pipe, settings.scheduler)
        shape = self.family.latent_shape(pipe, n, settings.height, settings.width)
        self.family.set_timesteps(pipe, scheduler, settings.steps, shape, self.device)
        latents = self.initial_latents(rows, generators, getattr(scheduler, "init_noise_sigma", 1.0))
        latents = self.family.pack(latents)
        step_kwargs = {"generator": generators} if "generator" in inspect.signature(scheduler.step).parameters else {}
        scales_input = hasattr(scheduler, "scale_model_input")  # flow-matching schedulers take latents as they are

        for step, t in enumerate(scheduler.timesteps):
            if guard is not None:
                noise = guard.step_noise(pipe.unet, scheduler.scale_model_input(latents, t), t, step, guidance, state)
                latents = scheduler.step(noise, t, latents, **step_kwargs).prev_sample
                continue
            model_input = torch.cat([latents, latents]) if any_cfg else latents
            if scales_input:
                model_input = scheduler.scale_model_input(model_input, t)
            noise = self.family.predict(pipe, model_input, t, context, guidance)
            if any_cfg:
                uncond_noise, cond_noise = noise.chunk(2)
                g = guidance.view(-1, *[1] * (noise.dim() - 1))
                guided = uncond_noise + g * (cond_noise - uncond_noise)
                noise = torch.where(use_cfg.view(-1, *[1] * (noise.dim() - 1)), guided, cond_noise)
            latents = scheduler.step(noise, t, latents, **step_kwargs).prev_sample
        return latents

    @torch.no_grad()
    def decode_float(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float32 images in [0, 1], unrounded, for callers that measure before quantising."""
        vae_latents = self.family.vae_latents(self.pipe, latents, self.settings.height, self.settings.width)
        images = self.pipe.vae.decode(vae_latents).sample
        return (images / 2 + 0.5).clamp(0, 1).float()

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        images = self.decode_float(latents).permute(0, 2, 3, 1).cpu().numpy()
        return (images * 255).round().astype(np.uint8)
