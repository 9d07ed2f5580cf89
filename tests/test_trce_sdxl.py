"""TRCE on SDXL (tiny shape): stage 1's closed form reads both CLIP encoders' rows and maps each malicious
prompt's [EoT] row onto its safe twin's; stage 2 runs through SDXL's added conditioning and changes only its
trainable set."""

from __future__ import annotations

import torch

from trce_audit.data.concepts import Concept
from trce_audit.erasers.base import EraseContext
from trce_audit.erasers.common import encode_prompts
from trce_audit.erasers.trce import TRCE
from trce_audit.erasers.trce.config import TRCEConfig
from trce_audit.erasers.trce.stage1 import edit_prompts, first_eot_index
from trce_audit.erasers.trce.stage2 import is_stage2_trainable
from trce_audit.models.families.sd import cross_attention_projections
from trce_audit.models.tiny import build_pipeline

CONCEPT = Concept("nudity", (("nude", "a person wearing clothes"), ("naked body", "a clothed body")))
CAPTIONS = ["a dog on a beach", "a red car", "a bowl of fruit"]


def context(tmp_path, stages):
    return EraseContext(tmp_path, device="cpu", captions=lambda name, limit: CAPTIONS, stages=stages)


def test_stage1_maps_malicious_eot_rows_onto_the_safe_ones(tmp_path):
    pipe = build_pipeline("sdxl", seed=0)
    # the [EoT] rows alone, no prior, a negligible regulariser: two rows, so the map is exact
    config = TRCEConfig(concept_num=2, augment_num=1, token_weights=(0.0, 1.0, 0.0, 0.0), preserve_scale=0.0,
                        lamb=1e-8, caption_set="captions")
    items = edit_prompts(CONCEPT, config)  # the pairs as stage 1 phrases them (its templates)
    assert len(items) == 2
    bad_texts, good_texts = [i.malicious for i in items], [i.safe for i in items]
    bad, good = encode_prompts(pipe, bad_texts, "cpu").double(), encode_prompts(pipe, good_texts, "cpu").double()
    width = pipe.text_encoder.config.hidden_size + pipe.text_encoder_2.config.hidden_size
    assert bad.shape[-1] == width  # both encoders' rows, side by side
    rows = [(bad[i, first_eot_index(pipe.tokenizer, t, False)], good[i, first_eot_index(pipe.tokenizer, g, False)])
            for i, (t, g) in enumerate(zip(bad_texts, good_texts))]
    before = {name: layer.weight.detach().double().clone() for name, layer in cross_attention_projections(pipe.unet)}
    result = TRCE(config).erase(pipe, CONCEPT, context=context(tmp_path, (1,)))
    assert set(result.changed_params) == {f"unet.{name}.weight" for name in before}
    for name, layer in cross_attention_projections(pipe.unet):
        for c, c_safe in rows:
            target = before[name] @ c_safe
            # a least-squares map of two independent rows with λ = 1e-8: exact up to the float64 solve
            # and the float32 weights it is rounded to (|W|·|c| per output, a few ulps)
            bound = 16 * layer.weight.abs().max() * c.abs().sum() * 2**-23
            assert (layer.weight.double() @ c - target).abs().max() <= bound


def test_stage2_runs_and_changes_only_its_trainable_set(tmp_path):
    pipe = build_pipeline("sdxl", seed=0)
    config = TRCEConfig(concept_num=2, augment_num=1, preserve_scale=0.0, caption_set="captions", iterations=2,
                        images_per_prompt=1, steps=4, max_early_step=2, n_uncond=2, reg_batch_size=2, lr=1e-3,
                        latent_size=8)
    result = TRCE(config).erase(pipe, CONCEPT, context=context(tmp_path, (2,)))
    assert result.changed_params
    assert all(is_stage2_trainable(name) for name in result.changed_params)
    curve = result.losses["stage2_target"]
    assert len(curve) == 2 and all(torch.isfinite(torch.tensor(curve)))
