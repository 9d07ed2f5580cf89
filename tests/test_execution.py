"""The executor seam: the local executor is today's path, executor options are runtime only (never
part of a run's identity), and importing the api or the execution package pulls in neither ray nor torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trce_audit.errors import ConfigError
from trce_audit.execution import ExecutorOptions, make_executor
from trce_audit.execution.local import LocalExecutor
from trce_audit.store import PromptRow

ROWS = [PromptRow("a red circle", 1, 5.0), PromptRow("a blue square", 2, 5.0), PromptRow("a green cross", 3, 5.0)]


def test_api_and_execution_import_neither_ray_nor_torch():
    code = ("import sys\nimport trce_audit.api, trce_audit.execution, trce_audit.execution.local\n"
            "print('HEAVY=' + ','.join(sorted(m for m in ('ray', 'torch', 'diffusers') if m in sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY=\n" in out


class ClusterLike(LocalExecutor):
    """Runs in process but reports what a Ray pool would: the options must not reach the identity."""

    def runtime(self):
        return {"executor": "ray", "workers": 8, "gpus_per_worker": 0.5, "cpus_per_worker": 4, "max_retries": 2}


def test_executor_options_are_runtime_only(store, workspace, tiny_sd_dir, tmp_path):
    import torch

    from trce_audit.generation import GenerationSettings
    from trce_audit.generation.runner import ENGINE_NAME, ENGINE_VERSION, run_generation
    from trce_audit.models.resolve import resolve_model
    from trce_audit.store import Store, run_identity

    settings = GenerationSettings(steps=2, batch_size=2, device="cpu")
    ref = resolve_model(str(tiny_sd_dir), store=store, workspace=workspace)
    results = []
    for name, executor in (("none", None), ("local", LocalExecutor()), ("cluster", ClusterLike())):
        other = Store(f"sqlite:///{tmp_path / (name + '.db')}")
        set_id = other.add_prompt_set("shapes", ROWS, source="test")
        result = run_generation(other, workspace, ref, set_id, settings, executor=executor)
        results.append((result, other.get_run(result.run_id), [g.image_sha256 for g in other.generations(result.run_id)]))
        prompt_sha = other.get_prompt_set(set_id).sha256
    # the identity is exactly what it was before executors existed: kind, engine, pixel settings, model, prompts
    pinned = run_identity(
        "generate", ENGINE_NAME, {**settings.validate().resolved(ref.path).pixel_config(), "limit": None},
        component_version=ENGINE_VERSION, model_fingerprint=ref.fingerprint, prompt_set_sha=prompt_sha,
    )
    assert {r.identity for r, _, _ in results} == {pinned}
    assert results[0][2] == results[1][2] == results[2][2]  # same images on every executor
    assert "executor" not in results[0][1].runtime and results[1][1].runtime["executor"] == "local"
    # and where the shards were drawn: this process's thread count (in-process executors)
    recorded = results[2][1].runtime
    assert {k: v for k, v in recorded.items() if k not in ("attempt_started", "seconds")} == {
        "batch_size": 2, "device": "cpu", **ClusterLike().runtime(), "threads": torch.get_num_threads()}
    assert recorded["seconds"] >= 0  # the attempt's own time (store/runs.py finish)


@pytest.mark.parametrize("options, message", [
    (ExecutorOptions("spark"), "unknown executor 'spark'"),
    (ExecutorOptions("local", workers=2), "--workers apply to --executor ray"),
    (ExecutorOptions("ray", max_retries=-1), "--max-retries must be between 0 and 10"),
])
def test_bad_executor_options_are_one_line_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        make_executor(options)


def test_local_executor_keeps_a_bounded_cache_of_job_state():
    from trce_audit.execution.worker import CACHE_SIZE, Worker

    built = []

    class Job:
        def __init__(self, key):
            self.cache_key = key

        def setup(self):
            built.append(self.cache_key)
            return self.cache_key

        def run(self, state, shard):
            return (state, shard)

    worker = Worker()
    assert [worker.run(Job(k), i) for i, k in enumerate("aab")] == [("a", 0), ("a", 1), ("b", 2)]
    worker.run(Job("c"), 3)
    worker.run(Job("a"), 4)  # evicted by c (least recently used), so built again
    assert built == ["a", "b", "c", "a"] and len(worker._cache) == CACHE_SIZE

    class Erase(Job):
        drops_worker_cache = True

    worker.run(Erase("e"), 5)  # a training job finds no kept pipeline beside it
    assert list(worker._cache) == ["e"]


def test_a_worker_with_other_detector_weights_is_refused_before_it_draws(store, workspace, tiny_sd_dir):
    from trce_audit.generation import GenerationSettings
    from trce_audit.generation.runner import run_generation
    from trce_audit.generation.shards import DetectorCheck
    from trce_audit.models.resolve import resolve_model

    ref = resolve_model(str(tiny_sd_dir), store=store, workspace=workspace)
    set_id = store.add_prompt_set("shapes", ROWS, source="test")
    other = DetectorCheck("pocket", None, "cross", workspace, ("pocket-cnn", "2", "0" * 64))
    with pytest.raises(ConfigError, match="refused: detector pocket is .* but pocket-cnn/2/0{64} on the driver"):
        run_generation(store, workspace, ref, set_id, GenerationSettings(steps=2, device="cpu"), executor=LocalExecutor(), detectors=[other])
    assert store.counts()["generations"] == 0


def _pocket_eval(tmp_path, name, executor=None):
    from trce_audit.api.evaluation import evaluate
    from trce_audit.generation import GenerationSettings
    from trce_audit.store import Store
    from trce_audit.workspace import Workspace

    data = os.environ.get("TRCE_AUDIT_DATA")
    workspace = Workspace.from_options(tmp_path / name, None, data and Path(data)).ensure()
    store = Store(workspace.db_url)
    result = evaluate(store, workspace, model="pocket", prompts="pocket-explicit", metrics=["pocket", "pocket-heldout"],
                      limit=4, concept="cross", settings=GenerationSettings(steps=3, batch_size=2, device="cpu"),
                      executor=executor)
    return store, result


def test_an_executor_scores_each_shard_on_its_worker_and_commits_it_with_the_images(tmp_path, monkeypatch):
    import trce_audit.metrics.base as metric_base

    plain_store, plain = _pocket_eval(tmp_path, "plain")

    def driver_scored(*args, **kwargs):
        raise AssertionError("the driver scored an image the worker had scored")

    monkeypatch.setattr(metric_base, "detect_chunk", driver_scored)
    store, fused = _pocket_eval(tmp_path, "fused", ClusterLike())
    assert sorted((m["scorer"], m["name"], m["value"]) for m in fused["metrics"]) == \
        sorted((m["scorer"], m["name"], m["value"]) for m in plain["metrics"])
    rows = store.detections(fused["generation_run_id"])  # stored by the generation run, with its shards
    assert {d.detector for d in rows} == {d.detector for d in plain_store.detections(plain["run_id"])} and len(rows) >= 8
    assert len(rows) == plain_store.counts()["detections"] == store.counts()["detections"]


def test_a_shard_whose_detections_fail_to_store_stores_no_image(store):
    set_id = store.add_prompt_set("shapes", ROWS, source="test")
    run = store.start_run(kind="generate", component="test", config={}, prompt_set_id=set_id)
    prompts = store.prompt_rows(set_id)
    records = [dict(prompt_id=p.id, sample_hash=f"h{p.id}", image_path=f"/x/{p.id}.png", image_sha256="0" * 64) for p in prompts]
    bad = [[dict(run_id=run.id, detector="d", label="x", score=1.0)] for _ in prompts]
    bad[-1] = [dict(run_id=run.id, label="x", score=1.0)]  # no detector: the insert fails
    with pytest.raises(Exception):
        store.add_generations(run.id, records, bad)
    assert store.generations(run.id) == [] and store.counts()["detections"] == 0
    good = [[dict(run_id=run.id, detector="d", label="x", score=float(p.id))] for p in prompts]
    ids = store.add_generations(run.id, records, good)
    assert store.add_generations(run.id, records, good) == ids  # a retried shard adds nothing
    assert sorted((d.generation_id, d.score) for d in store.detections(run.id)) == sorted(zip(ids, (float(p.id) for p in prompts)))
