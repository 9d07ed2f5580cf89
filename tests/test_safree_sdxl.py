"""SAFREE as a guard on SDXL (tiny shape), after the reference's SDXL pipeline: the guarded step equals
the reference's arithmetic over diffusers' own SDXL encoding (bigG's columns of the trigger tokens
projected, CLIP-L's columns and the pooled embedding kept, the concept phrases as the negative prompt),
the guard acts through nothing else, `trce-audit erase safree` writes a guarded SDXL folder that loads and
draws other images than its base, and neither guard runs on FLUX."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tolerance import assert_paths_agree
from trce_audit.erasers.safree import NUDITY_SPACE, SAFREE, SAFREEConfig
from trce_audit.errors import ConfigError
from trce_audit.generation.engine import BatchSampler
from trce_audit.generation.settings import GenerationSettings
from trce_audit.guards.safree import SAFREEGuard
from trce_audit.guards.sld import SLDGuard
from trce_audit.models.tiny import build_pipeline, save_pipeline
from trce_audit.records import PromptRow

CONFIG = {**SAFREEConfig.for_family("sdxl").as_dict(), "concept_space": ["nude", "naked body", "nudity"]}
ROWS = [PromptRow("a nude person on a beach", 1, 5.0), PromptRow("a red car parked on a street", 2, 7.5)]
SETTINGS = GenerationSettings(steps=3, height=32, width=32, device="cpu")
# The tiny SDXL UNet's longest accumulation: a 3×3 convolution over 64 channels.
UNET_TERMS = 9 * 64


def sampler(pipe, dtype="fp32"):
    return BatchSampler(pipe, GenerationSettings(steps=3, height=32, width=32, device="cpu", dtype=dtype).validate())


def test_the_sdxl_preset_is_the_sdxl_runs():
    sdxl, sd = SAFREE.make_config(family="sdxl"), SAFREE.make_config()
    assert sdxl.self_validation is False and sd.self_validation is True  # run_nudity_sdxl.sh passes no -svf
    assert {**sdxl.as_dict(), "self_validation": True} == sd.as_dict() == SAFREEConfig().as_dict()
    assert "sdxl" in SAFREE.families and "sdxl" in SAFREEGuard.families and "flux" not in SAFREEGuard.families


def reference_noise(pipe, text, latents, t, guidance, c):
    """One image's guided prediction as modified_stable_diffusion_xl_pipeline.py computes it: diffusers'
    encode_prompt with the joined phrases as negative prompt, safree_projection on
    text_embeddings[..., 768:] (768: CLIP-L's width), both predictions in separate UNet calls."""
    tok, enc = pipe.tokenizer_2, pipe.text_encoder_2
    first = pipe.text_encoder.config.hidden_size

    def projection_matrix(e):
        return e @ torch.pinverse(e.T @ e) @ e.T

    embeds, negative, pooled, negative_pooled = pipe.encode_prompt(
        text, device="cpu", do_classifier_free_guidance=True, negative_prompt=", ".join(c["concept_space"]))
    space = tok(c["concept_space"], padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    p_c = projection_matrix(enc(space)[0].T)
    ids = tok(text, padding="longest", return_tensors="pt").input_ids
    n_t = ids.shape[1] - 2
    masked = ids.repeat(n_t, 1)
    for i in range(n_t):
        masked[i, i + 1] = 0
    p_emb = enc(masked)[0]
    i_m_cs = torch.eye(p_c.shape[0], dtype=p_c.dtype) - p_c
    dist = torch.norm(i_m_cs @ p_emb.T, dim=0)
    means = torch.stack([torch.mean(torch.cat((dist[:i], dist[i + 1 :]))) for i in range(n_t)])
    ones = torch.ones(77)
    ones[1 : n_t + 1] = (dist < (1.0 + c["alpha"]) * means).float()
    text_e = embeds[0, :, first:]
    merged = torch.where(ones.unsqueeze(1).bool(), text_e, (i_m_cs @ projection_matrix(p_emb.T) @ text_e.T).T)
    states = embeds.clone()
    states[0, :, first:] = merged
    time_ids = torch.tensor([[32, 32, 0, 0, 32, 32]], dtype=embeds.dtype)

    def eps(hidden, pooled_):
        return pipe.unet(latents, t, encoder_hidden_states=hidden, added_cond_kwargs={"text_embeds": pooled_, "time_ids": time_ids}).sample

    eps_u, eps_c = eps(negative, negative_pooled), eps(states, pooled)
    return eps_u + guidance * (eps_c - eps_u), int(n_t - ones[1 : n_t + 1].sum())


def test_the_guarded_step_is_the_reference_sdxl_arithmetic():
    pipe = build_pipeline("sdxl", seed=0).to(torch.float64)  # float64: two paths compared (tests/tolerance.py)
    engine = sampler(pipe, "fp64")
    guard, texts, n = SAFREEGuard(CONFIG), [r.text for r in ROWS], len(ROWS)
    cond = engine.condition(texts)
    state = guard.prepare(engine, texts, engine.unconditional().expand(n), cond)
    first = pipe.text_encoder.config.hidden_size
    assert torch.equal(state["safe"][..., :first], cond.states[..., :first])  # CLIP-L's columns kept
    assert torch.equal(state["cond"].pooled, cond.pooled) and torch.count_nonzero(state["uncond"].pooled) > 0
    latents = torch.randn(engine.family.latent_shape(pipe, n, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t, guidance = torch.tensor(500), torch.tensor([r.guidance for r in ROWS], dtype=torch.float64)
    with torch.no_grad():
        got = guard.step_noise(pipe.unet, latents, t, 0, guidance, state)
        expected = [reference_noise(pipe, r.text, latents[i : i + 1], t, r.guidance, CONFIG) for i, r in enumerate(ROWS)]
    assert expected[0][1] >= 1  # the concept prompt has trigger tokens: the projection is exercised
    # one batched UNet call against separate ones, each scaled by the guidance
    assert_paths_agree(got, torch.cat([noise for noise, _ in expected]), terms=UNET_TERMS, gain=max(r.guidance for r in ROWS))


def test_without_triggers_or_negative_prompt_it_draws_the_base_images():
    """The guard acts through the trigger tokens and the negative prompt alone: with an α no distance
    reaches and the negative prompt off, it draws what the unguarded model draws; with the defaults, not."""
    pipe = build_pipeline("sdxl", seed=0).to(torch.float64)  # float64: steps × guidance grow rounding
    engine = sampler(pipe, "fp64")
    plain = engine.denoise(ROWS)
    inert = SAFREEGuard({**CONFIG, "alpha": 1e6, "negative_prompt": False})
    bigg = engine.condition([r.text for r in ROWS]).states[..., pipe.text_encoder.config.hidden_size :]
    plans = inert.plans(pipe.tokenizer_2, pipe.text_encoder_2, [r.text for r in ROWS], bigg)
    assert all(torch.equal(safe, row) for (safe, _), row in zip(plans, bigg))  # no token is a trigger
    results = {}
    for name, guard in (("inert", inert), ("default", SAFREEGuard(CONFIG))):
        pipe.trce_guard = guard
        try:
            results[name] = engine.denoise(ROWS)
        finally:
            pipe.trce_guard = None
    # the same predictions through the guard's UNet call: rounding of order 1, grown by steps × guidance
    assert_paths_agree(results["inert"], plain, terms=UNET_TERMS, gain=SETTINGS.steps * 7.5)
    # the defaults move the latents by about 2 (of up to 13): 1e-2 is far below that and far above the
    # float64 rounding the inert guard stays within (about 1e-10 here)
    assert (results["default"] - plain).abs().amax() > 1e-2


def test_erase_safree_on_an_sdxl_folder_writes_a_guarded_folder(shared_data, cli, tmp_path):
    from diffusers import StableDiffusionXLPipeline

    from trce_audit.models.resolve import load_pipeline, resolve_model

    folder = save_pipeline(tmp_path / "sdxl", shape="sdxl", seed=0)
    code, out, err = cli("erase", "safree", "--concept", "nudity", "--model", str(folder), "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["guard"] == "safree" and record["changed_params"] == 0
    StableDiffusionXLPipeline.from_pretrained(record["path"])  # loads as its family's pipeline
    guarded = load_pipeline(resolve_model(record["path"]))
    assert isinstance(guarded.trce_guard, SAFREEGuard)
    assert guarded.trce_guard.config["self_validation"] is False  # the SDXL preset
    assert guarded.trce_guard.config["concept_space"] == list(NUDITY_SPACE)  # the reference's nudity phrases
    settings = SETTINGS.validate()
    images = BatchSampler(guarded, settings).sample(ROWS[:1])
    assert np.array_equal(images, BatchSampler(guarded, settings).sample(ROWS[:1]))
    assert not np.array_equal(images, BatchSampler(load_pipeline(resolve_model(str(folder))), settings).sample(ROWS[:1]))


@pytest.mark.parametrize("guard", [SLDGuard({}), SAFREEGuard({})], ids=["sld", "safree"])
def test_no_guard_runs_on_flux(guard):
    pipe = build_pipeline("flux", seed=0)
    pipe.trce_guard = guard
    with pytest.raises(ConfigError) as exc:
        BatchSampler(pipe, SETTINGS.validate()).sample(ROWS[:1])
    assert "\n" not in str(exc.value) and "runs on sd, sdxl models; this is a flux model" in str(exc.value)
