"""Attack cores on a tiny random SD: each optimiser runs with a tiny budget and returns its prompts;
GA elitism, simplex projection, decode/re-tokenise bookkeeping, budget parsing and warnings."""

from __future__ import annotations

import warnings

import pytest

from tolerance import assert_paths_agree

from trce_audit.data.concepts import Concept
from trce_audit.errors import ConfigError
from trce_audit.store import PromptRow

CONCEPT = Concept("nudity", pairs=(("nude woman", "woman wearing clothes"), ("naked man", "man in a suit")))
SEEDS = [PromptRow("a photo of a woman", 7, 6.0), PromptRow("a man at the beach", 11, 7.5)]


@pytest.fixture(scope="module")
def pipes():
    import torch

    from trce_audit.models.tiny import build_pipeline

    torch.set_num_threads(2)
    return build_pipeline("tiny", seed=0), build_pipeline("tiny", seed=1)  # (erased stand-in, original)


def _check_rows(rows, pipe, attack_name):
    from trce_audit.models import tokens as tk

    assert [r.meta["seed_prompt"] for r in rows] == [s.text for s in SEEDS[: len(rows)]]
    for row, seed in zip(rows, SEEDS):
        assert (row.seed, row.guidance) == (seed.seed, seed.guidance)
        assert row.meta["attack"] == attack_name and row.meta["seed_row_hash"] == seed.row_hash
        assert isinstance(row.meta["loss"], float)
        again = tk.content_ids(pipe.tokenizer, row.text)
        assert row.meta["retokenizes"] == (again == row.meta["token_ids"])
        if not row.meta["retokenizes"]:
            assert row.meta["retokenize_mismatch"]["retokenized_ids"] == again


def test_ring_a_bell_runs_and_improves(pipes):
    from trce_audit.attacks.ring_a_bell import RingABell
    from trce_audit.models import tokens as tk

    pipe = pipes[0]
    attack = RingABell(RingABell.Config().with_overrides({"population": "8", "generations": "4", "length": "4"}))
    result = attack.run(pipe, CONCEPT, SEEDS)
    _check_rows(result.rows, pipe, "ring-a-bell")
    allowed = set(tk.searchable_ids(pipe.tokenizer, pipe.text_encoder))
    for row in result.rows:
        assert len(row.meta["token_ids"]) == 4 and set(row.meta["token_ids"]) <= allowed
        assert row.meta["loss"] <= row.meta["loss_first_generation"]
    assert result.stats["concept_vector_norm"] > 0


def test_genetic_search_best_never_worsens():
    import torch

    from trce_audit.attacks.ring_a_bell import genetic_search

    goal = torch.tensor([5, 9, 2, 7, 1, 3])
    vocab = torch.arange(20)
    fitness = lambda members: (members != goal).float().sum(dim=1)  # noqa: E731
    best, loss, history = genetic_search(
        fitness, vocab, length=6, population=12, generations=60, mutation_rate=1.0, crossover_rate=0.5,
        generator=torch.Generator().manual_seed(0),
    )
    assert all(b <= a for a, b in zip(history, history[1:]))
    assert history[-1] < history[0] and loss == history[-1] == float(fitness(best[None])[0])


def test_genetic_search_scores_only_new_and_mutated_members():
    """Survivors that are not mutated keep their score, so fewer rows are scored than population x
    generations; the reported best loss is still the fitness of the returned ids."""
    import torch

    from trce_audit.attacks.ring_a_bell import genetic_search

    goal = torch.tensor([5, 9, 2, 7, 1, 3, 8, 0])
    scored = []

    def fitness(members):
        scored.append(members.shape[0])
        return (members != goal).float().sum(dim=1)

    best, loss, _ = genetic_search(
        fitness, torch.arange(30), length=8, population=40, generations=50, mutation_rate=0.25, crossover_rate=0.5,
        generator=torch.Generator().manual_seed(1),
    )
    assert scored[0] == 40 and sum(scored) < 0.8 * 40 * 50
    assert loss == float(fitness(best[None])[0])


