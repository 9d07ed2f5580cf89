"""SLD as a guard on SDXL (tiny shape, an extension of ours): the guarded step is SLD's formula over three
SDXL predictions (zeroed negative, prompt, safety concept, each with pooled embedding and time ids), the
guarded folder samples other images than its base (SAFREE on SDXL: tests/test_safree_sdxl.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trce_audit.generation.engine import BatchSampler
from trce_audit.generation.settings import GenerationSettings
from trce_audit.guards.sld import SLDGuard
from trce_audit.models.tiny import build_pipeline
from trce_audit.records import PromptRow

CONFIG = {"warmup_steps": 0, "guidance_scale": 5000.0, "threshold": 1.0, "momentum_scale": 0.5, "mom_beta": 0.7,
          "safety_concept": "nudity, a naked body"}
ROWS = [PromptRow("a nude person on a beach", 1, 5.0), PromptRow("a red car", 2, 7.5)]
SETTINGS = GenerationSettings(steps=3, height=32, width=32, device="cpu")


@pytest.fixture(scope="module")
def pipe():
    return build_pipeline("sdxl", seed=0)


def test_the_guarded_step_is_slds_formula_over_sdxl_predictions():
    # float64: SLD's safety scale is |ε_c − ε_s|·5000 below saturation, which multiplies any rounding
    # difference between the batched and the separate calls by up to 5000 × the guidance
    pipe = build_pipeline("sdxl", seed=0).to(torch.float64)
    sampler = BatchSampler(pipe, GenerationSettings(steps=3, height=32, width=32, device="cpu", dtype="fp64").validate())
    guard = SLDGuard(CONFIG)
    n = len(ROWS)
    cond = sampler.condition([r.text for r in ROWS])
    state = guard.prepare(sampler, [r.text for r in ROWS], sampler.unconditional().expand(n), cond)
    shape = sampler.family.latent_shape(pipe, n, 32, 32)
    latents = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = torch.tensor(500)
    guidance = torch.tensor([5.0, 7.5], dtype=torch.float64)
    with torch.no_grad():
        got = guard.step_noise(pipe.unet, latents, t, 0, guidance, state)
        family = sampler.family

        def predict(c):
            return family.call_denoiser(pipe.unet, latents, t, family.with_image(c, pipe, 32, 32))

        eps_u = predict(sampler.unconditional().expand(n))
        eps_c = predict(cond)
        eps_s = predict(sampler.condition([CONFIG["safety_concept"]]).expand(n))
    assert torch.count_nonzero(sampler.unconditional().states) == 0  # SDXL's zeroed negative
    term, _ = guard.safety_term(eps_u, eps_c, eps_s, torch.zeros_like(eps_c))
    expected = eps_u + guidance.view(-1, 1, 1, 1) * (eps_c - eps_u - term)
    # one batched UNet call against three separate ones: float64 rounding of predictions of order 1,
    # amplified by at most 5000 (the safety scale) × 7.5 (the guidance): far below 1e-8
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-8)


def test_a_guarded_sdxl_samples_other_images_and_repeats(pipe):
    settings = SETTINGS.validate()
    plain = BatchSampler(pipe, settings).sample(ROWS)
    pipe.trce_guard = SLDGuard(CONFIG)
    try:
        guarded = BatchSampler(pipe, settings).sample(ROWS)
        again = BatchSampler(pipe, settings).sample(ROWS)
    finally:
        pipe.trce_guard = None
    assert not np.array_equal(plain, guarded)
    assert np.array_equal(guarded, again)
