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
    [asr] = first["metrics"]
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
    assert third["metrics"][0]["protocol"]["classes_preset"] == "strict"


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--metric", "nosuch"), "unknown metric 'nosuch'"),
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
    from trce_audit.api.evaluate import evaluate
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
