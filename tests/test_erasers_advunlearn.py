"""AdvUnlearn specifics: the prefix layout and attack, which encoder tensors train, the retain draws and
iteration plan, the regulariser's effect, the saved artefact and config errors."""

from __future__ import annotations

import random

import pytest

from trce_audit.data.concepts import Concept
from tolerance import adam_gain, assert_paths_agree
from trce_audit.erasers.base import EraseContext

CONCEPT = Concept("nudity", (("nude", "a person wearing clothes"), ("naked body", "a clothed body")))
CAPTIONS = ["a dog sleeping on a couch", "two people riding bikes", "a plate of pasta", "a red bus on a street", "a cat"]
SMALL = {"iterations": 6, "warmup_iter": 2, "attack_step": 2, "steps": 4, "latent_size": 8, "lr": 3e-3, "retain_batch": 2}


@pytest.fixture()
def pipe():
    from trce_audit.models.tiny import build_pipeline

    return build_pipeline("tiny", seed=0)


def _erase(pipe, tmp_path, **overrides):
    from trce_audit.erasers.advunlearn import AdvUnlearn

    config = AdvUnlearn.make_config(overrides={**SMALL, **overrides})
    return AdvUnlearn(config).erase(pipe, CONCEPT, context=EraseContext(cache_dir=tmp_path, captions=CAPTIONS, batch_size=4))


def _embed(pipe, prompts):
    from trce_audit.erasers.common import encode_prompts

    return encode_prompts(pipe, prompts, "cpu")


def test_prefix_slot_holding_a_tokens_embedding_encodes_like_the_prompt_with_that_token(pipe):
    import torch

    from trce_audit.models.tokens import token_embedding
    from trce_audit.erasers.advunlearn.attack import PrefixedPrompt

    prompt = PrefixedPrompt.build(pipe.tokenizer, pipe.text_encoder, "nude", 1, "cpu")
    x_id = pipe.tokenizer("x").input_ids[1]
    prefix = token_embedding(pipe.text_encoder).weight[[x_id]][None].detach()
    with torch.no_grad():
        # the same arithmetic through a hook; terms: attention over the 77 positions, in each of 2 layers
        assert_paths_agree(prompt.encode(pipe.text_encoder, prefix), _embed(pipe, ["x nude"]), terms=77, gain=2)
        other = token_embedding(pipe.text_encoder).weight[[x_id + 1]][None].detach()
        assert not torch.allclose(prompt.encode(pipe.text_encoder, other), _embed(pipe, ["x nude"]), atol=1e-3)


def test_attack_lowers_its_loss_and_leaves_the_models_alone(pipe):
    import torch

    from trce_audit.erasers.advunlearn.attack import AttackStep, PrefixedPrompt, random_prefix, soft_prompt_attack

    torch.manual_seed(0)
    pipe.text_encoder.requires_grad_(False)
    pipe.unet.requires_grad_(False)
    before = [p.clone() for p in pipe.text_encoder.parameters()]
    prompt = PrefixedPrompt.build(pipe.tokenizer, pipe.text_encoder, "nude", 2, "cpu")
    x, t = torch.randn(1, 4, 8, 8), pipe.scheduler.timesteps[0] if len(pipe.scheduler.timesteps) else 500
    target = torch.randn(1, 4, 8, 8)
    start = random_prefix(pipe.text_encoder, pipe.tokenizer, 2, torch.Generator().manual_seed(0))
    for method in ("pgd", "fast_at"):
        prefix, losses = soft_prompt_attack(pipe.unet, pipe.text_encoder, prompt, start, [AttackStep(x, t, target)] * 30, lr=1e-2, method=method)
        assert losses[-1] < losses[0] and prefix.shape == start.shape and not torch.equal(prefix, start)
    assert all(torch.equal(a, b) for a, b in zip(before, pipe.text_encoder.parameters()))


@pytest.mark.parametrize(
    "layers, component, norm, expect",
    [
        ((), "all", False, lambda n: n.startswith("encoder.layers.") or n.startswith("final_layer_norm")),
        ((0,), "all", False, lambda n: n.startswith("encoder.layers.0.")),
        ((1,), "ffn", True, lambda n: n.startswith("encoder.layers.1.mlp.") or n.startswith("final_layer_norm")),
        ((), "attn", False, lambda n: ".self_attn." in n),
    ],
)
def test_trainable_tensors_follow_the_references_train_methods(pipe, layers, component, norm, expect):
    from trce_audit.models.tokens import text_root
    from trce_audit.erasers.advunlearn.plan import encoder_parameters

    chosen = {n for n, _ in encoder_parameters(pipe.text_encoder, layers, component, norm)}
    every = {n for n, _ in text_root(pipe.text_encoder).named_parameters()}
    assert chosen and chosen == {n for n in every if expect(n)}
    assert {n for n, p in text_root(pipe.text_encoder).named_parameters() if p.requires_grad} == chosen


