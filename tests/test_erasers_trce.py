"""TRCE specifics: the stage-1 edit's effect, row selection in default vs reference mode, the stage-2
hinge loss, and config parsing (TOML, --set)."""

from __future__ import annotations

import pytest

from tolerance import assert_paths_agree

from trce_audit.data.concepts import Concept
from trce_audit.errors import ConfigError

CONCEPT = Concept("nudity", (("nude", "a person wearing clothes"), ("naked body", "a clothed body")))
CAPTIONS = [
    "a dog sleeping on a couch", "two people riding bikes", "a plate of pasta", "a red bus on a street", "a cat",
    "a bowl of fruit on a wooden table", "a man surfing a big wave", "children playing football in a park",
]


@pytest.fixture(scope="module")
def tiny_pipe():
    import torch

    from trce_audit.models.tiny import build_pipeline

    torch.set_num_threads(2)
    return build_pipeline("tiny", seed=0)


def _fresh(tiny_pipe):
    import copy

    return copy.deepcopy(tiny_pipe)


def _context(tmp_path, **kw):
    from trce_audit.erasers.base import EraseContext

    return EraseContext(cache_dir=tmp_path, captions=CAPTIONS, **kw)


def _first_eot_rows(pipe, config):
    import torch

    from trce_audit.erasers.common import encode_prompts
    from trce_audit.erasers.trce.stage1 import edit_prompts, first_eot_index

    items = edit_prompts(CONCEPT, config)
    bad = encode_prompts(pipe, [i.malicious for i in items], "cpu")
    good = encode_prompts(pipe, [i.safe for i in items], "cpu")
    c_bad = torch.stack([bad[k, first_eot_index(pipe.tokenizer, i.malicious, False)] for k, i in enumerate(items)])
    c_good = torch.stack([good[k, first_eot_index(pipe.tokenizer, i.safe, False)] for k, i in enumerate(items)])
    return c_bad, c_good


@pytest.mark.parametrize("preserve_scale, closer, caption_change", [(1e-2, 0.2, 0.3), (1.0, 0.95, 0.05)])
def test_stage1_moves_malicious_rows_to_safe_targets_and_keeps_captions(tiny_pipe, tmp_path, preserve_scale, closer, caption_change):
    from trce_audit.erasers.common import encode_prompts
    from trce_audit.models.families.sd import cross_attention_projections
    from trce_audit.erasers.trce import TRCE
    from trce_audit.erasers.trce.stage1 import run_stage1

    pipe = _fresh(tiny_pipe)
    config = TRCE.make_config(overrides={"concept_num": 2, "augment_num": 4, "preserve_scale": preserve_scale})
    c_bad, c_good = _first_eot_rows(pipe, config)
    captions = encode_prompts(pipe, CAPTIONS, "cpu").reshape(-1, c_bad.shape[1])
    layers = cross_attention_projections(pipe.unet)
    before = {name: layer.weight.detach().clone() for name, layer in layers}
    run_stage1(pipe, CONCEPT, config, _context(tmp_path))
    for name, layer in layers:
        old, new = before[name], layer.weight.detach()
        target = c_good @ old.T
        dist_before = (c_bad @ old.T - target).norm(dim=1).mean()
        dist_after = (c_bad @ new.T - target).norm(dim=1).mean()
        assert dist_after < closer * dist_before, name
        moved = (captions @ new.T - captions @ old.T).norm() / (captions @ old.T).norm()
        assert moved < caption_change, name


def test_stage1_prior_is_cached(tiny_pipe, tmp_path):
    from trce_audit.erasers.trce import TRCE
    from trce_audit.erasers.trce.stage1 import run_stage1

    config = TRCE.make_config(overrides={"concept_num": 1, "augment_num": 1})
    first = run_stage1(_fresh(tiny_pipe), CONCEPT, config, _context(tmp_path, model_fingerprint="m1"))
    again = run_stage1(_fresh(tiny_pipe), CONCEPT, config, _context(tmp_path, model_fingerprint="m1"))
    other = run_stage1(_fresh(tiny_pipe), CONCEPT, config.updated({"prior_rows": "prompt"}), _context(tmp_path, model_fingerprint="m1"))
    assert not first["prior"]["cache_hit"] and again["prior"]["cache_hit"] and not other["prior"]["cache_hit"]
    assert first["prior"]["cache"] == again["prior"]["cache"] != other["prior"]["cache"]


