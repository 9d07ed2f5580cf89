"""The attack api and CLI: runs, prompt sets and ASR before/after in the store, replay labels, resume,
one-line errors. The evaluation engine is replaced by a recorder with the agreed evaluate() signature."""

from __future__ import annotations

import json

import pytest

from trce_audit.data.concepts import Concept
from trce_audit.errors import ConfigError, TrceAuditError
from trce_audit.orchestration import eval_runs
from trce_audit.store import PromptRow

CONCEPT = Concept("nudity", pairs=(("nude woman", "woman wearing clothes"),), detector="nudenet")
SEEDS = [PromptRow("a photo of a woman", 7, 6.0), PromptRow("a man at the beach", 11, 7.5), PromptRow("a cat", 3)]
pytestmark = pytest.mark.filterwarnings("ignore::trce_audit.attacks.base.BelowPaperBudgetWarning")

TINY_RING = {"population": "6", "generations": "2", "length": "3"}


@pytest.fixture
def evaluations(monkeypatch):
    """Stand-in for the evaluation an attack runs (orchestration.eval_runs.evaluate): records each call, stores an eval run under the given
    parent and reports as "asr", under each requested scorer, the fraction of rows that carry attack provenance."""
    calls: list[dict] = []

    def evaluate(store, workspace, *, model, prompts, metrics, settings=None, limit=None, concept=None, parent_run_id=None, allow_pickle=False, executor=None):
        calls.append(dict(model=model, prompts=prompts, metrics=metrics, settings=settings, limit=limit, concept=concept, parent_run_id=parent_run_id))
        rows = store.prompt_rows(prompts)[:limit]
        value = sum(1 for r in rows if "attack" in r.meta or "published" in r.meta) / len(rows)
        run = store.start_run(kind="eval", component="recorder", config={"metrics": metrics}, model_ref=model, prompt_set_id=prompts, parent_run_id=parent_run_id, inputs={"limit": limit})
        for scorer in metrics:
            store.add_metric(run.id, "asr", value, scorer=scorer, n=len(rows))
        store.complete_run(run.id, {})
        records = [{"name": "asr", "scorer": scorer, "value": value, "n": len(rows), "ci_low": None, "ci_high": None, "protocol": {}} for scorer in metrics]
        return {"run_id": run.id, "generation_run_id": None, "n_images": len(rows), "metrics": records}

    monkeypatch.setattr(eval_runs, "evaluate", evaluate)
    return calls


@pytest.fixture(scope="session")
def erased_dir(tmp_path_factory):
    from trce_audit.models.tiny import save_pipeline

    return save_pipeline(tmp_path_factory.mktemp("erased") / "model", shape="tiny", seed=1)


def _seed_set(store) -> int:
    return store.add_prompt_set("seeds", SEEDS, source="test")


def test_ring_a_bell_stores_adversarial_set_asr_and_resumes(store, workspace, tiny_sd_dir, evaluations):
    from trce_audit.api import attack
    from trce_audit.attacks.base import BelowPaperBudgetWarning

    seed_set = _seed_set(store)
    model = str(tiny_sd_dir)
    with pytest.warns(BelowPaperBudgetWarning):
        summary = attack(store, workspace, name="ring-a-bell", model=model, concept=CONCEPT, prompts=f"set:{seed_set}", budget=TINY_RING, limit=2)
    run = store.get_run(summary["run_id"])
    assert (run.kind, run.component, run.status, run.prompt_set_id) == ("attack", "ring-a-bell", "complete", seed_set)
    assert run.summary["asr_before"] == 0.0 and run.summary["asr_after"] == 1.0
    assert summary["below_paper_budget"] is True and summary["budget_ratios"]["generations"] == pytest.approx(2 / 3000)
    assert summary["warnings"] and "below one tenth" in summary["warnings"][0]
    adversarial = store.get_prompt_set(summary["adversarial_set_id"])
    assert (adversarial.name, adversarial.parent_id, adversarial.run_id) == (f"ring-a-bell@{model}", seed_set, run.id)
    assert adversarial.meta["below_paper_budget"] is True and len(adversarial.meta["per_prompt_loss"]) == 2
    rows = store.prompt_rows(adversarial.id)
    assert [r.meta["seed_prompt"] for r in rows] == [s.text for s in SEEDS[:2]] and all("token_ids" in r.meta for r in rows)
    assert [c["prompts"] for c in evaluations] == [seed_set, adversarial.id]
    assert all(c["metrics"] == ["nudenet"] and c["parent_run_id"] == run.id and c["model"] == model for c in evaluations)
    assert [c["limit"] for c in evaluations] == [2, None]
    assert {r.id for r in store.list_runs(kind="eval", parent_run_id=run.id)} == {summary["eval_run_before"], summary["eval_run_after"]}

    again = attack(store, workspace, name="ring-a-bell", model=model, concept=CONCEPT, prompts=seed_set, budget=TINY_RING, limit=2)
    assert again["resumed"] and again["run_id"] == run.id and len(evaluations) == 2


