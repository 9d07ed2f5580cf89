"""MACE specifics: the refinement's row pairing and closed form, the masked-attention LoRA, the fusion's
closed form, masks (user folder, pocket segmentation, cross-attention), presets and config errors."""

from __future__ import annotations

import pytest

from trce_audit.data.concepts import Concept
from trce_audit.errors import ConfigError
from tolerance import adam_gain, assert_paths_agree

CONCEPT = Concept("nudity", (("nude", "a person wearing clothes"), ("naked body", "a clothed body")))
CAPTIONS = ["a dog sleeping on a couch", "two people riding bikes", "a plate of pasta", "a red bus on a street", "a cat"]


@pytest.fixture()
def pipe():
    from trce_audit.models.tiny import build_pipeline

    return build_pipeline("tiny", seed=0)


def test_matched_rows_skip_the_concept_and_align_padding_from_the_end():
    from trce_audit.erasers.mace.closed_form import matched_rows

    # [SoT] nude in photo [EoT]  vs  [SoT] a person wearing in photo [EoT], 10 rows in all
    old, new = matched_rows([0, 9, 5, 6, 1], [0, 2, 3, 4, 5, 6, 1], length=10)
    assert old == [0, 2, 3, 4, 5, 6, 7]  # [SoT], "in photo [EoT]", then padding rows 5..7
    assert new == [0, 4, 5, 6, 7, 8, 9]  # the guide's matching rows; padding shifted by its 2 extra tokens
    assert matched_rows([0, 5, 1], [0, 5, 1], length=4) == ([0, 1, 2, 3], [0, 1, 2, 3])


def _key_outputs(pipe, rows):
    from trce_audit.models.families.sd import cross_attention_projections

    return [rows @ layer.weight.data.double().T for _, layer in cross_attention_projections(pipe.unet, ("to_k",))]


def test_refinement_moves_the_concepts_context_rows_towards_the_guide_and_keeps_the_prior(pipe):
    import torch

    from trce_audit.erasers.common import encode_prompts
    from trce_audit.erasers.mace.closed_form import refinement_rows
    from trce_audit.erasers.trce.stage1 import prior_moment
    from trce_audit.erasers.uce import closed_form_edit

    pairs = [("nude in a photo", "a person wearing clothes in a photo"), ("a picture of nude", "a picture of a person wearing clothes")]
    erase, guide = refinement_rows(pipe, pairs, "cpu")
    kept = encode_prompts(pipe, CAPTIONS, "cpu").double().flatten(0, 1)
    before_erase, before_guide, before_kept = (_key_outputs(pipe, r) for r in (erase, guide, kept))
    moment = prior_moment(pipe, CAPTIONS, "all", "cpu", 8)
    closed_form_edit(pipe, erase, guide, erase.new_zeros((0, erase.shape[1])), erase_scale=1.0, preserve_scale=1.0,
                     lamb=1e-3, keep_moment=moment)
    after_erase, after_kept = _key_outputs(pipe, erase), _key_outputs(pipe, kept)
    gap_before = sum(float((a - g).norm()) for a, g in zip(before_erase, before_guide))
    gap_after = sum(float((a - g).norm()) for a, g in zip(after_erase, before_guide))
    assert gap_after < 0.5 * gap_before
    drift = sum(float((a - b).norm()) for a, b in zip(after_kept, before_kept))
    assert drift < 0.5 * gap_before  # the captions' keys move far less than the concept rows did
    # without the prior the same edit moves the captions more
    from trce_audit.models.tiny import build_pipeline

    bare = build_pipeline("tiny", seed=0)
    closed_form_edit(bare, erase, guide, erase.new_zeros((0, erase.shape[1])), erase_scale=1.0, preserve_scale=0.0, lamb=1e-3)
    assert sum(float((a - b).norm()) for a, b in zip(_key_outputs(bare, kept), before_kept)) > drift
    assert torch.isfinite(after_erase[0]).all()


def test_concept_positions_take_the_phrase_and_with_the_pooler_every_eot_row(pipe):
    from trce_audit.erasers.mace.closed_form import concept_positions

    tokenizer = pipe.tokenizer  # one token per character
    plain = concept_positions(tokenizer, "a nude", "nude", use_pooler=False)
    assert plain.nonzero().flatten().tolist() == [2, 3, 4, 5]  # [SoT] a n u d e [EoT]
    pooled = concept_positions(tokenizer, "a nude", "nude", use_pooler=True)
    assert pooled.nonzero().flatten().tolist() == [2, 3, 4, 5] + list(range(6, 77))  # [EoT] and its padding