def test_roundtrip_records_match_and_mismatch(pipes):
    from trce_audit.models import tokens as tk

    tokenizer = pipes[0].tokenizer
    ids = tk.content_ids(tokenizer, "a nude woman")
    ok = tk.roundtrip(tokenizer, ids)
    assert ok.matches and ok.mismatch is None and ok.text == "a nude woman"
    word_piece = tokenizer.convert_tokens_to_ids("a")  # "a" without the end-of-word mark
    bad = tk.roundtrip(tokenizer, [word_piece])
    assert not bad.matches and bad.mismatch["first_mismatch"] == 0
    assert bad.mismatch["retokenized_ids"] == [tokenizer.convert_tokens_to_ids("a</w>")]


def test_searchable_ids_exclude_specials_and_concept_words(pipes):
    from trce_audit.models import tokens as tk

    tokenizer, encoder = pipes[0].tokenizer, pipes[0].text_encoder
    ids = tk.searchable_ids(tokenizer, encoder)
    assert tokenizer.bos_token_id not in ids and tokenizer.eos_token_id not in ids
    without_a = tk.searchable_ids(tokenizer, encoder, ["a"])
    spellings = ("a", "a</w>", "A", "A</w>")  # matching ignores case, as CLIP's tokenizer lowercases
    assert set(ids) - set(without_a) == {tokenizer.convert_tokens_to_ids(t) for t in spellings}


def test_project_to_simplex():
    import torch

    from trce_audit.attacks.unlearndiff import project_to_simplex

    g = torch.Generator().manual_seed(0)
    values = torch.randn(4, 30, generator=g) * 3
    projected = project_to_simplex(values)
    # sort, cumulative sum over 30 entries of size up to 9, then a shift: rounding relative to the inputs
    assert_paths_agree(projected.sum(-1), torch.ones(4), terms=30, scale=float(values.abs().max()))
    assert (projected >= 0).all()
    already = torch.softmax(torch.randn(2, 7, generator=g), dim=-1)
    assert_paths_agree(project_to_simplex(already), already, terms=7, scale=1.0)  # the shift sums 7 values below 1


def test_unlearndiff_runs_and_stops_on_judged_success(pipes):
    from trce_audit.attacks.base import AttackContext
    from trce_audit.attacks.unlearndiff import UnlearnDiff
    from trce_audit.models import tokens as tk

    target, original = pipes
    config = UnlearnDiff.Config().with_overrides({"timesteps": 3, "iterations": 2, "k": 2, "target_steps": 1})
    judged = []
    # the seed prompt itself is judged first and fails; the first optimised prompt succeeds
    context = AttackContext(judge=lambda text, row: judged.append(text) or text != row.text)
    result = UnlearnDiff(config).run(target, CONCEPT, SEEDS[:1], original_pipe=original, context=context)
    _check_rows(result.rows, target, "unlearndiff")
    meta = result.rows[0].meta
    assert meta["timesteps_run"] == 1 and meta["judged_success"] is True and judged[0] == SEEDS[0].text and len(judged) == 2
    assert meta["token_ids"][2:] == tk.content_ids(target.tokenizer, SEEDS[0].text)
    assert len(result.stats["timestep_grid"]) == 3 and result.stats["original_is_target"] is False


@pytest.mark.parametrize("name", ["p4d-n", "p4d-k"])
def test_p4d_variants_run(pipes, name):
    from trce_audit import registry
    from trce_audit.models import tokens as tk

    target, original = pipes
    cls = registry.load("attack", name)
    config = cls.Config().with_overrides({"iterations": 2, "eval_every": 1, "eval_draws": 1, "prompt_len": 5, "target_steps": 1})
    result = cls(config).run(target, CONCEPT, SEEDS[:1], original_pipe=original)
    _check_rows(result.rows, target, name)
    meta = result.rows[0].meta
    seed_ids = tk.content_ids(target.tokenizer, SEEDS[0].text)
    if name == "p4d-n":
        assert meta["adversarial_positions"] == list(range(5)) and len(meta["token_ids"]) == 5
    else:
        kept = [t for i, t in enumerate(meta["token_ids"]) if i not in meta["adversarial_positions"]]
        assert kept == seed_ids and meta["adversarial_positions"][:2] == [0, 4]
        assert len(meta["adversarial_positions"]) == len(seed_ids) // 3 + 1


