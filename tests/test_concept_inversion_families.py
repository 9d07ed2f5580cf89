"""Concept inversion on the tiny SDXL, SD3 and FLUX: one placeholder, one learned vector per text encoder
(both CLIPs on SDXL; the CLIPs and T5 on SD3; CLIP, read for its pooled output, and T5 on FLUX), trained
on the family's own loss, saved under diffusers' pivotal-tuning keys and injected by the batched engine
at the placeholder's slot in every encoder's input-embedding lookup."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trce_audit.data.concepts import Concept
from trce_audit.errors import ConfigError, DataError
from trce_audit.store import PromptRow

FAMILIES = ("sdxl", "sd3", "flux")
KEYS = {"sdxl": ["clip_l", "clip_g"], "sd3": ["clip_l", "clip_g", "t5"], "flux": ["clip_l", "t5"]}
CONCEPT = Concept("cat", pairs=(("cat", "dog"), ("a red cat", "a red dog"), ("a kitten", "a puppy")))
SEEDS = [PromptRow("a photo of a cat", 7, 6.0), PromptRow("a man at the beach", 11, 7.5)]
TINY = {"steps": 3, "n_images": 2, "train_batch_size": 2, "gradient_accumulation": 1, "target_steps": 2,
        "eval_draws": 4, "initializer": "a"}
LENGTH = 16  # the T5 prompt length of these runs (FLUX pads to 512 by default)
pytestmark = pytest.mark.filterwarnings("ignore::trce_audit.attacks.base.BelowPaperBudgetWarning")


def _settings():
    from trce_audit.generation import GenerationSettings

    return GenerationSettings(steps=2, height=32, width=32, device="cpu", max_sequence_length=LENGTH).validate()


def _sampler(pipe):
    from trce_audit.generation.engine import BatchSampler

    return BatchSampler(pipe, _settings())


def _build(shape, seed=0):
    from trce_audit.models.tiny import build_pipeline

    torch.set_num_threads(1)
    if shape == "sd3-no-t5":  # SD3 without its T5 encoder: the pipeline feeds zeros in T5's place
        pipe = build_pipeline("sd3", seed=seed)
        pipe.text_encoder_3, pipe.tokenizer_3 = None, None
        return pipe
    return build_pipeline(shape, seed=seed)


def _inputs(pipe):
    from trce_audit.models.families import load_family, pipeline_family

    family = load_family(pipeline_family(pipe))
    return family, family.text_inputs(pipe, LENGTH)


@pytest.fixture(scope="module", params=FAMILIES)
def learned(request, tmp_path_factory):
    from trce_audit.attacks.base import AttackContext
    from trce_audit.attacks.inversion import ConceptInversion

    shape = request.param
    target = _build(shape, seed=0)
    attack = ConceptInversion(ConceptInversion.Config().with_overrides(TINY))
    folder = tmp_path_factory.mktemp(f"embeddings-{shape}")
    context = AttackContext(artefact_dir=folder, generation=_settings())
    result = attack.run(target, CONCEPT, SEEDS, original_pipe=_build(shape, seed=1), context=context)
    return shape, target, result


def test_the_file_holds_one_trained_vector_per_text_encoder(learned):
    from safetensors import safe_open

    from trce_audit.generation import learned_tokens as lt
    from trce_audit.hashing import sha256_file
    from trce_audit.models import tokens as tk

    shape, target, result = learned
    first, second = result.rows
    assert first.text == "a photo of a <cat-inversion>" and second.text == "<cat-inversion> a man at the beach"
    entry = first.meta[lt.META_KEY]
    assert entry == second.meta[lt.META_KEY] and "slot_id" not in entry
    assert sha256_file(entry["path"]) == entry["sha256"] == result.stats["embedding_sha256"]
    _, inputs = _inputs(target)
    assert [text.key for text in inputs] == KEYS[shape] == sorted(entry["slot_ids"], key=KEYS[shape].index)
    with safe_open(entry["path"], "pt") as saved:
        assert sorted(saved.keys()) == sorted(KEYS[shape]) and saved.metadata() == {"token": "<cat-inversion>"}
        for text in inputs:
            table = tk.input_lookup(text.encoder).weight
            slot = text.tokenizer("a", add_special_tokens=False).input_ids[0]
            assert entry["slot_ids"][text.key] == slot
            vector = saved.get_tensor(text.key)
            assert vector.shape == (1, table.shape[-1]) == (1, result.stats["encoders"][text.key])
            # every encoder's vector moved away from the initializer's row: its gradient reached it
            assert not torch.equal(vector[0], table[slot].detach().float())


def test_the_loss_on_fixed_draws_moves(learned):
    _, _, result = learned
    meta = result.rows[0].meta
    assert np.isfinite(meta["loss"]) and np.isfinite(meta["loss_initial"]) and meta["loss"] != meta["loss_initial"]
    assert len(result.stats["loss_curve"]) == 3 and not set(result.stats["training_seeds"]) & {s.seed for s in SEEDS}


def test_the_engine_draws_with_the_learned_token(learned):
    _, target, result = learned
    row = result.rows[0]
    drawn = _sampler(target).sample([row])
    assert np.array_equal(drawn, _sampler(target).sample([row]))  # reproducible, with a fresh sampler
    assert not np.array_equal(drawn, _sampler(target).sample([SEEDS[0]]))
    # beside a plain row, each is drawn as alone (within the engine's float32 batch tolerance)
    batch = _sampler(target).sample([SEEDS[1], row])
    assert np.abs(batch[1].astype(int) - drawn[0]).max() <= 1
    assert np.abs(batch[0].astype(int) - _sampler(target).sample([SEEDS[1]])[0]).max() <= 1


def test_the_file_loads_with_diffusers_as_the_same_conditioning(learned):
    """diffusers' load_textual_inversion of each key into its encoder (SD3's pipeline has no loader:
    the same steps by hand) and the plain encode give the conditioning the engine injects."""
    from safetensors.torch import load_file

    from trce_audit.generation import learned_tokens as lt

    shape, _, result = learned
    row = result.rows[0]
    ours = _sampler(_build(shape)).condition([row.text], [row])
    pipe = _build(shape)
    family, inputs = _inputs(pipe)
    saved, token = load_file(row.meta[lt.META_KEY]["path"]), row.meta[lt.META_KEY]["token"]
    for text in inputs:
        if hasattr(pipe, "load_textual_inversion"):
            pipe.load_textual_inversion(saved[text.key], token=token, text_encoder=text.encoder, tokenizer=text.tokenizer)
        else:
            text.tokenizer.add_tokens(token)
            text.encoder.resize_token_embeddings(len(text.tokenizer))
            text.encoder.get_input_embeddings().weight.data[text.tokenizer.convert_tokens_to_ids(token)] = saved[text.key][0]
    with torch.no_grad():
        theirs = family.encode(pipe, [row.text], "cpu", torch.float32, LENGTH)
    assert torch.equal(ours.states, theirs.states) and torch.equal(ours.pooled, theirs.pooled)


@pytest.mark.parametrize("shape", ["sdxl", "sd3", "sd3-no-t5", "flux"])
def test_an_encoders_own_row_at_the_slot_is_the_plain_prompt(shape, tmp_path):
    """The injection is the lookup: a placeholder holding each encoder's own row for "x" conditions as
    the text "x" does, exactly; another vector in any one encoder changes the conditioning."""
    from trce_audit.generation import learned_tokens as lt
    from trce_audit.models import tokens as tk
    from trce_audit.models.families.sd import padded_ids

    pipe = _build(shape)
    family, inputs = _inputs(pipe)
    own = {text.key: tk.input_lookup(text.encoder).weight[text.tokenizer("x", add_special_tokens=False).input_ids[0]] for text in inputs}
    slots = {text.key: text.tokenizer("a", add_special_tokens=False).input_ids[0] for text in inputs}

    def row_with(vectors, name):
        path, sha = lt.save_vectors(tmp_path / name, "<x>", vectors)
        return PromptRow("a <x> on the beach", 5, 4.0, {lt.META_KEY: {"token": "<x>", "sha256": sha, "path": str(path), "slot_ids": slots}})

    plain = PromptRow("a x on the beach", 5, 4.0)
    injected = row_with(own, "own")
    sampler = _sampler(pipe)
    expected, got = sampler.condition([plain.text]), sampler.condition([injected.text], [injected])
    assert torch.equal(got.states, expected.states) and torch.equal(got.pooled, expected.pooled)
    assert np.array_equal(sampler.sample([injected]), sampler.sample([plain]))
    with torch.no_grad():  # encode_ids on the family's own tokenisation is encode, a truncated prompt included
        texts = ["a x on the beach", "word " * 80]
        ids = {text.key: padded_ids(text.tokenizer, texts, "cpu", text.length) for text in inputs}
        direct, from_ids = family.encode(pipe, texts, "cpu", torch.float32, LENGTH), family.encode_ids(pipe, ids, torch.float32, LENGTH)
    assert torch.equal(direct.states, from_ids.states) and torch.equal(direct.pooled, from_ids.pooled)
    for text in inputs:
        laid, _ = lt.layout_to(text.tokenizer, texts[1], "<x>", 0, text.length)
        assert laid == ids[text.key][1].tolist()
        other = row_with({**own, text.key: own[text.key] + 1.0}, text.key)
        moved = sampler.condition([other.text], [other])
        assert not (torch.equal(moved.states, expected.states) and torch.equal(moved.pooled, expected.pooled)), text.key


def _tokenizer_with_word(word: str):
    """The tiny CLIP tokenizer plus BPE merges that make ``word`` one token."""
    import json
    import tempfile
    from pathlib import Path

    from transformers import CLIPTokenizer

    from trce_audit.models.tiny import write_char_tokenizer

    with tempfile.TemporaryDirectory() as scratch:
        folder = write_char_tokenizer(Path(scratch))
        vocab = json.loads((folder / "vocab.json").read_text())
        merges, current = [], word[0]
        for i, char in enumerate(word[1:], start=1):
            piece = char + ("</w>" if i == len(word) - 1 else "")
            merges.append(f"{current} {piece}")
            current += piece
            vocab[current] = len(vocab)
        (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
        (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
        return CLIPTokenizer.from_pretrained(str(folder))


@pytest.mark.parametrize("shape", FAMILIES)
def test_an_initializer_of_several_tokens_is_refused_in_one_line(shape):
    from trce_audit.attacks.inversion import ConceptInversion

    attack = ConceptInversion(ConceptInversion.Config().with_overrides({**TINY, "initializer": ""}))
    with pytest.raises(ConfigError) as exc:
        attack.run(_build(shape), CONCEPT, SEEDS)
    assert "\n" not in str(exc.value)
    assert str(exc.value).startswith(f"initializer 'cat' is 3 tokens in tokenizer (clip_l) of this {shape} model")


def test_the_refusal_names_the_tokenizer_that_splits_the_initializer():
    """One token for CLIP (a vocabulary that knows "cat"), three for T5: the message names T5's."""
    from trce_audit.attacks.inversion import ConceptInversion

    pipe = _build("flux")
    pipe.tokenizer = _tokenizer_with_word("cat")
    assert len(pipe.tokenizer("cat", add_special_tokens=False).input_ids) == 1
    attack = ConceptInversion(ConceptInversion.Config().with_overrides({**TINY, "initializer": "cat"}))
    with pytest.raises(ConfigError, match=r"^initializer 'cat' is 3 tokens in tokenizer_2 \(t5\) of this flux model; it must be one token in every tokenizer"):
        attack.run(pipe, CONCEPT, SEEDS)


