"""Where a run's work ran, in its runtime record: attack, generate and eval runs record torch's thread
count of the process that did the work (the driver, or the worker an executor sent it to) beside the
device, as erase runs do, and a rerun that redoes nothing keeps the first record. None of it is part
of a run's identity."""

from __future__ import annotations

import pytest
from test_attacks_api import CONCEPT, SEEDS, TINY_RING, evaluations  # noqa: F401  (evaluations: a fixture)

from trce_audit.execution.base import Executor
from trce_audit.execution.worker import Worker

pytestmark = pytest.mark.filterwarnings("ignore::trce_audit.attacks.base.BelowPaperBudgetWarning")


class Elsewhere(Executor):
    """Runs each call in this process under its own thread count, as a Ray worker started with
    ``cpus_per_worker`` threads does, and gives the driver's count back after each call."""

    name = "elsewhere"

    def __init__(self, threads: int):
        self.threads, self.worker = threads, Worker()

    def map_unordered(self, job, shards):
        import torch

        for index, shard in enumerate(shards):
            driver = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                result = self.worker.run(job, shard)
            finally:
                torch.set_num_threads(driver)
            yield index, result


def _driver_threads() -> int:
    import torch

    return torch.get_num_threads()


def test_an_attack_records_the_threads_its_search_ran_with(store, workspace, tiny_sd_dir, evaluations):  # noqa: F811
    from trce_audit.api import attack

    seed_set = store.add_prompt_set("seeds", SEEDS, source="test")
    common = dict(name="ring-a-bell", model=str(tiny_sd_dir), concept=CONCEPT, prompts=seed_set, budget=TINY_RING, limit=2)
    here = attack(store, workspace, **common)
    run = store.get_run(here["run_id"])
    assert run.runtime["threads"] == _driver_threads() and run.runtime["device"] == "cpu"

    elsewhere = _driver_threads() + 1
    from trce_audit.store import Store

    other = Store(f"sqlite:///{workspace.root / 'other.db'}")  # a fresh store: the search runs again, on the executor
    set_there = other.add_prompt_set("seeds", SEEDS, source="test")
    there = attack(other, workspace, **{**common, "prompts": set_there}, executor=Elsewhere(elsewhere))
    remote = other.get_run(there["run_id"])
    assert remote.runtime["threads"] == elsewhere != _driver_threads()
    assert remote.runtime["executor"] == "elsewhere" and remote.runtime["device"] == "cpu"
    assert remote.identity == run.identity  # where it ran is not what it is

    again = attack(other, workspace, **{**common, "prompts": set_there})  # stored: nothing is searched again
    assert again["resumed"] and other.get_run(there["run_id"]).runtime == remote.runtime


def _pocket_eval(store, workspace, executor=None):
    from trce_audit.api.evaluation import evaluate
    from trce_audit.generation import GenerationSettings

    return evaluate(store, workspace, model="pocket", prompts="pocket-explicit", metrics=["pocket"], limit=2, concept="cross",
                    settings=GenerationSettings(steps=2, batch_size=2, device="cpu"), executor=executor)


def test_an_eval_records_where_it_drew_and_where_it_scored(store, workspace):
    elsewhere = _driver_threads() + 1
    result = _pocket_eval(store, workspace, Elsewhere(elsewhere))
    drawn = store.get_run(result["generation_run_id"]).runtime
    scored = store.get_run(result["run_id"]).runtime
    assert drawn["threads"] == elsewhere and drawn["device"] == "cpu" and drawn["executor"] == "elsewhere"
    assert scored["threads"] == _driver_threads() and scored["device"] == "cpu"

    import torch

    # everything stored: nothing is drawn or scored again, so a rerun under another thread count records
    # nothing (the pocket runner's preserve_acc never appears on an eval set: it is "pending" every time)
    try:
        torch.set_num_threads(elsewhere)
        again = _pocket_eval(store, workspace)
    finally:
        torch.set_num_threads(elsewhere - 1)
    assert again["run_id"] == result["run_id"] and again["generated"] == 0
    assert store.get_run(result["generation_run_id"]).runtime == drawn and store.get_run(result["run_id"]).runtime == scored


def test_a_run_times_its_finishing_attempt_and_keeps_its_finish_once_complete(store):
    """A run killed and resumed counts the seconds of the attempt that finished it, not the pause since
    its creation; completing it again (a re-measure, a resumed audit passing by) moves nothing."""
    from datetime import timedelta

    from trce_audit.store.schema import Run

    first = store.start_run(kind="eval", component="c", config={"k": 1}, runtime={"device": "cpu"})
    with store.session() as session:  # the first attempt began two hours ago and was killed
        run = session.get(Run, first.id)
        run.created_at -= timedelta(hours=2)
        run.runtime = {**run.runtime, "attempt_started": run.created_at.isoformat()}
    again = store.start_run(kind="eval", component="c", config={"k": 1}, runtime={"device": "cpu"})
    assert again.id == first.id and again.resumed
    store.complete_run(first.id, {"n": 1})
    done = store.get_run(first.id)
    assert 0 <= done.runtime["seconds"] < 600 and done.runtime["device"] == "cpu"  # this attempt's, not 2 h
    store.start_run(kind="eval", component="c", config={"k": 1}, runtime={"device": "cuda"})
    store.complete_run(first.id, {"n": 2})
    later = store.get_run(first.id)
    assert (later.finished_at, later.runtime) == (done.finished_at, done.runtime) and later.summary["n"] == 2