def _masked_loss(pipe, latents, t, states, positions, mask):
    import torch

    from trce_audit.erasers.mace.lora import ProbedCrossAttention, install, masked_attention_loss, restore

    recorded = []
    previous = install(pipe.unet, lambda name, m: ProbedCrossAttention(recorded.append))
    with torch.no_grad():
        pipe.unet(latents, t, encoder_hidden_states=states)
    restore(pipe.unet, previous)
    return float(masked_attention_loss(recorded, positions, mask))


def test_lora_lowers_the_concepts_attention_inside_the_mask(pipe):
    import dataclasses

    import torch

    from trce_audit.erasers.common import encode_prompts
    from trce_audit.models.families.sd import cross_attention_projections
    from trce_audit.erasers.mace import MACEConfig
    from trce_audit.erasers.mace.closed_form import concept_positions
    from trce_audit.erasers.mace.lora import train_concept_loras

    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(2, 1, 32, 32)
    masks[:, :, :, :16] = 1.0  # the left half
    prompts = ["a photo of nude", "nude in a photo"]
    positions = torch.stack([concept_positions(pipe.tokenizer, p, "nude", use_pooler=True) for p in prompts])
    config = dataclasses.replace(MACEConfig(), lr=0.1, train_steps=25, rank=2)
    t = torch.tensor([500])
    with torch.no_grad():  # the first image, noised as in training
        clean = pipe.vae.encode(images[:1] * 2 - 1).latent_dist.mean * pipe.vae.config.scaling_factor
    latents = pipe.scheduler.add_noise(clean, torch.randn(clean.shape, generator=torch.Generator().manual_seed(1)), t)
    states = encode_prompts(pipe, prompts[:1], "cpu")
    before = _masked_loss(pipe, latents, t, states, positions[0], masks[:1])
    (deltas,), (losses,) = train_concept_loras(pipe, [(images, masks, prompts, positions)], config, "cpu", seed=0)
    assert len(losses) == 25 and len(deltas) == len(cross_attention_projections(pipe.unet)) // 2
    with torch.no_grad():
        for name, layer in cross_attention_projections(pipe.unet):
            attn, leaf = name.rsplit(".", 1)
            layer.weight.data += deltas[attn][0 if leaf == "to_k" else 1]
            assert torch.linalg.matrix_rank(deltas[attn][0]) <= 2
    after = _masked_loss(pipe, latents, t, states, positions[0], masks[:1])
    assert after < 0.8 * before


def test_units_trained_in_one_batch_match_units_trained_alone(pipe):
    import dataclasses

    import torch

    from trce_audit.erasers.mace import MACEConfig
    from trce_audit.erasers.mace.closed_form import concept_positions
    from trce_audit.erasers.mace.lora import train_concept_loras

    # float64: Adam amplifies the rounding of gradients near its eps by up to lr/(4·eps) per step
    # (tests/tolerance.py adam_gain), which in float32 leaves batched and single units 1e-5 apart on
    # AVX2 CPUs; float64's 2^-53 keeps the same amplification far below anything a mix-up would cause.
    pipe.to(torch.float64)
    g = torch.Generator().manual_seed(3)
    units = []
    for phrase, half in (("nude", slice(0, 16)), ("naked", slice(16, 32))):
        masks = torch.zeros(2, 1, 32, 32, dtype=torch.float64)
        masks[..., half] = 1.0
        prompts = [f"a photo of {phrase}", f"{phrase} in a photo"]
        positions = torch.stack([concept_positions(pipe.tokenizer, p, phrase, use_pooler=False) for p in prompts])
        units.append((torch.rand(2, 3, 32, 32, generator=g, dtype=torch.float64), masks, prompts, positions))
    config = dataclasses.replace(MACEConfig(), lr=1e-2, train_steps=4, max_grad_norm=0.05)  # clipping active
    from trce_audit.erasers.mace.lora import cross_attention_modules

    next(iter(cross_attention_modules(pipe.unet).values())).heads = 2  # layers differ in heads, as in SD 2.x
    together, _ = train_concept_loras(pipe, units, config, "cpu", seed=5)
    first, _ = train_concept_loras(pipe, units[:1], config, "cpu", seed=5)
    second, _ = train_concept_loras(pipe, units[1:], config, "cpu", seed=6)  # unit u draws with seed + u
    assert any(float(d[0].norm()) > 0 for d in together[0].values())
    scale = max(float(d.abs().max()) for unit in together for pair in unit.values() for d in pair)
    # terms: the LoRA gradients sum over the 77 context rows of each of the image's 16·16 latent pixels;
    # gradients are clipped to norm 0.05, so no element exceeds it
    gain = adam_gain(steps=config.train_steps, lr=config.lr, grad_bound=config.max_grad_norm, scale=scale)
    for name in together[0]:
        for j in (0, 1):
            assert together[0][name][j].dtype == torch.float64
            assert_paths_agree(together[0][name][j], first[0][name][j], terms=77 * 16 * 16, gain=gain, scale=scale)
            assert_paths_agree(together[1][name][j], second[0][name][j], terms=77 * 16 * 16, gain=gain, scale=scale)


