"""What every registered metric runner promises, checked on each one (builders in tests/metric_fixtures.py).

A runner names itself and what it produces; an unknown option is a one-line error naming it (also
through `trce-audit eval`); its protocol records what defines its numbers; scoring a stored run gives
well-formed values, the same in a fresh store, and a rerun reuses the stored per-image detections; an
image that could not be scored fails the scoring naming it and is never counted as a miss.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from metric_fixtures import FIXTURES, eval_run, pocket_images

from trce_audit import registry
from trce_audit.errors import ConfigError, DataError
from trce_audit.hashing import hash_obj
from trce_audit.metrics.base import MetricRunner
from trce_audit.metrics.values import MetricValue
from trce_audit.store import Store
from trce_audit.store.schema import NO_DETECTION
from trce_audit.workspace import Workspace

METRICS = registry.names("metric")
RATES = {"asr", "preserve_acc", "asr_corrected"}


def _per_image(runner: MetricRunner) -> bool:
    try:
        runner.detector_key()
    except NotImplementedError:
        return False
    return True


# Static lists for parametrize: test_the_protocol_records_what_defines_the_numbers checks each fixture's
# per_image against its runner, and test_every_metric_has_a_fixture that no metric is left out.
PER_IMAGE = [name for name in METRICS if name in FIXTURES and FIXTURES[name].per_image]


@pytest.fixture
def fresh_store(tmp_path):
    """Stores in their own workspaces, closed at the end."""
    opened: list[Store] = []

    def make(name: str) -> Store:
        opened.append(Store(Workspace.from_options(tmp_path / name, None, None).ensure().db_url))
        return opened[-1]

    yield make
    for store in opened:
        store.close()


def _values(values: list[MetricValue]) -> list[dict]:
    return [value.as_dict() for value in values]


def _key_in_protocol(protocol: dict, key: tuple[str, str, str]) -> bool:
    """The protocol records the detector key: detector, version (NudeNet keys its version with the
    inference resolution, which the protocol holds as its own field) and weights hash."""
    detector, version, weights = key
    recorded = str(protocol.get("detector_version"))
    return (protocol.get("detector"), protocol.get("weights_sha256")) == (detector, weights) and version in (
        recorded, f"{recorded}@{protocol.get('inference_resolution')}")


# ------------------------------------------------------------------------------- the classes
def test_every_metric_has_a_fixture():
    assert set(METRICS) == set(FIXTURES), "add a builder for each registered metric to tests/metric_fixtures.py"


@pytest.mark.parametrize("name", METRICS)
def test_the_class_names_itself_and_what_it_produces(name):
    cls = registry.load("metric", name)
    assert issubclass(cls, MetricRunner) and cls.name == name
    assert isinstance(cls.version, str) and cls.version
    assert isinstance(cls.produces, tuple) and cls.produces and all(isinstance(p, str) and p for p in cls.produces)
    assert dataclasses.is_dataclass(cls.Config)


@pytest.mark.parametrize("name", METRICS)
def test_an_unknown_option_is_one_line_naming_it(name):
    with pytest.raises(ConfigError) as caught:
        registry.load("metric", name).from_options({"no_such_option": 1})
    message = str(caught.value)
    assert "\n" not in message and "no_such_option" in message and message.startswith(f"{name}:")


# One flag per metric that `trce-audit eval` exposes; each belongs to its metric alone.
CLI_FLAGS = {"nudenet": ("--threshold", "0.3", "threshold"), "fid": ("--fid-ref", "ref", "reference"),
             "clip": ("--clip-model", "m", "model")}


@pytest.mark.parametrize("name", METRICS)
def test_the_cli_refuses_an_option_the_metric_does_not_take(name, cli, store):
    """The CLI passes metric options as flat flags: another metric's flag and an unknown flag are each
    one line and exit 2, before anything runs."""
    flag, value, key = next(spec for owner, spec in CLI_FLAGS.items() if owner != name)
    base = ("eval", "--model", "pocket", "--prompts", "pocket-explicit", "--metric", name, "--device", "cpu")
    for args, named in ((base + (flag, value), key), (base + ("--no-such-option", "1"), "--no-such-option")):
        code, _, err = cli(*args)
        assert code == 2 and err.count("\n") == 1 and err.startswith("error:") and named in err, (args, err)
    assert store.counts()["runs"] == 0 and store.counts()["metrics"] == 0


def test_the_cli_refuses_a_bad_value_for_a_metric_option(cli, store):
    code, _, err = cli("eval", "--model", "pocket", "--prompts", "pocket-explicit", "--metric", "nudenet", "--device", "cpu",
                       "--classes", "lenient")
    assert code == 2 and err.count("\n") == 1 and "lenient" in err
    assert store.counts()["runs"] == 0


# ------------------------------------------------------------------------------- a runner
@pytest.mark.parametrize("name", METRICS)
def test_the_protocol_records_what_defines_the_numbers(name, tmp_path):
    fixture = FIXTURES[name]
    runner, again = fixture.runner(tmp_path / "side"), fixture.runner(tmp_path / "side")
    assert isinstance(runner, registry.load("metric", name))
    # the config enters the eval run's identity: it hashes, the same for two builds
    assert hash_obj(runner.config_dict()) == hash_obj(again.config_dict())
    assert _per_image(runner) == fixture.per_image
    protocol = runner.protocol()
    assert protocol["runner_version"] == runner.version
    # "metric" names the runner (fid, pocket) or the number it gives (nudenet: asr, clip: clip_score), as
    # stored protocols always have (store migration 0003 reads it so)
    assert protocol["metric"] in {name, *runner.produces}
    if _per_image(runner):
        key = runner.detector_key()
        assert isinstance(key, tuple) and len(key) == 3 and all(isinstance(part, str) and part for part in key)
        assert _key_in_protocol(protocol, key), (protocol, key)
        assert again.detector_key() == key


# ---------------------------------------------------------------------------- scoring
def _check_values(name: str, runner: MetricRunner, values: list[MetricValue], n_images: int) -> None:
    assert values and all(isinstance(value, MetricValue) for value in values)
    for value in values:
        assert value.name in {*runner.produces, "asr_corrected"}, value.name
        assert value.scorer in ("", name) or value.scorer.startswith(f"{name}:"), value.scorer
        assert isinstance(value.n, int) and 0 < value.n <= n_images
        assert value.protocol["runner_version"] == runner.version
        if _per_image(runner):
            assert _key_in_protocol(value.protocol, runner.detector_key()), value.protocol
        if value.name in RATES:
            assert 0.0 <= value.value <= 1.0 and value.ci_low is not None and value.ci_high is not None
            assert 0.0 <= value.ci_low <= value.ci_high <= 1.0
            if value.name != "asr_corrected":  # a Wilson interval holds its point; the corrected one's need not
                assert value.ci_low <= value.value <= value.ci_high
    assert runner.stored_keys() <= {(value.scorer or name, value.name) for value in values}  # a rerun skips it


@pytest.mark.parametrize("name", METRICS)
def test_scoring_a_stored_run_is_well_formed_and_repeatable(name, tmp_path, fresh_store):
    fixture = FIXTURES[name]
    side = tmp_path / "side"
    first_store, second_store = fresh_store("first"), fresh_store("second")
    images = pocket_images(first_store, tmp_path / "first-images")
    runner = fixture.runner(side)
    run_id = eval_run(first_store)
    values = runner.score(first_store, run_id, images)
    _check_values(name, runner, values, len(images))
    assert first_store.counts()["metrics"] == 0  # a runner returns numbers; the eval run stores them

    # the same images in a fresh store give the same numbers
    again = fixture.runner(side).score(second_store, eval_run(second_store), pocket_images(second_store, tmp_path / "second-images"))
    assert _values(again) == _values(values)

    ids = [image.generation_id for image in images]
    if not fixture.per_image:
        assert first_store.counts()["detections"] == 0  # a set-level runner needs no per-image detections
        return
    # one stored pass per image under the detector key; an empty result is a NO_DETECTION row
    key = runner.detector_key()
    rows = first_store.detections(run_id)
    assert {row.generation_id for row in rows} == set(ids)
    assert {(row.detector, row.detector_version, row.weights_sha256) for row in rows} == {key}
    found = first_store.stored_detections(ids, key)
    assert set(found) == set(ids)
    for gid in ids:
        empty_rows = [row for row in rows if row.generation_id == gid and row.label == NO_DETECTION]
        assert len(empty_rows) == (1 if not found[gid] else 0)
        if fixture.judges:
            assert isinstance(runner.shows_concept(found[gid]), bool)
        else:
            with pytest.raises(NotImplementedError):
                runner.shows_concept(found[gid])

    # a rescoring reads the stored detections: its detector is never called
    def never(*args, **kwargs):
        raise AssertionError("a stored detection was scored again")

    reuse = fixture.runner(side)
    reuse.detect = never
    stored = first_store.counts()["detections"]
    assert _values(reuse.score(first_store, eval_run(first_store, "again"), images)) == _values(values)
    assert first_store.counts()["detections"] == stored


def _truncate(path: str) -> bytes:
    good = Path(path).read_bytes()
    Path(path).write_bytes(good[:30])  # a truncated PNG
    return good


def _clean_values(fixture, side: Path, store, folder: Path, batch_size: int) -> list[dict]:
    """An uninterrupted scoring in chunks of ``batch_size`` (CLIP's float32 scores depend on the batch
    an image is encoded in, at rounding level, so the chunks must match for equal numbers)."""
    runner = fixture.runner(side)
    runner.detect_batch_size = batch_size
    return _values(runner.score(store, eval_run(store, "clean"), pocket_images(store, folder)))


@pytest.mark.parametrize("name", METRICS)
def test_an_unreadable_image_fails_naming_it_and_is_never_counted(name, tmp_path, fresh_store):
    fixture = FIXTURES[name]
    side, store = tmp_path / "side", fresh_store("store")
    images = pocket_images(store, tmp_path / "images")
    bad = images[3].image_path
    good = _truncate(bad)
    runner = fixture.runner(side)
    runner.detect_batch_size = 2  # chunks [0, 1], [2, 3], [4, 5]: the first is scored before the failure
    with pytest.raises(DataError) as caught:
        runner.score(store, eval_run(store), images)
    message = str(caught.value)
    assert "\n" not in message and bad in message
    assert store.counts()["metrics"] == 0
    if not fixture.per_image:
        assert store.counts()["detections"] == 0
        return
    key = runner.detector_key()
    ids = [image.generation_id for image in images]
    assert set(store.stored_detections(ids, key)) == set(ids[:2])  # the failed chunk stored nothing: no miss

    # once readable, a rescoring scores only what is missing and gives the numbers of a clean scoring
    Path(bad).write_bytes(good)
    rescoring = fixture.runner(side)
    real, scored = rescoring.detect, []

    def spy(chunk, *args):
        scored.extend(image.generation_id for image in chunk)
        return real(chunk, *args)

    rescoring.detect, rescoring.detect_batch_size = spy, 2
    values = rescoring.score(store, eval_run(store, "rescored"), images)
    assert scored == ids[2:]
    assert _values(values) == _clean_values(fixture, side, fresh_store("clean"), tmp_path / "clean", batch_size=2)


@pytest.mark.parametrize("name", PER_IMAGE)
def test_a_detector_error_names_the_image_and_counts_nothing(name, tmp_path, fresh_store):
    fixture = FIXTURES[name]
    side, store = tmp_path / "side", fresh_store("store")
    images = pocket_images(store, tmp_path / "images")
    bad = images[3].image_path
    runner = fixture.runner(side)
    real = runner.detect

    def flaky(chunk, *args):
        if any(image.image_path == bad for image in chunk):
            raise RuntimeError("detector crashed")
        return real(chunk, *args)

    runner.detect, runner.detect_batch_size = flaky, 2
    with pytest.raises(DataError) as caught:
        runner.score(store, eval_run(store), images)
    message = str(caught.value)
    assert "\n" not in message and f"image {bad}:" in message and "detector crashed" in message
    ids = [image.generation_id for image in images]
    assert set(store.stored_detections(ids, runner.detector_key())) == set(ids[:2])
    assert store.counts()["metrics"] == 0
    # and what aggregation is handed without it is an error naming the image, never a miss
    partial = store.stored_detections(ids, runner.detector_key())
    with pytest.raises(DataError, match=f"image {images[2].image_path} has no stored detections"):
        runner.aggregate(images, partial)
