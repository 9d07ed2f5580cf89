"""TRCE stage 1 on FLUX (tiny shape, an extension of ours): the closed form edits context_embedder on T5
rows (the first </s>) and the pooled-text projection on CLIP's pooled rows, mapping each malicious
prompt onto its safe twin when nothing else constrains it; stage 2 is refused in one line."""

from __future__ import annotations

import pytest
import torch

from trce_audit.data.concepts import Concept
from trce_audit.erasers.base import EraseContext
from trce_audit.erasers.trce import TRCE
from trce_audit.erasers.trce.config import TRCEConfig
from trce_audit.erasers.trce.stage1 import edit_prompts
from trce_audit.erasers.trce.stage1_flux import encoded
from trce_audit.erasers.uce_families import FLUX_POOLED_PROJECTION, flux_t5_length
from trce_audit.errors import ConfigError
from trce_audit.models.tiny import build_pipeline

CONCEPT = Concept("nudity", (("nude", "a person wearing clothes"), ("naked body", "a clothed body")))


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


def test_stage2_on_flux_is_one_line(tmp_path):
    pipe = build_pipeline("flux", seed=0)
    with pytest.raises(ConfigError) as exc:
        TRCE(TRCEConfig(concept_num=2, augment_num=1)).erase(pipe, CONCEPT, context=EraseContext(tmp_path, device="cpu", stages=(1, 2)))
    assert "\n" not in str(exc.value) and "--stages 1" in str(exc.value)
    with pytest.raises(ConfigError, match="reference"):
        TRCE(TRCEConfig(concept_num=2, augment_num=1, mode="reference")).erase(
            pipe, CONCEPT, context=EraseContext(tmp_path, device="cpu", stages=(1,)))