def test_an_embedding_learned_on_another_family_is_refused(learned):
    from trce_audit.generation import learned_tokens as lt

    shape, _, result = learned
    row = result.rows[0]
    other = "flux" if shape != "flux" else "sdxl"
    with pytest.raises(DataError, match=f"this {other} model's text encoders are") as exc:
        _sampler(_build(other)).sample([row])
    assert "\n" not in str(exc.value)
    with pytest.raises(DataError, match="holds one vector per text encoder"):  # on SD, which has one
        _sampler(_build("tiny")).sample([row])
    sd_entry = {**{k: v for k, v in row.meta[lt.META_KEY].items() if k != "slot_ids"}, "slot_id": 320}
    with pytest.raises(DataError, match=f"an sd model's\\); this {shape} model needs one per text encoder"):
        _sampler(_build(shape)).sample([PromptRow(row.text, 1, 5.0, {lt.META_KEY: sd_entry})])


def test_resume_reuses_the_stored_vectors(learned, monkeypatch):
    from trce_audit.attacks import textual_inversion as ti
    from trce_audit.attacks.base import AttackContext
    from trce_audit.attacks.inversion import ConceptInversion

    shape, target, result = learned
    monkeypatch.setattr(ti, "optimise", lambda *a, **k: pytest.fail("retrained although a stored row holds the embedding"))
    attack = ConceptInversion(ConceptInversion.Config().with_overrides(TINY))
    again = attack.run(target, CONCEPT, SEEDS, context=AttackContext(finished={0: result.rows[0]}, generation=_settings()), indices=[1])
    assert again.rows[0].meta == result.rows[1].meta and again.stats["reused_embedding"] is True