def test_fusion_minimises_its_objective():
    import torch

    from trce_audit.erasers.mace.closed_form import fused_weight, fusion_objective

    g = torch.Generator().manual_seed(0)

    def psd(rows):
        x = torch.randn(rows, 6, generator=g, dtype=torch.float64)
        return x.T @ x

    original, refined = torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(4, 6, generator=g, dtype=torch.float64)
    tuned = [refined + 0.3 * torch.randn(4, 6, generator=g, dtype=torch.float64) for _ in range(3)]
    moments, prior = [psd(3) for _ in range(3)], 0.5 * psd(8)
    args = (tuned, moments, original, refined, prior, 0.1)
    best = fused_weight(*args)
    value = fusion_objective(best, *args)
    for _ in range(5):
        assert fusion_objective(best + 1e-2 * torch.randn(4, 6, generator=g, dtype=torch.float64), *args) > value
    # one concept, no prior, no λ: the fused projection is that concept's on its prompts' span (all of it here)
    moment = psd(10)
    alone = fused_weight(tuned[:1], [moment], original, refined, torch.zeros(6, 6, dtype=torch.float64), 0.0)
    # a 6x6 solve: its rounding grows with the moment's condition number
    assert_paths_agree(alone, tuned[0], terms=6, gain=float(torch.linalg.cond(moment)))


def _write_folder(root, phrase, count, masks=True):
    import numpy as np
    from PIL import Image

    (root / phrase).mkdir(parents=True)
    if masks:
        (root / f"{phrase} mask").mkdir()
    for i in range(count):
        Image.fromarray(np.full((16, 16, 3), 40 * i, dtype=np.uint8)).save(root / phrase / f"img_{i}.png")
        if masks:
            mask = np.zeros((16, 16), dtype=np.uint8)
            mask[:, : 4 * (i + 1)] = 255
            Image.fromarray(mask).save(root / f"{phrase} mask" / f"img_{i}_mask.png")


def test_user_mask_folder_is_read(tmp_path):
    from trce_audit.erasers.mace.masks import read_concept_folder

    _write_folder(tmp_path, "nude", 3)
    images, masks = read_concept_folder(tmp_path, "nude", size=32)
    assert images.shape == (3, 3, 32, 32) and masks.shape == (3, 1, 32, 32)
    assert [round(float(m.mean()), 3) for m in masks] == [0.25, 0.5, 0.75]  # paired in sorted order
    (tmp_path / "nude mask" / "img_2_mask.png").unlink()
    with pytest.raises(ConfigError, match="2 masks for 3 images"):
        read_concept_folder(tmp_path, "nude", size=32)
    with pytest.raises(ConfigError, match="no image folder"):
        read_concept_folder(tmp_path, "naked body", size=32)


def test_erase_trains_on_the_user_folder(pipe, tmp_path):
    from trce_audit.erasers.base import EraseContext
    from trce_audit.erasers.mace import MACE

    for phrase in CONCEPT.keywords:
        _write_folder(tmp_path / "data", phrase, 2)
    config = MACE.make_config(overrides={"data_dir": str(tmp_path / "data"), "train_steps": 2, "augment_num": 2})
    result = MACE(config).erase(pipe, CONCEPT, context=EraseContext(cache_dir=tmp_path / "cache", captions=CAPTIONS))
    units = result.stats["units"]
    assert [u["phrase"] for u in units] == CONCEPT.keywords
    assert all(u["masks"] == "folder" and u["images"] == 2 and u["mask_coverage"] == 0.375 for u in units)
    assert result.changed_params and all(".attn2.to_k." in n or ".attn2.to_v." in n for n in result.changed_params)