def test_first_eot_index_counts_tokens_not_words(tiny_pipe):
    from trce_audit.erasers.trce.stage1 import EditPrompt, first_eot_index, row_map

    tok = tiny_pipe.tokenizer
    prompt = "a photo of nude"  # the tiny tokenizer splits every word into characters
    ids = tok(prompt, padding="max_length", max_length=tok.model_max_length).input_ids
    default, reference = first_eot_index(tok, prompt, False), first_eot_index(tok, prompt, True)
    assert reference == 5 and default == len("aphotoofnude") + 1
    assert ids[default] == tok.eos_token_id and ids[default - 1] != tok.eos_token_id
    assert ids[reference] != tok.eos_token_id  # the reference's row is a character of "photo"
    item = EditPrompt(prompt, "a photo of a person wearing clothes", "nude")
    dflt, ref = row_map(tok, item, (1, 1, 1, 1), False), row_map(tok, item, (1, 1, 1, 1), True)
    assert ref.malicious == (0, 5, 76, 4) and ref.weights == (1.0, 1.0, 71.0, 1.0)  # 77 - 4 words - 2
    assert dflt.malicious[:2] == (0, default)
    assert set(dflt.malicious[2:]) >= set(range(default + 1, 77)) | {9, 10, 11, 12}  # padding rows, keyword chars
    assert row_map(tok, item, (0, 1, 0, 0), False).malicious == (default,)


def test_reference_mode_changes_the_edit(tiny_pipe, tmp_path):
    import torch

    from trce_audit.models.families.sd import cross_attention_projections
    from trce_audit.erasers.trce import TRCE
    from trce_audit.erasers.trce.stage1 import run_stage1

    weights = {}
    for mode in ("default", "reference"):
        pipe = _fresh(tiny_pipe)
        config = TRCE.make_config(overrides={"concept_num": 2, "augment_num": 2, "mode": mode, "preserve_scale": 0.1})
        stats = run_stage1(pipe, CONCEPT, config, _context(tmp_path))
        weights[mode] = cross_attention_projections(pipe.unet)[0][1].weight.detach().clone()
        assert stats["preserve_scale"] == 0.1
    assert not torch.allclose(weights["default"], weights["reference"], atol=1e-4)
    assert TRCE.make_config(overrides={"mode": "reference"}).effective_preserve_scale == 0.01
    assert TRCE.make_config().effective_preserve_scale == 1e-4


def test_hinge_loss_sign_and_gradient():
    import torch

    from trce_audit.erasers.trce.stage2 import hinge_loss

    torch.manual_seed(0)
    f_safe, f_unsafe = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    assert torch.all(hinge_loss(f_safe, f_safe, f_unsafe, 1.0, 0.01) == 0)
    assert torch.all(hinge_loss(f_unsafe, f_safe, f_unsafe, 1.0, 0.01) > 1.0)
    # the margin: equal distances still cost m
    middle = (f_safe + f_unsafe) / 2
    distance = float(((middle - f_safe) ** 2).mean(dim=(1, 2, 3)).max())
    # two means of 256 squares cancel: their rounding is relative to the distances, not to m
    assert_paths_agree(hinge_loss(middle, f_safe, f_unsafe, 1.0, 0.01), torch.full((2,), 0.01), terms=256, scale=distance)
    eps = f_unsafe.clone().requires_grad_(True)
    loss = hinge_loss(eps, f_safe, f_unsafe, 1.0, 0.01).sum()
    loss.backward()
    with torch.no_grad():
        stepped = eps - 0.5 * eps.grad
    assert hinge_loss(stepped, f_safe, f_unsafe, 1.0, 0.01).sum() < loss


def test_a_stage2_step_on_the_unet_lowers_the_hinge(tiny_pipe):
    import torch

    from trce_audit.erasers.common import encode_prompts, frozen_copy, select_parameters
    from trce_audit.erasers.trce.stage2 import guided, hinge_loss, is_stage2_trainable

    pipe = _fresh(tiny_pipe)
    reference = frozen_copy(pipe.unet)
    emb = encode_prompts(pipe, ["a photo of nude", "a photo of a person wearing clothes", ""], "cpu")
    x, t = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([900])
    with torch.no_grad():
        bad, good, null = (reference(x, t, encoder_hidden_states=emb[i : i + 1]).sample for i in range(3))
    f_safe, f_unsafe = guided(good, null, 15.0), guided(bad, null, 15.0)
    params = [p for _, p in select_parameters(pipe.unet, is_stage2_trainable)]
    assert params and all(is_stage2_trainable(n) for n, p in pipe.unet.named_parameters() if p.requires_grad)

    def loss():
        return hinge_loss(pipe.unet(x, t, encoder_hidden_states=emb[0:1]).sample, f_safe, f_unsafe, 1.0, 0.01).sum()

    start = loss()
    assert start > 0  # the untouched model predicts the unsafe direction
    start.backward()
    with torch.no_grad():
        for p in params:
            p -= 1e-3 * p.grad
    assert loss() < start


