"""ESD-x and ESD-x-strict on SDXL (tiny shape): the SDXL script's preset, its two parameter sets, and a
fine-tune that runs through SDXL's added conditioning and moves the erased phrase's prediction."""

from __future__ import annotations

import pytest
import torch

from trce_audit.data.concepts import Concept
from trce_audit.erasers.base import EraseContext
from trce_audit.erasers.esd import ESDX, ESDXStrict
from trce_audit.models.tiny import build_pipeline

CONCEPT = Concept("nudity", (("nude", "a person wearing clothes"),))


def test_the_sdxl_preset_is_the_sdxl_scripts():
    config = ESDX.make_config(family="sdxl")
    assert (config.lr, config.iterations, config.steps, config.start_guidance) == (2e-4, 200, 20, 7.0)
    assert ESDX.make_config() == ESDX.make_config(family="sd")  # SD's own defaults are untouched


@pytest.mark.parametrize("cls, allowed", [(ESDX, ("attn2.",)), (ESDXStrict, ("attn2.to_k.", "attn2.to_v."))])
def test_each_parameter_set_is_the_only_one_that_moves(tmp_path, cls, allowed):
    pipe = build_pipeline("sdxl", seed=0)
    config = cls.make_config(family="sdxl", overrides={"iterations": 3, "steps": 4, "latent_size": 8, "lr": 1e-2})
    result = cls(config).erase(pipe, CONCEPT, context=EraseContext(tmp_path, device="cpu"))
    assert result.changed_params
    assert all(any(part in name for part in allowed) for name in result.changed_params)
    if cls is ESDXStrict:  # keys and values of every cross-attention, queries and outputs untouched
        assert {n.rsplit(".", 2)[-2] for n in result.changed_params} == {"to_k", "to_v"}
    losses = result.losses["esd"]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))


def test_the_fine_tune_runs_on_a_half_precision_model(tmp_path):
    # the conditioning is encoded in fp32, the model's layers take bf16 only. Not fp16: Adam's eps (1e-8)
    # is 0 in fp16, so its first step on fp16 weights divides by zero (a matter of the optimiser, not this)
    pipe = build_pipeline("sdxl", seed=0, dtype=torch.bfloat16)
    config = ESDX.make_config(family="sdxl", overrides={"iterations": 3, "steps": 4, "latent_size": 8, "lr": 1e-2})
    result = ESDX(config).erase(pipe, CONCEPT, context=EraseContext(tmp_path, device="cpu"))
    assert result.changed_params and all("attn2." in name for name in result.changed_params)
    assert all(torch.isfinite(torch.tensor(result.losses["esd"])))
