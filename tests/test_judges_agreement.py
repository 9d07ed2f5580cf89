"""Two judges on the same images: each image is read once for both, and their agreement (the 2x2 table
and Cohen's kappa) comes out of the stored detections, in the library and in the report.

The fake judges decide from the pixels they are handed: "bright" flags an image whose mean is over 100,
"red" one whose red channel outweighs its blue. The test derives the expected verdicts from the
arrays it wrote, so the table and kappa are checked against numbers computed here, by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from metric_fixtures import eval_run, stored_images

from trce_audit.metrics import pixels
from trce_audit.metrics.agreement import Agreement, agreement, rule_agreements
from trce_audit.metrics.base import MetricRunner, detect_together
from trce_audit.metrics.values import MetricValue, wilson_interval


@dataclass
class NoOptions:
    pass


class PixelJudge(MetricRunner):
    """A judge that reads the chunk's decoded pixels and flags by a rule on them."""

    version: ClassVar[str] = "1"
    Config = NoOptions
    produces: ClassVar[tuple[str, ...]] = ("asr",)
    detect_batch_size: ClassVar[int] = 2

    def detector_key(self):
        return (self.name, self.version, "0" * 64)

    def detect(self, images):
        return [[("flag", float(self.pixel_score(pixels.rgb(image.image_path).astype(float))))] for image in images]

    def shows_concept(self, detections):
        return any(score > 0.5 for _, score in detections)

    def protocol(self):
        detector, version, weights = self.detector_key()
        return {"metric": "asr", "detector": detector, "detector_version": version, "weights_sha256": weights,
                "counted_classes": ["flag"], "threshold": 0.5, "runner_version": self.version}

    def aggregate(self, images, detections):
        hits = sum(self.shows_concept(self.scored(detections, image)) for image in images)
        low, high = wilson_interval(hits, len(images))
        return [MetricValue("asr", hits / len(images), len(images), low, high, self.protocol())]


class BrightJudge(PixelJudge):
    name: ClassVar[str] = "fake-bright"
    detect_batch_size: ClassVar[int] = 4

    @staticmethod
    def pixel_score(image):
        return float(image.mean() > 100)


class RedJudge(PixelJudge):
    name: ClassVar[str] = "fake-red"

    @staticmethod
    def pixel_score(image):
        return float(image[..., 0].mean() > image[..., 2].mean())


def arrays(n: int = 10, seed: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, size=(n, 3))
    return [np.broadcast_to(colour, (12, 12, 3)).astype(np.uint8) for colour in colours]


def expected_table(images: list[np.ndarray]) -> Agreement:
    both = first_only = second_only = neither = 0
    for image in images:
        image = image.astype(float)
        bright, red = bool(image.mean() > 100), bool(image[..., 0].mean() > image[..., 2].mean())
        both += bright and red
        first_only += bright and not red
        second_only += red and not bright
        neither += not bright and not red
    return Agreement(both, first_only, second_only, neither)


def kappa_by_hand(table: Agreement) -> float:
    n = table.n
    observed = (table.both + table.neither) / n
    p_first, p_second = (table.both + table.first_only) / n, (table.both + table.second_only) / n
    expected = p_first * p_second + (1 - p_first) * (1 - p_second)
    return (observed - expected) / (1 - expected)


# ------------------------------------------------------------------------------ the table
def test_kappa_of_a_textbook_table():
    """Wikipedia's "Cohen's kappa" worked example: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no, kappa 0.4."""
    table = agreement([True] * 25 + [False] * 25, [True] * 20 + [False] * 5 + [True] * 10 + [False] * 15)
    assert (table.both, table.first_only, table.second_only, table.neither) == (20, 5, 10, 15)
    assert table.observed == pytest.approx(0.7, abs=1e-12)  # ratios of small integers: exact up to rounding
    assert table.kappa == pytest.approx(0.4, abs=1e-12)


def test_kappa_at_its_ends():
    assert agreement([True, False, True], [True, False, True]).kappa == pytest.approx(1.0, abs=1e-12)
    assert agreement([True, False], [False, True]).kappa == pytest.approx(-1.0, abs=1e-12)
    assert agreement([False] * 4, [False] * 4).kappa is None  # one verdict everywhere: chance explains it all
    with pytest.raises(ValueError, match="same images"):
        agreement([True], [True, False])


