"""Concept inversion on a tiny random SD: the textual-inversion loss falls, the learned embedding is a
content-addressed file the rows name, and the batched engine draws with it (differently from the
plain concept word, reproducibly, and exactly as the plain word when the vector is that word's own)."""

from __future__ import annotations

import pytest

from trce_audit.data.concepts import Concept
from trce_audit.errors import ConfigError, DataError
from trce_audit.store import PromptRow

CONCEPT = Concept("cat", pairs=(("cat", "dog"), ("a red cat", "a red dog"), ("a kitten", "a puppy")))
SEEDS = [PromptRow("a photo of a cat", 7, 6.0), PromptRow("a man at the beach", 11, 7.5)]
TINY = {"steps": 30, "n_images": 2, "train_batch_size": 2, "gradient_accumulation": 1, "target_steps": 2, "initializer": "a"}
pytestmark = pytest.mark.filterwarnings("ignore::trce_audit.attacks.base.BelowPaperBudgetWarning")


@pytest.fixture(scope="module")
def learned(pipes, tmp_path_factory):
    from trce_audit.attacks.base import AttackContext
    from trce_audit.attacks.inversion import ConceptInversion

    attack = ConceptInversion(ConceptInversion.Config().with_overrides(TINY))
    folder = tmp_path_factory.mktemp("embeddings")
    return attack.run(pipes[0], CONCEPT, SEEDS, original_pipe=pipes[1], context=AttackContext(artefact_dir=folder)), folder


def _sampler(pipe):
    from trce_audit.generation import GenerationSettings
    from trce_audit.generation.engine import BatchSampler

    size = int(pipe.unet.config.sample_size) * pipe.vae_scale_factor
    return BatchSampler(pipe, GenerationSettings(steps=3, height=size, width=size, device="cpu").validate())


def test_words_and_placement():
    from trce_audit.attacks.inversion import concept_words, with_placeholder

    words = concept_words(CONCEPT)
    assert words == ["kitten", "cat"]  # "red cat" holds "cat"; articles are dropped
    assert with_placeholder("A Cat and a kitten", words, "<t>") == ("A <t> and a <t>", "replaced")
    assert with_placeholder("a catalogue", words, "<t>") == ("<t> a catalogue", "prepended")


def test_loss_falls_and_rows_carry_the_embedding_file(learned):
    from trce_audit.generation import learned_tokens as lt
    from trce_audit.hashing import sha256_file

    result, folder = learned
    first, second = result.rows
    assert first.text == "a photo of a <cat-inversion>" and first.meta["placement"] == "replaced"
    assert second.text == "<cat-inversion> a man at the beach" and second.meta["placement"] == "prepended"
    assert (first.seed, first.guidance) == (7, 6.0) and first.meta["seed_row_hash"] == SEEDS[0].row_hash
    assert first.meta["loss"] < first.meta["loss_initial"]  # same fixed draws before and after training
    entry = first.meta[lt.META_KEY]
    assert entry == second.meta[lt.META_KEY] and entry["token"] == "<cat-inversion>"
    assert sha256_file(entry["path"]) == entry["sha256"] == result.stats["embedding_sha256"]
    assert str(folder) in entry["path"] and len(result.stats["loss_curve"]) == 30 // result.stats["loss_curve_block"]
    assert not set(result.stats["training_seeds"]) & {s.seed for s in SEEDS}  # never the scored noise


def test_engine_draws_with_the_learned_token(pipes, learned):
    import numpy as np

    result, _ = learned
    target = pipes[0]
    row = result.rows[0]
    drawn = _sampler(target).sample([row])
    assert np.array_equal(drawn, _sampler(target).sample([row]))  # reproducible, a fresh sampler too
    plain = _sampler(target).sample([SEEDS[0]])
    assert not np.array_equal(drawn, plain)
    # a plain row beside it is drawn as alone, to the pixel level the batch shape's rounding can move
    # (the engine's float32 batch tolerance, tests/test_generation.py)
    batch = _sampler(target).sample([SEEDS[1], row])
    assert np.abs(batch[1].astype(int) - drawn[0]).max() <= 1
    assert np.abs(batch[0].astype(int) - _sampler(target).sample([SEEDS[1]])[0]).max() <= 1


def test_the_word_own_vector_draws_exactly_the_word(pipes, tmp_path):
    """The injection is exact: a placeholder holding the embedding of "x" encodes as the text "x"."""
    import numpy as np

    from trce_audit.generation import learned_tokens as lt
    from trce_audit.models import tokens as tk

    target = pipes[0]
    x_id = target.tokenizer("x", add_special_tokens=False).input_ids[0]
    path, sha = lt.save_embedding(tmp_path, "<x>", tk.token_embedding(target.text_encoder).weight[x_id])
    assert lt.save_embedding(tmp_path, "<x>", tk.token_embedding(target.text_encoder).weight[x_id]) == (path, sha)
    entry = {"token": "<x>", "sha256": sha, "path": str(path), "slot_id": int(target.tokenizer("a", add_special_tokens=False).input_ids[0])}
    injected = PromptRow("a <x> on the beach", 5, 7.5, {lt.META_KEY: entry})
    assert np.array_equal(_sampler(target).sample([injected]), _sampler(target).sample([PromptRow("a x on the beach", 5, 7.5)]))
    path.write_bytes(path.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(DataError, match="does not match its recorded sha256"):
        _sampler(target).sample([injected])


def test_sample_hash_covers_the_embedding(learned):
    from trce_audit.generation.runner import sample_hash

    row = learned[0].rows[0]
    bare = PromptRow(row.text, row.seed, row.guidance)
    other = PromptRow(row.text, row.seed, row.guidance, {"learned_token": {**row.meta["learned_token"], "sha256": "0" * 64}})
    assert len({sample_hash(r, {"steps": 3}, "m") for r in (row, bare, other)}) == 3
    assert sample_hash(bare, {"steps": 3}, "m") == sample_hash(PromptRow(row.text, row.seed, row.guidance, {"x": 1}), {"steps": 3}, "m")


def test_resume_reuses_the_stored_embedding_and_initializer_must_be_one_token(pipes, learned, monkeypatch):
    from trce_audit.attacks import textual_inversion as ti
    from trce_audit.attacks.base import AttackContext
    from trce_audit.attacks.inversion import ConceptInversion

    result, _ = learned
    monkeypatch.setattr(ti, "optimise", lambda *a, **k: pytest.fail("retrained although a stored row holds the embedding"))
    attack = ConceptInversion(ConceptInversion.Config().with_overrides(TINY))
    again = attack.run(pipes[0], CONCEPT, SEEDS, original_pipe=pipes[1], context=AttackContext(finished={0: result.rows[0]}), indices=[1])
    assert [r.text for r in again.rows] == [result.rows[1].text] and again.rows[0].meta == result.rows[1].meta
    assert again.stats["reused_embedding"] is True
    assert attack.run(pipes[0], CONCEPT, SEEDS, indices=[]).rows == []  # nothing missing: nothing learned
    with pytest.raises(ConfigError, match="initializer 'cat' is 3 tokens"):
        ConceptInversion(ConceptInversion.Config().with_overrides({**TINY, "initializer": ""})).run(pipes[0], CONCEPT, SEEDS)