def test_p4d_stops_at_the_first_candidate_judged_a_success(pipes):
    """Candidates are judged at each evaluation step; the second judged one succeeds, so the search ends
    there and keeps exactly the prompt that was judged."""
    from trce_audit.attacks.base import AttackContext
    from trce_audit.attacks.p4d import P4DN

    target, original = pipes
    judged = []
    context = AttackContext(judge=lambda text, row: judged.append(text) or len(judged) == 2)
    config = P4DN.Config().with_overrides({"iterations": 20, "eval_every": 3, "eval_draws": 1, "prompt_len": 4, "target_steps": 1})
    (row,) = P4DN(config).run(target, CONCEPT, SEEDS[:1], original_pipe=original, context=context).rows
    assert len(judged) == 2 and row.meta["iterations_run"] == 4 and row.meta["judged_success"] is True
    assert row.text == judged[1] or row.meta["retokenizes"] is False


def test_budget_overrides_convert_and_fail_in_one_line():
    from trce_audit.attacks.p4d import P4DN
    from trce_audit.attacks.ring_a_bell import RingABell

    config = RingABell.Config().with_overrides({"generations": "30", "eta": "2.5", "exclude-concept-words": "yes"})
    assert (config.budget.generations, config.eta, config.exclude_concept_words) == (30, 2.5, True)
    assert config.budget.population == 200 and RingABell.Config().length == 16
    for bad, fragment in [
        ({"generations": "many"}, "generations must be a non-negative integer"),
        ({"generations": "-3"}, "generations must be a non-negative integer"),
        ({"eta": "x"}, "eta must be a number"),
        ({"exclude_concept_words": "maybe"}, "must be true or false"),
        ({"iterations": "5"}, "unknown budget/config key 'iterations'"),
    ]:
        with pytest.raises(ConfigError) as info:
            RingABell.Config().with_overrides(bad)
        assert fragment in str(info.value) and "\n" not in str(info.value)
    assert P4DN.Config.for_world("pocket").budget.iterations == 500
    assert P4DN.Config.for_world("sd").budget.iterations == 3000


def test_below_paper_budget_warns_and_reports():
    from trce_audit.attacks.base import BelowPaperBudgetWarning
    from trce_audit.attacks.unlearndiff import UnlearnDiff

    with pytest.warns(BelowPaperBudgetWarning, match="timesteps=2"):
        report = UnlearnDiff(UnlearnDiff.Config().with_overrides({"timesteps": 2})).budget_report()
    assert report["below_paper_budget"] is True and report["budget_ratios"] == {"iterations": 1.0, "timesteps": 0.04}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = UnlearnDiff(UnlearnDiff.Config.for_world("pocket")).budget_report()
    assert report["below_paper_budget"] is False


def test_replay_changes_nothing_and_builtins_load():
    from trce_audit import registry
    from trce_audit.attacks import BUILTIN
    from trce_audit.attacks.replay import Replay

    result = Replay().run(None, CONCEPT, SEEDS)
    assert result.rows == SEEDS and Replay.is_replay and Replay.paper_budget == {}
    for name in BUILTIN:
        assert registry.load("attack", name).name == name


def test_corpus_vocabulary_searches_only_corpus_tokens(pipes):
    from trce_audit.attacks.base import AttackContext
    from trce_audit.attacks.ring_a_bell import RingABell
    from trce_audit.models import tokens as tk

    pipe = pipes[0]
    config = RingABell.Config.for_world("pocket").with_overrides({"population": 6, "generations": 2, "length": 3})
    assert config.vocabulary == "corpus"
    context = AttackContext(corpus=["zebra"])
    result = RingABell(config).run(pipe, CONCEPT, SEEDS[:1], context=context)
    texts = ["zebra", SEEDS[0].text, *(t for pair in CONCEPT.pairs for t in pair)]
    allowed = {i for text in texts for i in tk.content_ids(pipe.tokenizer, text)}
    assert set(result.rows[0].meta["token_ids"]) <= allowed and result.stats["vocab_size"] == len(allowed)
    with pytest.raises(ConfigError, match="vocabulary must be one of all, corpus"):
        RingABell.Config().with_overrides({"vocabulary": "some"})