# ------------------------------------------------------------------- one read, two judges
def test_one_read_serves_both_judges_and_their_table_matches_the_pixels(store, tmp_path, monkeypatch):
    written = arrays()
    images = stored_images(store, written, tmp_path / "images")
    reads: list[str] = []
    real = pixels.decode
    monkeypatch.setattr(pixels, "decode", lambda path: reads.append(str(path)) or real(path))

    bright, red = BrightJudge(), RedJudge()
    detect_together(store, eval_run(store), images, [bright, red])
    assert sorted(reads) == sorted(image.image_path for image in images)  # each image decoded once, for both
    ids = [image.generation_id for image in images]
    for judge in (bright, red):
        assert set(store.stored_detections(ids, judge.detector_key())) == set(ids)

    [(first, second, table)] = rule_agreements(store, images, bright, red)
    assert (first, second) == ("fake-bright", "fake-red")
    expected = expected_table(written)
    assert table == expected and table.n == len(written)
    assert 0 < expected.both and 0 < expected.neither and expected.kappa is not None  # the draw exercises every cell
    assert table.kappa == pytest.approx(kappa_by_hand(expected), abs=1e-12)

    # a second sweep finds everything stored: no image is read again
    reads.clear()
    detect_together(store, eval_run(store, "again"), images, [bright, red])
    assert reads == []


def test_on_an_executor_each_shard_image_is_read_once_for_both_judges(store, workspace, fake_judges, monkeypatch):
    """The fused path (generation/shards.py: an executor's worker scores the PNGs it drew) shares one
    read between the judges as the driver's sweep does; the driver then finds both passes stored."""
    from trce_audit.api import evaluate
    from trce_audit.execution.local import LocalExecutor
    from trce_audit.generation import GenerationSettings

    reads: list[str] = []
    real = pixels.decode
    monkeypatch.setattr(pixels, "decode", lambda path: reads.append(str(path)) or real(path))
    # two shards of three; the judges' batches (4 and 2) cut them differently
    result = evaluate(store, workspace, model="pocket", prompts="pocket-explicit", metrics=["fake-bright", "fake-red"],
                      limit=6, settings=GenerationSettings(steps=2, batch_size=3, device="cpu"), executor=LocalExecutor())
    images = store.generated_images(result["generation_run_id"])
    assert len(reads) == len(set(reads)) == len(images) == 6  # one read per image, for both judges
    assert not {image.image_path for image in images} & set(reads)  # the driver read nothing: the worker scored all
    written = [real(image.image_path) for image in images]
    [(_, _, table)] = rule_agreements(store, images, BrightJudge(), RedJudge())
    assert table == expected_table(written)


def test_a_sweep_stops_at_an_unreadable_image_and_keeps_the_batches_before_it(store, tmp_path):
    from trce_audit.errors import DataError

    images = stored_images(store, arrays(6), tmp_path / "images")
    bad = images[3].image_path
    with open(bad, "r+b") as handle:
        handle.truncate(30)
    bright, red = BrightJudge(), RedJudge()
    with pytest.raises(DataError, match=f"image {bad} cannot be read"):
        detect_together(store, eval_run(store), images, [bright, red])
    ids = [image.generation_id for image in images]
    # the first chunk is four images (a multiple of both batches): bright failed on its only batch of
    # four, so nothing of it is stored, and red never ran
    assert store.stored_detections(ids, bright.detector_key()) == {}
    assert store.stored_detections(ids, red.detector_key()) == {}


# ------------------------------------------------------------------------- in the report
@pytest.fixture
def fake_judges(monkeypatch):
    from trce_audit import metrics

    monkeypatch.setitem(metrics.BUILTIN, "fake-bright", f"{__name__}:BrightJudge")
    monkeypatch.setitem(metrics.BUILTIN, "fake-red", f"{__name__}:RedJudge")


def test_the_report_shows_the_two_judges_agreement_on_an_evaluation(store, workspace, fake_judges, tmp_path):
    from trce_audit.api import evaluate
    from trce_audit.generation import GenerationSettings
    from trce_audit.reports.collect import collect
    from trce_audit.reports.markdown import render_markdown

    result = evaluate(store, workspace, model="pocket", prompts="pocket-explicit", metrics=["fake-bright", "fake-red"],
                      limit=6, settings=GenerationSettings(steps=2, batch_size=3, device="cpu"))
    view = collect(store, run_ids=[result["run_id"]])
    found = {found.where: found for found in view.agreements}
    assert set(found) == {"pocket · pocket-explicit", "all images"}
    written = [pixels.decode(image.image_path) for image in store.generated_images(result["generation_run_id"])]
    for entry in found.values():
        assert (entry.first, entry.second) == ("fake-bright", "fake-red")
        assert entry.table == expected_table(written)
    text = render_markdown(view, title="t", command="c")
    assert "## Agreement of the judges" in text and "| pocket · pocket-explicit | fake-bright | fake-red | 6 |" in text
    assert view.as_dict()["judge_agreement"][0]["n"] == 6
