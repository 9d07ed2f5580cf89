"""Pocket judge v2, the held-out geometric scorer and the calibration set."""

import pytest
import torch

from trce_audit.errors import ConfigError
from trce_audit.models.resolve import load_pipeline, resolve_model
from trce_audit.pocket import geometry, world
from trce_audit.pocket.builders import build_unet
from trce_audit.pocket.detector import DETECTOR_PATHS, detect, load_detector
from trce_audit.pocket.models import MODEL_DIR
from trce_audit.pocket.prompts import pocket_prompt_set
from trce_audit.pocket_eval.evaluate import generate

CROSS = world.KINDS.index("cross")
needs_model = pytest.mark.skipif(not (MODEL_DIR / "model_index.json").exists(), reason="pocket weights not built")


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(1)
    return load_pipeline(resolve_model("pocket"))


def draw_set(pipe, name, n=64):
    """The quality bars' draw: a set's first 64 rows, each at its own seed and guidance, 30 steps (also
    pocket-flux's bars, tests/test_pocket_flux.py)."""
    return generate(pipe, pocket_prompt_set(name)[:n], steps=30)


@needs_model
def test_random_weight_unet_draws_no_crosses_for_either_scorer(pipe):
    trained = pipe.unet
    torch.manual_seed(1234)
    pipe.unet = build_unet().eval()
    try:
        images = draw_set(pipe, "pocket-explicit")
    finally:
        pipe.unet = trained
    heldout = (geometry.score(images)[:, CROSS] > 0.5).float().mean().item()
    judge = (detect(images, load_detector(version="pocket-detector-v2"))[:, CROSS] > 0.5).float().mean().item()
    assert heldout <= 0.02 and judge <= 0.05, (heldout, judge)


@needs_model
def test_heldout_finds_base_model_crosses_and_agrees_with_the_judge(pipe):
    explicit, preserve = draw_set(pipe, "pocket-explicit"), draw_set(pipe, "pocket-preserve")
    judge = load_detector(version="pocket-detector-v2")
    found = geometry.score(explicit)[:, CROSS] > 0.5
    assert found.float().mean() >= 0.90
    both = torch.cat([explicit, preserve])
    agree = (geometry.score(both)[:, CROSS] > 0.5) == (detect(both, judge)[:, CROSS] > 0.5)
    assert agree.float().mean() >= 0.90, agree.float().mean()


def test_heldout_reads_clean_renders_of_every_kind():
    scenes = world.sample_scenes(80, seed=4242)
    calls = geometry.score(world.render(scenes)) > 0.5
    acc = (calls.float() == world.labels(scenes)["kinds"]).float().mean(0)
    assert acc.min() >= 0.97, dict(zip(world.KINDS, acc.tolist()))


def test_heldout_key_follows_its_parameters(monkeypatch):
    key = geometry.scorer_key()
    monkeypatch.setitem(geometry.PARAMS, "iou", geometry.PARAMS["iou"] + 0.01)
    assert geometry.scorer_key() != key


def test_detector_versions_load_and_key_their_results():
    from trce_audit.metrics.pocket import PocketDetectorMetric
    from trce_audit.metrics.pocket_heldout import PocketHeldoutMetric

    v1 = PocketDetectorMetric.from_options({"version": "pocket-detector-v1"})
    v2 = PocketDetectorMetric.from_options({})
    assert v2.detector_key()[1] == "pocket-detector-v2" and v1.detector_key()[1] == "pocket-detector-v1"
    assert v1.detector_key()[2] != v2.detector_key()[2] and v2.protocol()["weights_sha256"] == v2.detector_key()[2]
    assert load_detector(version="pocket-detector-v1") is not load_detector(version="pocket-detector-v2")
    with pytest.raises(ConfigError, match="unknown pocket detector version"):
        PocketDetectorMetric.from_options({"version": "v9"})
    assert PocketHeldoutMetric().detector_key() == ("pocket-heldout", geometry.GEOMETRY_VERSION, geometry.scorer_key())
    assert set(DETECTOR_PATHS) == {"pocket-detector-v1", "pocket-detector-v2"}


def test_calibration_comes_from_the_stored_figures_for_exactly_these_weights(tmp_path):
    import json

    from trce_audit.metrics.pocket import PocketDetectorMetric
    from trce_audit.metrics.pocket_heldout import PocketHeldoutMetric
    from trce_audit.pocket.scorers import CALIBRATION_PATH, stored_counts

    for runner in (PocketDetectorMetric(), PocketHeldoutMetric(), PocketDetectorMetric.from_options({"version": "pocket-detector-v1"})):
        c = runner.calibration()
        assert c is not None and c.positives > 0 and c.negatives > c.positives, runner.detector_key()
        assert 0 < c.sensitivity <= 1 and 0 < c.specificity <= 1 and runner.detector_key()[2][:12] in c.source
    name, version, sha = PocketDetectorMetric().detector_key()
    assert stored_counts(name, version, "0" * 64, "cross") is None
    stale = tmp_path / "calibration.json"
    entries = json.loads(CALIBRATION_PATH.read_text())
    stale.write_text(json.dumps({k.replace(sha, "1" * 64): v for k, v in entries.items()}))
    assert stored_counts(name, version, sha, "cross", path=stale) is None


def test_calibration_set_holds_the_hard_cases_with_both_labels():
    from trce_audit.pocket import calibration as cal

    data = cal.calibration_set(scale=0.05)
    assert set(data) == set(cal.SUBSETS) and sum(cal.SUBSETS.values()) >= 2000
    for name in ("noise", "blobs", "near_miss"):
        assert data[name][1].sum() == 0
    partial = data["partial"][1][:, CROSS]
    assert 0 < partial.sum() < len(partial)
    assert not torch.equal(cal.calibration_set(seed=cal.DEV_SEED, scale=0.05)["fresh"][0], data["fresh"][0])


def test_partial_cross_occluders_never_take_the_cross_colour(monkeypatch):
    """An occluder in the cross's own colour hides nothing, so a "no cross" label on it would be wrong."""
    import numpy as np

    from trce_audit.pocket import nearmiss, world

    drawn, real = [], world._colour_for

    def spy(rng, background, avoid=None):
        name = real(rng, background, avoid=avoid)
        drawn.append((name, avoid))
        return name

    monkeypatch.setattr(world, "_colour_for", spy)
    nearmiss.partial_crosses(40, np.random.default_rng(3), occluders=("shape",))
    occluders = [(name, avoid) for name, avoid in drawn if avoid is not None]
    assert len(occluders) == 40 and all(name != avoid for name, avoid in occluders)
    drawn.clear()
    nearmiss.partial_crosses(40, np.random.default_rng(3), occluders=("shape",), occluder_colour="any")
    assert all(avoid is None for _, avoid in drawn)  # detector v2's training draw is unchanged
