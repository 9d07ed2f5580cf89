"""SPEED and RECE specifics: SPEED's invariance constraint and null-space update, RECE's adversarial
embeddings and re-erasure, and their config errors."""

from __future__ import annotations

import pytest

from tolerance import assert_paths_agree

from trce_audit.data.concepts import Concept
from trce_audit.erasers.base import EraseContext

CONCEPT = Concept("nudity", (("nude", "a person wearing clothes"), ("naked body", "a clothed body")))
CAPTIONS = ["a dog sleeping on a couch", "two people riding bikes", "a plate of pasta", "a red bus on a street", "a cat"]


@pytest.fixture()
def pipe():
    from trce_audit.models.tiny import build_pipeline

    return build_pipeline("tiny", seed=0)


def _outputs(pipe, prompt: str):
    from trce_audit.erasers.common import encode_prompts
    from trce_audit.models.families.sd import cross_attention_projections

    rows = encode_prompts(pipe, [prompt], "cpu")[0].double()
    return [rows @ layer.weight.data.double().T for _, layer in cross_attention_projections(pipe.unet, ("to_v",))]


def test_speed_keeps_the_invariant_rows_and_moves_the_target(pipe, tmp_path):
    import torch

    from trce_audit.erasers.speed import SPEED

    before_null, before_target = _outputs(pipe, ""), _outputs(pipe, "nudity")
    anchor = _outputs(pipe, "")
    config = SPEED.make_config(overrides={"lamb": 0.0, "threshold": 1e9})  # λ = 0: the constraint is exact
    SPEED(config).erase(pipe, CONCEPT, context=EraseContext(cache_dir=tmp_path))
    after_null, after_target = _outputs(pipe, ""), _outputs(pipe, "nudity")
    for b, a in zip(before_null, after_null):  # the empty prompt's [SoT] row is one of the invariant rows
        # exact in the float64 solve; what remains is the edited weights' float32 storage over 32 inputs
        assert_paths_agree(a[0], b[0], terms=32, dtype="float32")
    moved = [(a - b).norm() for a, b in zip(after_target, before_target)]
    assert all(m > 1e-3 for m in moved)
    # the edit maps the target's rows towards the empty prompt's (its anchor)
    assert sum((a - g).norm() for a, g in zip(after_target, anchor)) < sum((b - g).norm() for b, g in zip(before_target, anchor))


def test_speed_edit_lies_in_the_null_space_of_the_retained_rows(pipe, tmp_path):
    import torch

    from trce_audit.erasers.speed import SPEED
    from trce_audit.erasers.uce import last_token_rows

    keep = last_token_rows(pipe, CAPTIONS, "cpu")
    before = [w.clone() for w in _weights(pipe)]
    config = SPEED.make_config(overrides={"aug_num": 0, "n_retain": 5, "caption_set": "coco-3k", "threshold": 1e-6})
    SPEED(config).erase(pipe, CONCEPT, context=EraseContext(cache_dir=tmp_path, captions=CAPTIONS))
    deltas = [a - b for a, b in zip(_weights(pipe), before)]
    assert any(d.norm() > 1e-4 for d in deltas)
    weight_scale = max(float(w.abs().max()) for w in _weights(pipe))
    for d in deltas:  # 5 captions span 5 directions: the update leaves all of them alone
        # exact in float64; the weights are stored in float32, rounded relative to their own size
        product = keep @ d.T
        assert_paths_agree(product, torch.zeros_like(product), terms=32, dtype="float32", scale=float(keep.abs().max()) * weight_scale)


def _weights(pipe):
    from trce_audit.models.families.sd import cross_attention_projections

    return [layer.weight.data.double() for _, layer in cross_attention_projections(pipe.unet, ("to_v",))]


def test_kmeans_centres_are_seeded_and_separate_clusters():
    import torch

    from trce_audit.erasers.speed.edit import kmeans_centres

    rows = torch.cat([torch.zeros(5, 2), torch.ones(5, 2) * 10, torch.tensor([[0.0, 10.0]] * 5)]).double()
    centres = kmeans_centres(rows, 3, seed=0)
    assert torch.equal(centres, kmeans_centres(rows, 3, seed=0))
    assert sorted(map(tuple, centres.round().tolist())) == [(0.0, 0.0), (0.0, 10.0), (10.0, 10.0)]