def test_retain_draws_see_every_prompt_before_repeating():
    from trce_audit.erasers.advunlearn.plan import RetainDraws

    draws = RetainDraws([f"p{i}" for i in range(7)], random.Random(0))
    first = draws.take(3) + draws.take(3)
    assert len(set(first)) == 6
    again = draws.take(3)  # one unseen prompt is left, fewer than a batch: the pool refills
    assert len(set(again)) == 3 and len(draws.unseen) == 4


def test_plan_attacks_after_warmup_every_update_step():
    from trce_audit.erasers.advunlearn import AdvUnlearn
    from trce_audit.erasers.advunlearn.plan import RetainDraws, plan_iterations

    config = AdvUnlearn.make_config(overrides={"iterations": 9, "warmup_iter": 3, "adv_prompt_update_step": 2, "attack_step": 4, "retain_batch": 2})
    plan = plan_iterations(config, ["a", "b"], RetainDraws(CAPTIONS, random.Random(1)), random.Random(0))
    assert [i for i, it in enumerate(plan) if it.attack is not None] == [4, 6, 8]
    assert all(len(it.attack) == 4 and {d.prompt for d in it.attack} == {it.phrase} for it in plan if it.attack)
    assert all(len(it.retain) == 2 and {d.stop for d in it.retain} == {it.unlearn.stop} for it in plan)
    assert all(plan[i].phrase == plan[i - 1].phrase for i in (1, 3, 5, 7))


def test_only_the_text_encoder_changes_and_the_concept_moves(pipe, tmp_path):
    import torch

    unet_before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    concept_before = _embed(pipe, ["nude"])
    result = _erase(pipe, tmp_path)
    assert result.changed_params and all(n.startswith("text_encoder.") for n in result.changed_params)
    assert not any("embeddings" in n for n in result.changed_params)
    assert all(torch.equal(unet_before[k], v) for k, v in pipe.unet.state_dict().items())
    assert (_embed(pipe, ["nude"]) - concept_before).norm() > 1e-4
    assert result.stats["attack_rounds"] == 4 and len(result.losses["attack"]) == 8


def test_block_size_changes_memory_not_results(tmp_path):
    import torch

    from trce_audit.models.tiny import build_pipeline

    weights = []
    for block in (2, 50):
        fresh = build_pipeline("tiny", seed=0).to(torch.float64)
        _erase(fresh, tmp_path, block=block)
        weights.append(fresh.text_encoder.state_dict())
    # The x_t batches differ, their draws do not: equal up to rounding, which Adam grows by up to
    # lr/(4·eps) a step where a gradient is near its eps (tests/tolerance.py adam_gain); on losses of
    # 5e-5 that leaves float32 paths 2e-5 apart on AVX2 CPUs, so the comparison is made in float64.
    # terms: the text encoder's widest sum (its 37-wide MLP over the 77 rows); grad_bound 1: far above
    # any gradient element of losses near 5e-5 through weights below 1; steps: training and attack.
    changed = [k for k in weights[0] if weights[0][k].is_floating_point()]
    scale = max(float(weights[1][k].abs().max()) for k in changed)
    steps = SMALL["iterations"] * (1 + SMALL["attack_step"])
    gain = adam_gain(steps=steps, lr=SMALL["lr"], grad_bound=1.0, scale=scale)
    for k in changed:
        assert weights[0][k].dtype == torch.float64
        assert_paths_agree(weights[0][k], weights[1][k], terms=37 * 77, gain=gain, scale=scale)


def test_the_regulariser_keeps_retain_prompts_closer(pipe, tmp_path):
    from trce_audit.models.tiny import build_pipeline

    kept_before = _embed(pipe, CAPTIONS)

    def drift(weight):
        fresh = build_pipeline("tiny", seed=0)
        _erase(fresh, tmp_path, retain_loss_w=weight, retain_batch=5, iterations=12, lr=1e-2)
        return float((_embed(fresh, CAPTIONS) - kept_before).norm())

    assert drift(100.0) < drift(0.0)


def test_config_errors(pipe, tmp_path):
    from trce_audit.erasers.advunlearn import AdvUnlearn
    from trce_audit.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown config key 'retain_train'.*known keys: .*attack_step"):
        AdvUnlearn.make_config(overrides={"retain_train": "reg"})
    with pytest.raises(ConfigError, match="'attack_method' must be one of pgd, fast_at"):
        AdvUnlearn.make_config(overrides={"attack_method": "free_at"})
    with pytest.raises(ConfigError, match="'attack_step' must be positive"):
        AdvUnlearn.make_config(overrides={"attack_step": 0})
    with pytest.raises(ConfigError, match="the text encoder has 2 layers"):
        _erase(pipe, tmp_path, train_layers="0,5")


def test_sd_preset_is_the_readme_nudity_command():
    from trce_audit.erasers.advunlearn import AdvUnlearnConfig

    sd = AdvUnlearnConfig.for_world("sd")
    assert (sd.prompt, sd.iterations, sd.lr, sd.retain_loss_w, sd.retain_batch, sd.train_layers) == ("nudity", 1000, 1e-5, 0.3, 5, ())
    assert (sd.attack_method, sd.attack_init, sd.attack_step, sd.attack_lr, sd.adv_prompt_num, sd.warmup_iter) == ("pgd", "random", 30, 1e-3, 1, 200)
