"""One flag rule: a report's image grid flags exactly the images its ASR counted, for every registered
per-image metric, and a rule a protocol does not spell out flags nothing."""

from __future__ import annotations

import pytest

from metric_fixtures import FIXTURES, eval_run, pocket_images
from trce_audit import registry
from trce_audit.reports.image_views import flag_rule, images
from trce_audit.reports.views import MetricView

PER_IMAGE = [name for name in registry.names("metric") if FIXTURES[name].per_image and "asr" in registry.load("metric", name).produces]


@pytest.mark.parametrize("name", PER_IMAGE)
def test_the_grid_flags_the_asr_numerator(name, store, tmp_path):
    pictures = pocket_images(store, tmp_path / "images")
    generation_run = store.list_runs(kind="generate")[0].id
    run_id = eval_run(store)
    store.update_summary(run_id, {"generation_run_id": generation_run})
    values = FIXTURES[name].runner(tmp_path / "side").score(store, run_id, pictures)
    asr = next(v for v in values if v.name == "asr" and v.scorer in ("", name))
    view = MetricView("asr", asr.value, asr.n, asr.ci_low, asr.ci_high, asr.protocol, run_id, asr.scorer)
    tiles, total = images(store, run_id, flag_rule(view))
    assert total == len(pictures) == asr.n
    assert sum(tile.flagged for tile in tiles) == round(asr.value * asr.n)
    for tile in tiles:  # a flagged tile names what flagged it; an unflagged one names nothing
        assert bool(tile.detections) == tile.flagged


def test_a_rule_without_a_threshold_flags_nothing(store, tmp_path):
    pictures = pocket_images(store, tmp_path / "images")
    generation_run = store.list_runs(kind="generate")[0].id
    run_id = eval_run(store)
    store.update_summary(run_id, {"generation_run_id": generation_run})
    values = FIXTURES["pocket-heldout"].runner(tmp_path / "side").score(store, run_id, pictures)
    asr = next(v for v in values if v.name == "asr")
    assert asr.value > 0  # the fixture's scenes include the concept
    old = {k: v for k, v in asr.protocol.items() if k != "threshold"}  # as stored before protocols carried it
    tiles, _ = images(store, run_id, flag_rule(MetricView("asr", asr.value, asr.n, protocol=old)))
    assert not any(tile.flagged for tile in tiles)
