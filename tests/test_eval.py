"""`trce-audit eval`: generate then measure, everything stored, a repeat call reuses it all."""

from __future__ import annotations

import json

import pytest

from trce_audit.store import PromptRow

GEN = ("--steps", "2", "--height", "32", "--width", "32", "--batch-size", "4")


def eight_prompts(store) -> int:
    return store.add_prompt_set("eight", [PromptRow(f"a picture of thing {i}", seed=i, guidance=(7.5, 2.0)[i % 2]) for i in range(8)])


def test_eval_nudenet_json_and_repeat_reuses_everything(cli, store, tiny_sd_dir):
    pytest.importorskip("nudenet")
    set_id = eight_prompts(store)
    args = ("eval", "--model", str(tiny_sd_dir), "--prompts", str(set_id), "--metric", "nudenet", *GEN, "--json")
    code, out, err = cli(*args)
    assert code == 0, err
    first = json.loads(out)
    assert first["n_images"] == 8 and first["generated"] == 8
    [asr] = [m for m in first["metrics"] if m["scorer"] == "nudenet"]
    assert len(first["metrics"]) == 6  # its own number and five published protocols, from one pass
    assert asr["name"] == "asr" and asr["n"] == 8 and 0.0 <= asr["ci_low"] <= asr["value"] <= asr["ci_high"] <= 1.0
    for field in ("detector", "detector_version", "weights_sha256", "threshold", "counted_classes", "prompt_set", "model"):
        assert field in asr["protocol"]
    assert asr["protocol"]["prompt_set"]["sha256"] == store.get_prompt_set(set_id).sha256

    eval_run = store.get_run(first["run_id"])
    assert eval_run.kind == "eval" and eval_run.status == "complete"
    assert eval_run.summary["generation_run_id"] == first["generation_run_id"]
    assert store.get_run(first["generation_run_id"]).kind == "generate"
    assert len(store.detected_generation_ids(first["run_id"], "nudenet")) == 8

    counts = store.counts()
    code, out, err = cli(*args[:-1], "--batch-size", "3")  # another batch size: same runs; a table
    assert code == 0, err
    assert "asr" in out and "nudenet" in out and f"[{asr['ci_low']:.3f}, {asr['ci_high']:.3f}]" in out
    code, out, err = cli(*args[:-1], "--batch-size", "3", "--json")
    assert code == 0, err
    second = json.loads(out)
    assert store.counts() == counts
    assert second["generated"] == 0 and second["metrics"] == first["metrics"]
    assert (second["run_id"], second["generation_run_id"]) == (first["run_id"], first["generation_run_id"])

    # Another threshold is another eval run over the same images and detections.
    code, out, err = cli(*args[:-1], "--threshold", "0.3", "--classes", "strict", "--json")
    assert code == 0, err
    third = json.loads(out)
    assert third["run_id"] != first["run_id"] and third["generation_run_id"] == first["generation_run_id"]
    after = store.counts()
    assert after["generations"] == counts["generations"] and after["detections"] == counts["detections"]
    assert third["metrics"][0]["scorer"] == "nudenet" and third["metrics"][0]["protocol"]["classes_preset"] == "strict"


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--metric", "nosuch"), "unknown metric 'nosuch'"),
        (("--metric", "nudenet,nosuch"), "unknown metric 'nosuch'"),  # each name of a comma list is checked
        (("--metric", "nudenet,"), "--metric 'nudenet,' has an empty name"),
        (("--metric", "nudenet,opennsfw", "--metric", "nudenet"), "a metric is named twice"),
        (("--metric", "nudenet", "--classes", "lenient"), "unknown NudeNet class preset"),
        (("--metric", "nudenet", "--fid-ref", "/nonexistent"), "belong to --metric fid"),
        (("--metric", "nudenet", "--dtype", "fp8"), "unknown dtype"),
    ],
)
def test_eval_bad_input_is_one_line_and_stores_nothing(cli, store, tiny_sd_dir, extra, message):
    set_id = eight_prompts(store)
    before = store.counts()
    code, out, err = cli("eval", "--model", str(tiny_sd_dir), "--prompts", str(set_id), *extra, *GEN)
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1
    assert store.counts() == before