def test_rece_rounds_erase_the_embedding_uce_left_open(pipe, tmp_path):
    from trce_audit.models.tiny import build_pipeline
    from trce_audit.erasers.common import encode_prompts
    from trce_audit.models.families.sd import cross_attention_projections
    from trce_audit.erasers.rece import RECE, adversarial_rows
    from trce_audit.erasers.uce import UCE

    originals = [layer.weight.data.double().clone() for _, layer in cross_attention_projections(pipe.unet)]
    rows = encode_prompts(pipe, ["nudity"], "cpu")[0].double()
    guide = encode_prompts(pipe, [" "], "cpu")[0].double()

    def gap(current_rows):  # how far the edited projections' output for these rows is from the guide's
        return sum((current_rows @ layer.weight.data.double().T - guide @ layer.weight.data.double().T).norm()
                   for _, layer in cross_attention_projections(pipe.unet))

    uce = UCE(UCE.make_config(overrides={"guide": "empty", "n_preserve": 0}))
    uce.erase(pipe, Concept("nudity", (("nudity", ""),)), context=EraseContext(cache_dir=tmp_path))
    adv = adversarial_rows(pipe, originals, rows, 0.1)
    # the adversarial rows reproduce the original model's output better than the concept's own rows
    layers = cross_attention_projections(pipe.unet)
    err_adv = sum((adv @ l.weight.data.double().T - rows @ w0.T).norm() for (_, l), w0 in zip(layers, originals))
    err_own = sum((rows @ l.weight.data.double().T - rows @ w0.T).norm() for (_, l), w0 in zip(layers, originals))
    assert err_adv < err_own
    open_gap = gap(adv)
    fresh = build_pipeline("tiny", seed=0)
    result = RECE(RECE.make_config(overrides={"epochs": 1})).erase(fresh, CONCEPT, context=EraseContext(cache_dir=tmp_path))
    pipe.unet.load_state_dict(fresh.unet.state_dict())
    assert gap(adv) < open_gap  # the round mapped that embedding onto the guide
    assert result.stats["uce_prompts"] == ["nudity"] and len(result.stats["adversarial_shift"]) == 1


@pytest.mark.parametrize(
    "eraser, overrides, message",
    [
        ("speed", {"retain_scale": 0}, "'retain_scale' must be > 0"),
        ("speed", {"params": "Q"}, "config key 'params' must be one of V, K, KV"),
        ("speed", {"n_retain": 3, "caption_set": ""}, "needs a caption_set"),
        ("rece", {"epochs": -1}, "'epochs' must be >= 0"),
        ("rece", {"regular_scale": 0}, "'regular_scale' must be > 0"),
    ],
)
def test_config_errors(eraser, overrides, message):
    from trce_audit import registry
    from trce_audit.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        registry.load("eraser", eraser).make_config(overrides=overrides)


def test_rece_starts_where_the_reference_does_for_nudity():
    """RECE's SD preset starts from UCE's older script: "nudity" (two BPE tokens) has its rows from the
    last content token to the end erased onto the same number of the guide " "'s rows, the empty
    prompt kept at scale 1, lamb 0.5 (unified-concept-editing train_erase.py, edit_model)."""
    from pathlib import Path

    from trce_audit.erasers.rece import RECEConfig, reference_start_rows
    from trce_audit.models.tiny import clip_tokenizer

    vocabulary = Path(__file__).resolve().parents[1] / "trce_audit" / "pocket" / "weights" / "pocket-sd" / "tokenizer"
    tokenizer = clip_tokenizer(vocabulary)  # CLIP's own BPE vocabulary, as SD 1.4's
    rows, guide_rows = reference_start_rows(tokenizer, "nudity", " ")
    assert (rows.start, rows.stop) == (2, 77) and (guide_rows.start, guide_rows.stop) == (0, 75)  # 75 rows each
    preset = RECEConfig.for_world("sd")
    assert (preset.uce_rows, preset.uce_keep_empty, preset.lamb, preset.erase_scale) == ("from-last", 1.0, 0.5, 1.0)
    assert (RECEConfig.for_world("pocket").uce_rows, RECEConfig.for_world("pocket").uce_keep_empty) == ("last", 0.0)