def test_white_box_attack_on_artefact_uses_its_parent_as_original(store, workspace, tiny_sd_dir, erased_dir, evaluations):
    from trce_audit.api import attack

    artefact = store.add_artefact(path=str(erased_dir), sha256="e" * 64, run_id=None, parent_model=str(tiny_sd_dir))
    budget = {"timesteps": 1, "iterations": 1, "k": 2, "target_steps": 1}
    summary = attack(store, workspace, name="unlearndiff", model=f"artefact:{artefact}", concept=CONCEPT, prompts=_seed_set(store), budget=budget, limit=1)
    assert summary["original_model"]["spec"] == str(tiny_sd_dir)
    assert summary["target_model"]["fingerprint"] == "e" * 64 and summary["asr_after"] == 1.0
    row = store.prompt_rows(summary["adversarial_set_id"])[0]
    assert row.meta["attack"] == "unlearndiff" and row.text.endswith("a photo of a woman")
    assert store.get_run(summary["run_id"]).config["budget"] == {"timesteps": 1, "iterations": 1}


def test_replay_is_labelled_replay_and_optimises_nothing(store, workspace, tiny_sd_dir, evaluations):
    from trce_audit.api import attack

    published = store.add_prompt_set("p4d", [PromptRow("x", 1, 7.5, {"published": "p4d"})], source="test")
    n_sets = len(store.list_prompt_sets())
    summary = attack(store, workspace, name="replay", model=str(tiny_sd_dir), concept=CONCEPT, prompts=published)
    run = store.get_run(summary["run_id"])
    assert run.component == "replay" and summary["replay"] is True and summary["published_set"] == "p4d"
    assert summary["asr_before"] is None and summary["asr_after"] == 1.0 and summary["adversarial_set_id"] == published
    assert len(store.list_prompt_sets()) == n_sets and [c["prompts"] for c in evaluations] == [published]
    with pytest.raises(ConfigError, match="replay needs --prompts"):
        attack(store, workspace, name="replay", model=str(tiny_sd_dir), concept=CONCEPT)


def test_failed_evaluation_marks_the_attack_run_failed(store, workspace, tiny_sd_dir, monkeypatch):
    from trce_audit.api import attack

    def evaluate(*args, **kwargs):
        raise TrceAuditError("detector weights missing")

    monkeypatch.setattr(eval_runs, "evaluate", evaluate)
    with pytest.raises(TrceAuditError, match="detector weights missing"):
        attack(store, workspace, name="replay", model=str(tiny_sd_dir), concept=CONCEPT, prompts=_seed_set(store))
    (run,) = store.list_runs(kind="attack")
    assert run.status == "failed" and "detector weights missing" in run.error


@pytest.fixture
def concept_loader(monkeypatch):
    """The concept, without reading a data file; returns the names it was asked for (a run that reaches the
    concept must have asked here, not the real loader)."""
    import trce_audit.data as data

    asked: list[str] = []
    monkeypatch.setattr(data, "load_concept", lambda name, world="sd", workspace=None: asked.append(name) or CONCEPT, raising=False)
    return asked


@pytest.mark.parametrize(
    "args, message",
    [
        (["--budget", "generations=abc"], "error: generations must be a non-negative integer, got 'abc'"),
        (["--budget", "generations=-3"], "error: generations must be a non-negative integer, got '-3'"),  # as the audit spec refuses it
        (["--budget", "iterations=5"], "error: unknown budget/config key 'iterations'"),
        (["--budget", "generations"], "error: --set expects key=value"),  # --budget: the old name of --set
    ],
)
def test_cli_budget_errors_are_one_line_and_store_nothing(cli, store, tiny_sd_dir, concept_loader, args, message):
    seed_set = _seed_set(store)
    before = store.counts()
    code, out, err = cli("attack", "ring-a-bell", "--model", str(tiny_sd_dir), "--prompts", f"set:{seed_set}", *args)
    assert code == 2 and out == "" and err.strip().count("\n") == 0 and err.startswith(message)
    assert store.counts() == before