def test_stage2_plan_default_vs_reference():
    from trce_audit.erasers.trce import TRCE
    from trce_audit.erasers.trce.stage2 import make_plan

    timesteps = list(range(980, -1, -20))
    config = TRCE.make_config(overrides={"images_per_prompt": 2, "n_uncond": 8})
    plan = make_plan(CONCEPT, config, timesteps, 1000)
    assert len(plan.malicious) == 3 * 2 * 2 and len(plan.prompts) == 4
    assert all(s.state <= 25 and s.timestep == timesteps[s.state] for s in plan.malicious)
    assert all(s is not None and s.timestep == timesteps[s.state] for b in plan.regulariser for s in b)
    ref = make_plan(CONCEPT, config.updated({"mode": "reference"}), timesteps, 1000)
    assert [s.trajectory for s in ref.malicious[:4]] == [0, 1, 2, 3]  # the reference never shuffles
    for s in ref.malicious:  # the latent after step s with exactly step s's timestep (the stored t wins)
        assert 1 <= s.state <= 26 and s.timestep == timesteps[s.state - 1]
    # the regulariser keeps its drawn t: somewhere in step r's interval, not always its start
    drawn = [s for b in ref.regulariser for s in b if s is not None]
    assert all((49 - (s.state - 1)) * 20 <= s.timestep < (50 - (s.state - 1)) * 20 for s in drawn)
    assert any(s.timestep != timesteps[s.state - 1] for s in drawn)
    # regulariser files (i·R + j) mod n with i the index within the epoch: every epoch reuses the same ones
    for it in (1, 4):
        for j, s in enumerate(ref.regulariser[it]):
            assert s is None or s.trajectory == ((it % 4) * 4 + j) % 8


def test_unsafe_gets_the_references_unsafe_setup():
    from trce_audit.erasers.trce import TRCE
    from trce_audit.erasers.trce.stage2 import make_plan, trajectory_prompts

    config = TRCE.make_config(concept="unsafe")
    assert (config.preset, config.pairs_stage2, config.concept_num) == ("unsafe", 60, 20)
    assert config.trajectory_template == "an image depicting {}"
    assert config.updated({"mode": "reference"}).effective_preserve_scale == 0.02
    assert config.effective_preserve_scale == pytest.approx(0.02**2)
    nudity = TRCE.make_config(concept="nudity")
    assert (nudity.preset, nudity.pairs_stage2, nudity.trajectory_template) == ("sexual", 20, "a photo of {}")
    assert TRCE.make_config(world="pocket", concept="unsafe").preset == "sexual"  # the preset is SD's
    many = Concept("unsafe", tuple((f"bad {i}", f"good {i}") for i in range(70)))
    prompts = trajectory_prompts(many, config)
    assert len(prompts) == 60 * 5 and prompts[0] == ("an image depicting bad 0", "an image depicting good 0")
    # reference mode: regulariser files (i·4 + j) mod 2000, so 300 trajectories reach index 1199
    ref = make_plan(many, config.updated({"mode": "reference", "iterations": 300}), list(range(980, -1, -20)), 1000)
    assert ref.n_uncond == 1200
    for it in (0, 150, 299):
        assert all(s is None or s.trajectory == (it * 4 + j) % 2000 for j, s in enumerate(ref.regulariser[it]))
    assert max(s.trajectory for b in ref.regulariser for s in b if s) <= 1199


def test_config_file_and_overrides(tmp_path):
    from trce_audit.erasers.trce import TRCE

    path = tmp_path / "trce.toml"
    path.write_text('[trce]\nlr = 2e-6\ntoken_weights = [1, 1, 0, 0]\nmode = "reference"\n')
    config = TRCE.make_config(config_file=path, overrides={"epochs": "5", "iterations": "none", "token_weights": "0,1,0,0.5"})
    assert (config.lr, config.mode, config.epochs, config.iterations) == (2e-6, "reference", 5, None)
    assert config.token_weights == (0.0, 1.0, 0.0, 0.5)
    pocket = TRCE.make_config(world="pocket")
    assert pocket.caption_set == "pocket-general" and pocket.lr > TRCE.make_config().lr


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"nope": "1"}, "unknown config key 'nope'"),
        ({"epochs": "2.5"}, "config key 'epochs' expects an integer"),
        ({"lr": "fast"}, "config key 'lr' expects a number"),
        ({"mode": "paper"}, "config key 'mode' must be one of default, reference"),
        ({"token_weights": "1,1"}, "'token_weights' needs 4 numbers"),
        ({"max_early_step": "60"}, "'max_early_step' must lie in"),
        ({"trajectory_template": "a photo"}, "must contain {}"),
    ],
)
def test_config_errors_are_one_line(overrides, message):
    from trce_audit.erasers.trce import TRCE

    with pytest.raises(ConfigError) as info:
        TRCE.make_config(overrides=overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_config_file_errors(tmp_path):
    from trce_audit.erasers.uce import UCE

    with pytest.raises(ConfigError, match="does not exist"):
        UCE.make_config(config_file=tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("lamb = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        UCE.make_config(config_file=bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("lambda = 0.1\n")
    with pytest.raises(ConfigError, match=f"unknown config key 'lambda' in {unknown}"):
        UCE.make_config(config_file=unknown)
