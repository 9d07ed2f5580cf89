"""TRCE on FLUX (tiny shape, an extension of ours). Stage 1: the closed form edits context_embedder on T5
rows (the first </s>) and the pooled-text projection on CLIP's pooled rows, mapping each malicious
prompt onto its safe twin when nothing else constrains it. Stage 2: the contrastive fine-tune on the
early flow-matching steps trains the joint blocks' text attention projections only; `trce-audit erase
trce` runs both stages and writes a folder FluxPipeline loads."""

from __future__ import annotations

import json

import pytest
import torch

from trce_audit.data.concepts import Concept
from trce_audit.erasers.base import EraseContext
from trce_audit.erasers.trce import TRCE
from trce_audit.erasers.trce.config import TRCEConfig
from trce_audit.erasers.trce.stage1 import edit_prompts
from trce_audit.erasers.trce.stage1_flux import encoded
from trce_audit.erasers.trce.stage2 import is_flux_stage2_trainable, make_plan
from trce_audit.erasers.trce.trajectories import stage2_scheduler, stage2_shape
from trce_audit.erasers.uce_families import FLUX_POOLED_PROJECTION, flux_t5_length
from trce_audit.errors import ConfigError
from trce_audit.models.families import load_family
from trce_audit.models.tiny import build_pipeline, save_pipeline

CONCEPT = Concept("nudity", (("nude", "a person wearing clothes"), ("naked body", "a clothed body")))
# Budgets that keep stage 2 on the tiny shape to seconds (its plumbing is under test, not the erasure).
QUICK_STAGE2 = dict(concept_num=2, augment_num=1, iterations=2, images_per_prompt=1, steps=4, max_early_step=2,
                    n_uncond=2, reg_batch_size=2, lr=1e-3, latent_size=8)


def test_stage1_maps_the_end_rows_and_pooled_rows_onto_the_safe_ones(tmp_path):
    pipe = build_pipeline("flux", seed=0)
    config = TRCEConfig(concept_num=2, augment_num=1, token_weights=(0.0, 1.0, 0.0, 0.0), preserve_scale=0.0, lamb=1e-8)
    items = edit_prompts(CONCEPT, config)
    length = flux_t5_length(pipe)
    bad, bad_pooled = encoded(pipe, [i.malicious for i in items], "cpu", length, 8)
    good, good_pooled = encoded(pipe, [i.safe for i in items], "cpu", length, 8)
    ends = [len(pipe.tokenizer_2(t, truncation=True, max_length=length).input_ids) - 1 for t in
            [i.malicious for i in items] + [i.safe for i in items]]
    rows = [(bad[k, ends[k]], good[k, ends[len(items) + k]], bad_pooled[k], good_pooled[k]) for k in range(len(items))]
    modules = dict(pipe.transformer.named_modules())
    t5_layer, pooled_layer = modules["context_embedder"], modules[FLUX_POOLED_PROJECTION]
    before = (t5_layer.weight.detach().double().clone(), pooled_layer.weight.detach().double().clone())
    result = TRCE(config).erase(pipe, CONCEPT, context=EraseContext(tmp_path, device="cpu", stages=(1,)))
    assert set(result.changed_params) == {"transformer.context_embedder.weight", f"transformer.{FLUX_POOLED_PROJECTION}.weight"}
    for c, c_safe, p, p_safe in rows:
        for layer, w, x, x_safe in ((t5_layer, before[0], c, c_safe), (pooled_layer, before[1], p, p_safe)):
            # two independent rows, λ = 1e-8: exact up to the float64 solve and the float32 weights
            bound = 16 * layer.weight.abs().max() * x.abs().sum() * 2**-23
            assert (layer.weight.double() @ x - w @ x_safe).abs().max() <= bound


def test_reference_mode_on_flux_is_one_line(tmp_path):
    pipe = build_pipeline("flux", seed=0)
    for stages in ((1,), (2,)):
        with pytest.raises(ConfigError, match="reference") as exc:
            TRCE(TRCEConfig(concept_num=2, augment_num=1, mode="reference")).erase(
                pipe, CONCEPT, context=EraseContext(tmp_path, device="cpu", stages=stages))
        assert "\n" not in str(exc.value)


def test_stage2_early_steps_are_the_high_noise_end_of_the_flow_schedule():
    pipe = build_pipeline("flux", seed=0)
    family, config = load_family("flux"), TRCEConfig(concept_num=2, images_per_prompt=2, steps=10, max_early_step=4, latent_size=8)
    scheduler = stage2_scheduler(pipe, family, config, stage2_shape(pipe, family, config), "cpu")
    timesteps = [t.item() for t in scheduler.timesteps]
    assert timesteps[0] == 1000.0 and timesteps == sorted(timesteps, reverse=True)  # sigma 1 (pure noise) first
    plan = make_plan(CONCEPT, config, timesteps, 1000)
    # the shifted sigmas are not integers: each latent keeps its step's exact timestep, never a rounded one
    assert all(s.state <= 4 and s.timestep == timesteps[s.state] for s in plan.malicious)
    assert any(s.timestep != int(s.timestep) for s in plan.malicious)
    with pytest.raises(ConfigError, match="latent_size"):  # FLUX packs 2x2 patches: an odd side is refused
        stage2_shape(pipe, family, TRCEConfig(latent_size=7))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])  # bf16: FLUX's own dtype (conditioning is encoded in fp32)
def test_stage2_runs_and_changes_only_its_trainable_set(tmp_path, dtype):
    pipe = build_pipeline("flux", seed=0, dtype=dtype)
    trainable = {f"transformer.{n}" for n, _ in pipe.transformer.named_parameters() if is_flux_stage2_trainable(n)}
    assert trainable and all(".attn.add_" in n and "single_" not in n for n in trainable)
    result = TRCE(TRCEConfig(**QUICK_STAGE2)).erase(pipe, CONCEPT, context=EraseContext(tmp_path, device="cpu", stages=(2,)))
    assert result.changed_params and set(result.changed_params) <= trainable
    for curve in (result.losses["stage2_target"], result.losses["stage2_reg"]):
        assert len(curve) == 2 and all(torch.isfinite(torch.tensor(curve)))


def test_erase_trce_on_a_flux_folder_writes_a_flux_pipeline(cli, tmp_path, monkeypatch):
    import trce_audit.data as data
    from diffusers import FluxPipeline

    monkeypatch.setattr(data, "load_concept", lambda name, **kw: CONCEPT, raising=False)
    folder = save_pipeline(tmp_path / "flux", shape="flux", seed=0)
    # no caption prior (preserve_scale 0) so that the test needs no data folder; λ keeps the solve regular
    budget = [f"{k}={v}" for k, v in {**QUICK_STAGE2, "preserve_scale": 0.0, "lamb": 1e-3}.items()]
    code, out, err = cli("erase", "trce", "--concept", "nudity", "--model", str(folder), "--json",
                         *[arg for item in budget for arg in ("--set", item)])
    assert code == 0, err
    record = json.loads(out)
    pipe = FluxPipeline.from_pretrained(record["path"])
    original = FluxPipeline.from_pretrained(folder)
    changed = {n for n, p in pipe.transformer.named_parameters() if not torch.equal(p, original.transformer.get_parameter(n))}
    stage1 = {"context_embedder.weight", f"{FLUX_POOLED_PROJECTION}.weight"}
    assert stage1 <= changed and any(is_flux_stage2_trainable(n) for n in changed)  # both stages ran
    assert all(n in stage1 or is_flux_stage2_trainable(n) for n in changed)