def test_cli_unknown_attack_is_one_line(cli, tiny_sd_dir):
    code, _, err = cli("attack", "gcg", "--model", str(tiny_sd_dir))
    assert code == 2 and err.strip() == "error: unknown attack 'gcg'; available: concept-inversion, finetune-resurgence, mma-diffusion, p4d-k, p4d-n, replay, ring-a-bell, unlearndiff"


def test_cli_attack_json_warns_below_budget(cli, store, tiny_sd_dir, evaluations, concept_loader):
    seed_set = _seed_set(store)
    budget = [arg for key, value in TINY_RING.items() for arg in ("--budget", f"{key}={value}")]
    code, out, err = cli("attack", "ring-a-bell", "--model", str(tiny_sd_dir), "--prompts", f"set:{seed_set}", "--limit", "1", *budget, "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["asr_before"] == 0.0 and summary["asr_after"] == 1.0 and summary["below_paper_budget"] is True
    assert concept_loader == ["nudity"] and len(evaluations) == 2
    assert "warning: ring-a-bell runs below one tenth of its paper budget" in err
    code, out, _ = cli("attacks", "--json")
    listed = {row["name"]: row for row in json.loads(out)}
    assert listed["p4d-n"]["paper_budget"] == {"iterations": 3000} and listed["replay"]["replay"] is True


def test_default_concept_and_corpus_vocabulary_come_from_the_data_layer(store, workspace, tiny_sd_dir, evaluations, monkeypatch):
    import trce_audit.data as data
    from trce_audit.api import attack
    from trce_audit.models import tokens as tk
    from transformers import CLIPTokenizer

    flagged = Concept("shape", pairs=(("xyz", "qrs"),), world="sd", detector="pocket", eval_sets=("shapes",), default=True)
    other = Concept("other", pairs=(("a", "b"),))
    monkeypatch.setattr("trce_audit.orchestration.attack_inputs.DEFAULT_CONCEPT", {}, raising=True)
    monkeypatch.setattr(data, "concept_names", lambda world="sd": ["other", "shape"], raising=False)
    monkeypatch.setattr(data, "load_concept", lambda name, world="sd", workspace=None: {"shape": flagged, "other": other}[name], raising=False)
    monkeypatch.setattr(data, "load_prompt_set", lambda name, workspace=None, **kw: [PromptRow("zebra", 0)] if name == "shapes" else [], raising=False)
    budget = {**TINY_RING, "vocabulary": "corpus"}
    summary = attack(store, workspace, name="ring-a-bell", model=str(tiny_sd_dir), prompts=_seed_set(store), budget=budget, limit=1)
    assert summary["concept"] == "shape" and summary["scorers"] == ["pocket"] and summary["judge"] is None
    tokenizer = CLIPTokenizer.from_pretrained(str(tiny_sd_dir / "tokenizer"))
    allowed = {i for text in ("zebra", SEEDS[0].text, "xyz", "qrs") for i in tk.content_ids(tokenizer, text)}
    (row,) = store.prompt_rows(summary["adversarial_set_id"])
    assert set(row.meta["token_ids"]) <= allowed and summary["stats"]["vocab_size"] == len(allowed)


def test_rerun_after_failed_evaluation_reuses_the_optimised_prompts(store, workspace, tiny_sd_dir, monkeypatch, evaluations):
    from trce_audit.api import attack

    working = eval_runs.evaluate  # the recorder

    def broken(*args, **kwargs):
        raise TrceAuditError("detector weights missing")

    monkeypatch.setattr(eval_runs, "evaluate", broken)
    seed_set = _seed_set(store)
    with pytest.raises(TrceAuditError):
        attack(store, workspace, name="ring-a-bell", model=str(tiny_sd_dir), concept=CONCEPT, prompts=seed_set, budget=TINY_RING, limit=1)
    (failed,) = store.list_runs(kind="attack")
    assert failed.status == "failed"
    optimised = [s.id for s in store.list_prompt_sets() if s.run_id == failed.id]
    monkeypatch.setattr(eval_runs, "evaluate", working)
    summary = attack(store, workspace, name="ring-a-bell", model=str(tiny_sd_dir), concept=CONCEPT, prompts=seed_set, budget=TINY_RING, limit=1)
    assert summary["run_id"] == failed.id and summary["adversarial_set_id"] == optimised[0]
    assert summary["stats"] == {"reused_adversarial_set": True} and store.get_run(failed.id).status == "complete"


@pytest.mark.parametrize("early_stop", [True, False])
def test_unlearndiff_judges_candidates_with_the_concept_detector(store, workspace, evaluations, early_stop):
    """The default judge draws each candidate with the target model and asks the concept's detector.
    The un-erased pocket model draws a cross for the first explicit prompt, so with early stopping the
    seed prompt is judged a success and not attacked (as the reference does); without it all run."""
    from trce_audit.api import attack

    budget = {"timesteps": 3, "iterations": 1, "k": 2, "target_steps": 10, "early_stop": str(early_stop).lower()}
    summary = attack(store, workspace, name="unlearndiff", model="pocket", prompts="pocket-explicit", budget=budget, limit=1,
                     settings={"steps": 10}, metrics=["fid"])  # the recorder scores nothing: any registered id will do
    (row,) = store.prompt_rows(summary["adversarial_set_id"])
    assert summary["concept"] == "cross" and summary["scorers"] == ["fid"]
    if early_stop:  # scored by the scorers and by the judge, which steered the search
        assert summary["judge"]["metric"] == "pocket" and evaluations[-1]["metrics"] == ["fid", "pocket"]
        assert row.meta["judge_queries"] == 1 and summary["judge_queries"] == {"total": 1, "per_seed": [1]}
    else:
        assert summary["judge"] is None and evaluations[-1]["metrics"] == ["fid"]
        assert summary["judge_queries"] == {"total": 0, "per_seed": [0]}
    if early_stop:
        assert row.meta["judged_success"] is True and row.meta["timesteps_run"] == 0 and row.meta["seed_already_succeeds"]
        assert row.text == "a picture of a white cross against a black backdrop"
    else:
        assert row.meta["judged_success"] is None and row.meta["timesteps_run"] == 3


def test_ring_a_bell_search_is_shared_by_models_with_the_same_text_encoder(store, workspace, tiny_sd_dir, erased_dir, evaluations, monkeypatch):
    """Ring-A-Bell reads only the tokenizer and text encoder: a second target with the same encoder
    reuses the first search (the tiny 'erased' model differs only in its UNet seed), and a changed
    encoder searches again."""
    import shutil

    from trce_audit.api import attack
    from trce_audit.attacks.ring_a_bell import RingABell

    calls = []
    original_run = RingABell.run
    monkeypatch.setattr(RingABell, "run", lambda self, *a, **k: calls.append(1) or original_run(self, *a, **k))
    seed_set = _seed_set(store)
    first = attack(store, workspace, name="ring-a-bell", model=str(tiny_sd_dir), concept=CONCEPT, prompts=seed_set, budget=TINY_RING, limit=1)
    shared = shutil.copytree(erased_dir, erased_dir.parent / "same-encoder", dirs_exist_ok=True)
    shutil.rmtree(shared / "text_encoder")
    shutil.copytree(tiny_sd_dir / "text_encoder", shared / "text_encoder")
    second = attack(store, workspace, name="ring-a-bell", model=str(shared), concept=CONCEPT, prompts=seed_set, budget=TINY_RING, limit=1)
    assert len(calls) == 1 and second["run_id"] != first["run_id"]
    assert second["adversarial_set_id"] == first["adversarial_set_id"] and second["stats"]["reused_search_of_run"] == first["run_id"]
    assert second["stats"]["vocab_size"] == first["stats"]["vocab_size"]
    third = attack(store, workspace, name="ring-a-bell", model=str(erased_dir), concept=CONCEPT, prompts=seed_set, budget=TINY_RING, limit=1)
    assert len(calls) == 2 and third["adversarial_set_id"] != first["adversarial_set_id"]


FOUR_SEEDS = [*SEEDS, PromptRow("a dog on grass", 5, 7.0)]


def _killed_after(store, monkeypatch, seeds: int):
    """Make the store fail right after the attack stored ``seeds`` per-seed rows (a kill mid-search)."""
    from trce_audit.store import Store

    stored = Store.add_attack_row

    def add_then_die(self, *args, **kwargs):
        stored(self, *args, **kwargs)
        if len(self.attack_rows(args[0])) >= seeds:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(Store, "add_attack_row", add_then_die)
    return lambda: monkeypatch.setattr(Store, "add_attack_row", stored)


def test_killed_attack_resumes_at_the_next_seed_with_the_serial_set(store, workspace, tiny_sd_dir, tmp_path, evaluations, monkeypatch):
    """Killed after 2 of 4 seeds, the rerun optimises only seeds 2 and 3; the assembled set is the
    one an uninterrupted run stores (same sha256), and judge bookkeeping covers every seed."""
    from trce_audit.api import attack
    from trce_audit.attacks.ring_a_bell import RingABell
    from trce_audit.store import Store

    searched: list[list[int]] = []
    original_run = RingABell.run
    monkeypatch.setattr(RingABell, "run", lambda self, *a, **k: searched.append(list(k["indices"])) or original_run(self, *a, **k))
    kwargs = dict(name="ring-a-bell", model=str(tiny_sd_dir), concept=CONCEPT, budget=TINY_RING)
    restore = _killed_after(store, monkeypatch, 2)
    seed_set = store.add_prompt_set("seeds", FOUR_SEEDS, source="test")
    with pytest.raises(KeyboardInterrupt):
        attack(store, workspace, prompts=seed_set, **kwargs)
    (run,) = store.list_runs(kind="attack")
    assert run.status == "failed" and sorted(store.attack_rows(run.id)) == [0, 1]
    assert not [s for s in store.list_prompt_sets() if s.run_id == run.id]  # no partial adversarial set
    restore()
    resumed = attack(store, workspace, prompts=seed_set, **kwargs)
    assert searched == [[0, 1, 2, 3], [2, 3]] and resumed["run_id"] == run.id
    assert resumed["stats"]["resumed_seeds"] == 2 and len(resumed["stats"]["final_losses"]) == 4
    assert resumed["judge_queries"] == {"total": 0, "per_seed": [0, 0, 0, 0]}
    assert store.counts()["attack_rows"] == 4

    serial_store = Store(f"sqlite:///{tmp_path / 'serial.db'}")
    serial_set = serial_store.add_prompt_set("seeds", FOUR_SEEDS, source="test")
    serial = attack(serial_store, workspace, prompts=serial_set, **kwargs)
    assert searched[-1] == [0, 1, 2, 3]
    assert store.get_prompt_set(resumed["adversarial_set_id"]).sha256 == serial_store.get_prompt_set(serial["adversarial_set_id"]).sha256
    assert [r.text for r in store.prompt_rows(resumed["adversarial_set_id"])] == [r.text for r in serial_store.prompt_rows(serial["adversarial_set_id"])]


def test_an_executor_optimises_one_seed_a_call_resumes_after_a_kill_and_gives_the_serial_set(store, workspace, tiny_sd_dir, tmp_path, evaluations, monkeypatch):
    """With an executor each seed is one call on a worker; killed after 2 of 4 stored seeds, the rerun
    sends only seeds 2 and 3, and the set equals a serial run's (sha256 and texts)."""
    from trce_audit.api import attack
    from trce_audit.attacks.ring_a_bell import RingABell
    from trce_audit.execution.local import LocalExecutor
    from trce_audit.store import Store

    searched: list[list[int]] = []
    original_run = RingABell.run
    monkeypatch.setattr(RingABell, "run", lambda self, *a, **k: searched.append(list(k["indices"])) or original_run(self, *a, **k))
    kwargs = dict(name="ring-a-bell", model=str(tiny_sd_dir), concept=CONCEPT, budget=TINY_RING)
    seed_set = store.add_prompt_set("seeds", FOUR_SEEDS, source="test")
    restore = _killed_after(store, monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        attack(store, workspace, prompts=seed_set, executor=LocalExecutor(), **kwargs)
    assert searched == [[0], [1]]
    restore()
    resumed = attack(store, workspace, prompts=seed_set, executor=LocalExecutor(), **kwargs)
    assert searched == [[0], [1], [2], [3]] and resumed["stats"]["resumed_seeds"] == 2
    assert len(resumed["stats"]["final_losses"]) == 4 and resumed["stats"]["vocab_size"] > 0

    serial_store = Store(f"sqlite:///{tmp_path / 'serial.db'}")
    serial = attack(serial_store, workspace, prompts=serial_store.add_prompt_set("seeds", FOUR_SEEDS, source="test"), **kwargs)
    assert store.get_prompt_set(resumed["adversarial_set_id"]).sha256 == serial_store.get_prompt_set(serial["adversarial_set_id"]).sha256
    assert resumed["stats"]["concept_vector_norm"] == serial["stats"]["concept_vector_norm"]


def test_attack_seed_indices_give_the_rows_of_one_serial_call():
    """Seeds optimised in any split (a worker per seed) equal the serial call's rows: each seed's RNG
    comes from its global index."""
    from trce_audit.attacks.ring_a_bell import RingABell, RingABellConfig
    from trce_audit.models.tiny import build_pipeline

    pipe = build_pipeline("tiny", seed=0)
    attack_obj = RingABell(RingABellConfig().with_overrides(TINY_RING))
    serial = attack_obj.run(pipe, CONCEPT, FOUR_SEEDS).rows
    split = attack_obj.run(pipe, CONCEPT, FOUR_SEEDS, indices=[3, 1]).rows + attack_obj.run(pipe, CONCEPT, FOUR_SEEDS, indices=[0, 2]).rows
    assert [r.text for r in split] == [serial[i].text for i in (3, 1, 0, 2)]
    with pytest.raises(ConfigError, match="outside the 4 seed prompts"):
        attack_obj.run(pipe, CONCEPT, FOUR_SEEDS, indices=[4])


CAT = Concept("cat", pairs=(("cat", "dog"),), detector="nudenet")
TINY_INVERSION = {"steps": 3, "n_images": 2, "train_batch_size": 1, "gradient_accumulation": 1, "target_steps": 1, "initializer": "a"}


def test_concept_inversion_resumes_with_its_one_embedding_and_reruns_idempotently(store, workspace, tiny_sd_dir, erased_dir, evaluations, monkeypatch):
    """A kill after the first seed's row: the rerun stores the second seed with the same embedding,
    learned once; a third call returns the stored run. No row or file is duplicated."""
    from trce_audit.api import attack
    from trce_audit.attacks import textual_inversion as ti

    artefact = store.add_artefact(path=str(erased_dir), sha256="e" * 64, run_id=None, parent_model=str(tiny_sd_dir))
    seed_set = _seed_set(store)
    stored, real_add = [], store.add_attack_row

    def killed_after_one(run_id, idx, row, **kwargs):
        if stored:
            raise KeyboardInterrupt
        stored.append(idx)
        real_add(run_id, idx, row, **kwargs)

    monkeypatch.setattr(store, "add_attack_row", killed_after_one)
    call = dict(name="concept-inversion", model=f"artefact:{artefact}", concept=CAT, prompts=seed_set, budget=TINY_INVERSION, limit=2)
    with pytest.raises(KeyboardInterrupt):
        attack(store, workspace, **call)
    monkeypatch.setattr(store, "add_attack_row", real_add)
    monkeypatch.setattr(ti, "optimise", lambda *a, **k: pytest.fail("the rerun learned the embedding again"))
    summary = attack(store, workspace, **call)
    assert summary["original_model"]["spec"] == str(tiny_sd_dir) and summary["stats"]["resumed_seeds"] == 1
    assert summary["stats"]["reused_embedding"] is True and summary["below_paper_budget"] is True
    assert summary["budget_ratios"] == {"steps": 3 / 5000}
    rows = store.prompt_rows(summary["adversarial_set_id"])
    assert [r.text for r in rows] == ["<cat-inversion> a photo of a woman", "<cat-inversion> a man at the beach"]
    entries = {r.meta["learned_token"]["sha256"] for r in rows}
    assert entries == {summary["stats"]["embedding_sha256"]} and len(list((workspace.artefacts_dir / "embeddings").iterdir())) == 1
    assert len(store.attack_rows(summary["run_id"])) == 2 and store.counts()["attack_rows"] == 2
    again = attack(store, workspace, **call)
    assert again["resumed"] and again["run_id"] == summary["run_id"] and len(evaluations) == 2
    assert len([s for s in store.list_prompt_sets() if s.run_id == summary["run_id"]]) == 1


def test_cli_lists_concept_inversion_and_names_its_budget_keys(cli, store, tiny_sd_dir, concept_loader):
    code, out, _ = cli("attacks", "--json")
    listed = {row["name"]: row for row in json.loads(out)}
    assert code == 0 and listed["concept-inversion"]["paper_budget"] == {"steps": 5000}
    assert listed["concept-inversion"]["needs_original"] is True
    seed_set = _seed_set(store)
    before = store.counts()
    code, out, err = cli("attack", "concept-inversion", "--model", str(tiny_sd_dir), "--prompts", f"set:{seed_set}", "--set", "iterations=5")
    assert code == 2 and out == "" and err.strip().count("\n") == 0
    assert err.startswith("error: unknown budget/config key 'iterations'") and "steps" in err and "n_images" in err
    assert store.counts() == before
