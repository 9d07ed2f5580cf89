"""The families' training forward process (what fine-tuning and inversion attacks optimise): each one is
the process its own diffusers scheduler defines, and the denoiser is called on it as the sampler calls it."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler

from trce_audit.models.families import load_family, pipeline_family
from trce_audit.models.tiny import build_pipeline

SHAPES = ["tiny", "sdxl", "sd3", "flux"]


@pytest.fixture(scope="module", params=SHAPES)
def pipe(request):
    return build_pipeline(request.param, seed=0)


def latents(pipe, n=2, side=32, seed=0):
    family = load_family(pipeline_family(pipe))
    shape = family.latent_shape(pipe, n, side, side)
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)


def test_forward_process_is_the_schedulers_own(pipe):
    family = load_family(pipeline_family(pipe))
    x0, noise = latents(pipe)
    t = torch.tensor([0, family.train_timesteps(pipe) - 1])
    if family.name in ("sd", "sdxl"):
        reference = DDPMScheduler.from_config(pipe.scheduler.config).add_noise(x0, noise, t)
    else:
        # A freshly configured flow-matching scheduler holds the training schedule, noisiest first.
        scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
        timesteps = scheduler.timesteps[family.train_timesteps(pipe) - 1 - t]
        torch.testing.assert_close(family.model_timestep(pipe, t), timesteps.float())
        reference = scheduler.scale_noise(x0, timesteps, noise)
    # one multiply-add per element on values of order 1: float32 rounding, a few ulps
    torch.testing.assert_close(family.noised(pipe, x0, noise, t), reference, rtol=1e-6, atol=1e-6)


def test_flow_target_is_the_velocity_and_ddpm_target_the_noise(pipe):
    family = load_family(pipeline_family(pipe))
    x0, noise = latents(pipe)
    t = torch.tensor([10, 500])
    target = family.training_target(pipe, x0, noise, t)
    expected = noise - x0 if family.name in ("sd3", "flux") else noise
    assert torch.equal(target, expected)


def test_training_prediction_is_the_samplers_call_unpacked(pipe):
    family = load_family(pipeline_family(pipe))
    x0, noise = latents(pipe)
    t = torch.tensor([100, 900])
    side = x0.shape[-1] * pipe.vae_scale_factor
    with torch.no_grad():
        cond = family.encode(pipe, ["a red cross", "a blue circle"], "cpu", torch.float32, 16)
        x_t = family.noised(pipe, x0, noise, t)
        pred = family.training_prediction(pipe, x_t, t, cond)
        direct = family.predict(pipe, family.pack(x_t), family.model_timestep(pipe, t),
                                family.with_image(cond, pipe, side, side), torch.ones(2))
    assert pred.shape == x0.shape
    assert torch.equal(family.pack(pred), direct)


def test_encoded_latents_invert_what_the_vae_decodes(pipe):
    family = load_family(pipeline_family(pipe))
    x0, _ = latents(pipe)
    side = x0.shape[-1] * pipe.vae_scale_factor
    back = family.encoded_latents(pipe, family.vae_latents(pipe, family.pack(x0), side, side))
    # scale and shift there and back: float32 rounding of values of order 1
    torch.testing.assert_close(back, x0, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_training_loss_trains(shape):
    """One optimiser step on the family's loss lowers it on the same batch (a fresh pipe: this one changes)."""
    pipe = build_pipeline(shape, seed=0)
    family = load_family(pipeline_family(pipe))
    denoiser = getattr(pipe, family.denoiser)
    x0, noise = latents(pipe)
    t = torch.tensor([300, 700])
    with torch.no_grad():
        cond = family.encode(pipe, ["a red cross", "a blue circle"], "cpu", torch.float32, 16)
    params = [p for p in denoiser.parameters()]
    optimizer = torch.optim.SGD(params, lr=1e-2)

    def loss():
        pred = family.training_prediction(pipe, family.noised(pipe, x0, noise, t), t, cond)
        return torch.nn.functional.mse_loss(pred, family.training_target(pipe, x0, noise, t))

    before = loss()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        assert loss() < before