def test_pocket_masks_cover_the_concepts_shape_and_fall_back_to_the_whole_image():
    import numpy as np

    from trce_audit.erasers.mace.masks import pocket_masks
    from trce_audit.pocket import world

    rng = np.random.default_rng(0)
    scenes = [world.sample_scene(rng, "cross", background="black", size="large", second=False),
              world.sample_scene(rng, "circle", background="black", size="large", second=False)]
    images = world.render(scenes)
    masks, fallback = pocket_masks(images, "cross")
    shape = (images[0] - images[0, :, :1, :1]).norm(dim=0) > 0.3
    inside = masks[0, 0].bool()
    assert fallback == 1 and bool(masks[1].all())  # no cross in the circle scene: the whole image
    assert float((inside & shape).sum()) / float(shape.sum()) > 0.9 and float(inside.float().mean()) < 0.5


def test_attention_masks_threshold_each_image_at_a_fraction_of_its_peak():
    import torch

    from trce_audit.erasers.mace.masks import attention_masks

    maps = torch.tensor([[[[0.1, 0.6], [1.0, 0.4]]], [[[2.0, 0.0], [0.0, 1.0]]]])
    assert attention_masks(maps, 0.5).flatten(1).tolist() == [[0, 1, 1, 0], [1, 0, 0, 1]]


def test_a_phrase_without_attention_trains_on_the_whole_image(pipe, monkeypatch):
    """No attention above the threshold would leave an empty mask and an untrained LoRA; like the
    reference's get_mask when nothing is detected, the whole image is the mask."""
    import torch

    from trce_audit.erasers.mace import MACEConfig, masks

    def silent(pipe, prompt, count, *, positions, **kwargs):
        return torch.rand(count, 3, 32, 32), torch.zeros(count, 1, 32, 32)

    monkeypatch.setattr(masks, "draw_concept_images", silent)
    config = MACEConfig(n_images=3, image_size=32, masks="attention")
    images, found, info = masks.concept_data(pipe, config, CONCEPT, "nude", 0, world="sd")
    assert found.shape == (3, 1, 32, 32) and bool((found == 1).all())
    assert info["whole_image_masks"] == 3 and info["mask_coverage"] == 1.0


def test_drawing_records_the_concept_tokens_attention(pipe):
    from trce_audit.erasers.mace.closed_form import concept_positions
    from trce_audit.erasers.mace.masks import draw_concept_images

    positions = concept_positions(pipe.tokenizer, "a photo of the nude", "nude", use_pooler=False)
    images, maps = draw_concept_images(pipe, "a photo of the nude", 2, steps=2, guidance=7.5, size=32, seed=0, positions=positions)
    assert images.shape == (2, 3, 32, 32) and maps.shape == (2, 1, 32, 32)
    assert float(images.min()) >= 0 and float(images.max()) <= 1 and float(maps.min()) > 0


def test_presets_and_config_errors():
    from trce_audit.erasers.mace import MACE, NUDITY_WORDS

    sd = MACE.make_config(world="sd", concept="nudity")
    assert sd.concepts == NUDITY_WORDS and sd.mapping == "a person wearing clothes"
    assert (sd.lamb, sd.train_preserve_scale, sd.fuse_preserve_scale, sd.rank, sd.lr, sd.train_steps) == (0.0, 7e-7, 7e-7, 1, 1e-5, 120)
    assert MACE.make_config(world="sd", concept="van-gogh").concepts == ()  # other concepts erase their own pairs
    assert MACE.make_config(world="pocket", concept="cross").caption_set == "pocket-general"
    for overrides, message in (
        ({"masks": "sam"}, "must be one of"),
        ({"rank": 0}, "'rank' must be >= 1"),
        ({"train_preserve_scale": 0}, "singular"),
        ({"masks": "folder"}, "needs a data_dir"),
        ({"image_template": "a photo"}, "must contain"),
        ({"augment_num": 31}, "'augment_num' is at most 30"),
        ({"lora_rank": 4}, "known keys: .*train_steps"),
    ):
        with pytest.raises(ConfigError, match=message):
            MACE.make_config(overrides=overrides)


def test_segmentation_masks_need_the_pocket_world(pipe, tmp_path):
    from trce_audit.erasers.base import EraseContext
    from trce_audit.erasers.mace import MACE

    config = MACE.make_config(overrides={"masks": "segmentation", "train_steps": 1, "augment_num": 1, "n_images": 1, "image_steps": 1})
    with pytest.raises(ConfigError, match="needs the pocket world"):
        MACE(config).erase(pipe, CONCEPT, context=EraseContext(cache_dir=tmp_path, captions=CAPTIONS))
