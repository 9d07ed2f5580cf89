"""UCE on SDXL and FLUX (tiny shapes): each edited projection is the closed form of a direct solve, the
concept's rows land on the guide's outputs when nothing else constrains them, and only the projections
that read the text change."""

from __future__ import annotations

import pytest
import torch

from trce_audit.data.concepts import Concept
from trce_audit.erasers.base import EraseContext
from trce_audit.erasers.uce import UCE, UCEConfig
from trce_audit.erasers.uce_families import edit_groups, flux_t5_length
from trce_audit.models.tiny import build_pipeline

CONCEPT = Concept("nudity", (("nude", "a person wearing clothes"), ("naked body", "a clothed body")))
CAPTIONS = ["a dog on a beach", "a red car", "a bowl of fruit"]


def erase(pipe, cache, **config):
    eraser = UCE(UCEConfig(caption_set="captions", **config))
    return eraser.erase(pipe, CONCEPT, context=EraseContext(cache, device="cpu", captions=lambda name, limit: CAPTIONS))


@pytest.mark.parametrize("shape", ["sdxl", "flux"])
def test_each_projection_is_the_direct_solve(shape, tmp_path):
    pipe = build_pipeline(shape, seed=0)
    groups = edit_groups(pipe, "cpu")
    before = {id(layer): layer.weight.detach().double().clone() for layers, _ in groups for _, layer in layers}
    inputs = [(layers, rows(["nude", "naked body"]), rows(["a person wearing clothes", "a clothed body"]), rows(CAPTIONS))
              for layers, rows in groups]
    result = erase(pipe, tmp_path, n_preserve=3, lamb=0.5, erase_scale=1.0, preserve_scale=1.0)
    for layers, c, g, k in inputs:
        for _, layer in layers:
            w = before[id(layer)]
            # the paper's sums, term by term: (λW + Σ W g cᵀ + Σ W k kᵀ)(λI + Σ c cᵀ + Σ k kᵀ)⁻¹
            eye = torch.eye(w.shape[1], dtype=torch.float64)
            mat1 = 0.5 * w + sum(torch.outer(w @ gi, ci) for gi, ci in zip(g, c)) + sum(torch.outer(w @ ki, ki) for ki in k)
            mat2 = 0.5 * eye + sum(torch.outer(ci, ci) for ci in c) + sum(torch.outer(ki, ki) for ki in k)
            direct = mat1 @ torch.linalg.inv(mat2)
            # two float64 solves of the same well-conditioned system (λ = 0.5 bounds its condition
            # number), the edit then rounded to the layer's float32: float32 rounding of |W| entries
            scale = w.abs().max().item()
            torch.testing.assert_close(layer.weight.double(), direct, rtol=0, atol=4 * scale * 2**-23)
    edited = {f"{('unet' if shape == 'sdxl' else 'transformer')}.{name}.weight" for layers, _ in groups for name, _ in layers}
    assert set(result.changed_params) == edited


@pytest.mark.parametrize("shape", ["sdxl", "flux"])
def test_without_regulariser_the_concept_lands_on_its_guide(shape, tmp_path):
    pipe = build_pipeline(shape, seed=0)
    groups = edit_groups(pipe, "cpu")
    rows = [(layers, pick(["nude"]), pick(["a person wearing clothes"])) for layers, pick in groups]
    originals = {id(layer): layer.weight.detach().double().clone() for layers, _ in groups for _, layer in layers}
    erase(pipe, tmp_path, n_preserve=0, lamb=1e-6, erase_scale=1.0, preserve_scale=0.0, preserve_concepts=("a red car",))
    for layers, c, g in rows:
        for _, layer in layers:
            target = originals[id(layer)] @ g[0]
            # a rank-one map with λ = 1e-6: W'c = W g up to λ/(|c|² + λ) of its size, plus float32 weights
            error = (layer.weight.double() @ c[0] - target).abs().max()
            assert error <= 1e-4 * target.abs().max() + 64 * c[0].abs().sum() * layer.weight.abs().max() * 2**-23


def test_flux_edits_by_module_name_and_reads_the_last_real_t5_token():
    pipe = build_pipeline("flux", seed=0)
    (t5_layers, t5_rows), (pooled_layers, pooled_rows) = edit_groups(pipe, "cpu")
    assert [name for name, _ in t5_layers] == ["context_embedder"]
    assert [name for name, _ in pooled_layers] == ["time_text_embed.text_embedder.linear_1"]
    length = flux_t5_length(pipe)  # the reference's: 512 for dev (a guidance embedding), 256 for schnell
    ids = pipe.tokenizer_2(["nude body"], padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        family_states = pipe.text_encoder_2(ids)[0]
    count = len(pipe.tokenizer_2("nude body").input_ids)  # content tokens and </s>
    torch.testing.assert_close(t5_rows(["nude body"])[0], family_states[0, count - 2].double())
    assert pooled_rows(["nude body"]).shape[-1] == pipe.transformer.config.pooled_projection_dim


def test_sd3_is_refused_in_one_line():
    assert "sd3" not in UCE.families