def test_evaluate_api_with_fid_failure_records_a_failed_run(store, workspace, tiny_sd_dir):
    from trce_audit.api import evaluate
    from trce_audit.errors import ConfigError
    from trce_audit.generation import GenerationSettings

    set_id = store.add_prompt_set("two", [PromptRow("a lamp", seed=1), PromptRow("a chair", seed=2)])
    settings = GenerationSettings(steps=2, height=32, width=32)
    with pytest.raises(ConfigError, match="Inception"):
        evaluate(store, workspace, model=str(tiny_sd_dir), prompts=set_id, metrics=["fid"], settings=settings,
                 metric_options={"fid": {"reference": str(workspace.root)}})
    [failed] = store.list_runs(kind="eval")
    assert failed.status == "failed" and "Inception" in failed.error
    [generation] = store.list_runs(kind="generate")
    assert generation.status == "complete" and len(store.generations(generation.id)) == 2


# ------------------------------------------------------------------ failures never count as safe
def pixel_digest(array) -> str:
    import hashlib

    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


class RecordingDetector:
    """A NudeNet stand-in: finds nothing, records a digest of each image it scored (NudeNet is handed
    the decoded pixels, metrics/pixels.py), raises from call ``fail_at`` on."""

    def __init__(self, fail_at=None):
        self.paths: list[str] = []
        self.calls = 0
        self.fail_at = fail_at

    def detect_batch(self, arrays, batch_size=4):
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise RuntimeError("onnxruntime session crashed")
        self.paths += [pixel_digest(array) for array in arrays]
        return [[] for _ in arrays]


def nudenet_eval(store, workspace, tiny_sd_dir, set_id):
    from trce_audit.api import evaluate
    from trce_audit.generation import GenerationSettings

    return evaluate(store, workspace, model=str(tiny_sd_dir), prompts=set_id, metrics=["nudenet"],
                    settings=GenerationSettings(steps=2, height=32, width=32))


@pytest.fixture
def fake_nudenet(monkeypatch):
    pytest.importorskip("nudenet")
    from trce_audit.metrics.nudenet import NudeNetASR

    detector = RecordingDetector()
    monkeypatch.setattr(NudeNetASR, "_nude_detector", lambda self, resolution: detector)
    monkeypatch.setattr(NudeNetASR, "detect_batch_size", 2)
    return detector


def test_a_detector_error_fails_the_eval_and_counts_nothing_as_safe(store, workspace, tiny_sd_dir, fake_nudenet):
    from trce_audit.errors import DataError

    fake_nudenet.fail_at = 1
    set_id = eight_prompts(store)
    with pytest.raises(DataError, match=r"nudenet detector failed on image .*\.png: RuntimeError: onnxruntime session crashed"):
        nudenet_eval(store, workspace, tiny_sd_dir, set_id)
    [failed] = store.list_runs(kind="eval")
    assert failed.status == "failed" and "onnxruntime session crashed" in failed.error and "\n" not in failed.error
    assert store.metrics(failed.id) == [] and store.counts()["detections"] == 0


def test_a_rerun_after_a_detector_failure_scores_only_the_missing(store, workspace, tiny_sd_dir, fake_nudenet):
    from trce_audit.errors import DataError

    set_id = eight_prompts(store)
    fake_nudenet.fail_at = 3  # the third chunk of two images fails
    with pytest.raises(DataError, match="nudenet detector failed on image"):
        nudenet_eval(store, workspace, tiny_sd_dir, set_id)
    [eval_run] = store.list_runs(kind="eval")
    assert eval_run.status == "failed" and store.metrics(eval_run.id) == []
    scored = list(fake_nudenet.paths)
    assert len(scored) == 4 and store.counts()["detections"] == 4  # two chunks scored and kept

    fake_nudenet.fail_at, fake_nudenet.calls = None, 0
    result = nudenet_eval(store, workspace, tiny_sd_dir, set_id)
    [generation_run] = store.list_runs(kind="generate")
    from trce_audit.metrics.pixels import bgr

    paths = sorted(pixel_digest(bgr(g.image_path)) for g in store.generations(generation_run.id))
    assert len(fake_nudenet.paths) == 8 and sorted(fake_nudenet.paths) == paths  # the rerun scored the other four only
    assert result["run_id"] == eval_run.id and store.get_run(eval_run.id).status == "complete"
    assert {m["n"] for m in result["metrics"]} == {8} and store.counts()["detections"] == 8
