"""The result store: round trip, resume by identity, schema creation and migration."""

from __future__ import annotations

import sqlalchemy as sa

from trce_audit.store import PromptRow, Store, run_identity
from trce_audit.store.engine import current_revision, head_revision, make_engine, table_names, upgrade


def test_round_trip(store):
    set_id = store.add_prompt_set("demo", [PromptRow("a cat", 1), PromptRow("a dog", 2, 5.0, {"case": 7})])
    run = store.start_run(kind="generate", component="engine", config={"steps": 30}, prompt_set_id=set_id)
    prompts = store.prompt_rows(set_id)
    ids = store.add_generations(
        run.id,
        [{"prompt_id": p.id, "sample_hash": p.row_hash, "image_path": f"/x/{p.idx}.png", "image_sha256": "0" * 64} for p in prompts],
    )
    store.add_detections(
        [{"generation_id": ids[0], "run_id": run.id, "detector": "pocket", "detector_version": "1", "weights_sha256": "f" * 64, "label": "star", "score": 0.9}]
    )
    store.add_metric(run.id, "asr", 0.5, n=2, ci_low=0.1, ci_high=0.9, protocol={"threshold": 0.45})
    store.complete_run(run.id, {"asr": 0.5})
    reopened = Store(store.url)
    got = reopened.get_run(run.id)
    assert got.status == "complete" and got.config == {"steps": 30} and got.summary == {"asr": 0.5}
    assert got.finished_at is not None and "torch" in got.versions
    assert [p.text for p in reopened.prompt_rows(set_id)] == ["a cat", "a dog"]
    assert reopened.prompt_rows(set_id)[1].meta == {"case": 7} and reopened.prompt_rows(set_id)[1].guidance == 5.0
    assert len(reopened.generations(run.id)) == 2
    [metric] = reopened.metrics(run.id)
    assert (metric.value, metric.n, metric.ci_low, metric.protocol) == (0.5, 2, 0.1, {"threshold": 0.45})
    assert reopened.detections(run.id)[0].label == "star"


def test_same_identity_resumes_without_duplicates(store):
    set_id = store.add_prompt_set("demo", [PromptRow("a cat", 1)])
    assert store.add_prompt_set("demo again", [PromptRow("a cat", 1)]) == set_id  # same content, one row
    first = store.start_run(kind="eval", component="pocket", config={"steps": 30}, runtime={"batch_size": 1}, prompt_set_id=set_id)
    again = store.start_run(kind="eval", component="pocket", config={"steps": 30}, runtime={"batch_size": 8}, prompt_set_id=set_id)
    other = store.start_run(kind="eval", component="pocket", config={"steps": 31}, prompt_set_id=set_id)
    assert (first.resumed, again.resumed, other.resumed) == (False, True, False)
    assert again.id == first.id and other.id != first.id
    assert store.counts()["runs"] == 2 and store.counts()["prompt_sets"] == 1


def test_failed_run_restarts_on_resume(store):
    run = store.start_run(kind="erase", component="esd", config={})
    store.fail_run(run.id, "boom")
    again = store.start_run(kind="erase", component="esd", config={})
    assert again.id == run.id and again.status == "started" and store.get_run(run.id).error is None


def test_identity_pins_its_inputs():
    """Changing this hash silently would orphan every stored run; update it only on purpose."""
    identity = run_identity("eval", "pocket", {"steps": 30, "metric": ["pocket"]}, model_fingerprint="ab" * 32, prompt_set_sha="cd" * 32)
    assert identity == run_identity("eval", "pocket", {"metric": ["pocket"], "steps": 30}, model_fingerprint="ab" * 32, prompt_set_sha="cd" * 32)
    assert identity != run_identity("eval", "pocket", {"steps": 30, "metric": ["pocket"]}, model_fingerprint="ab" * 32, prompt_set_sha="ce" * 32)
    assert identity == "8bb67e4ae5f5dd3e3c396d8aa608254c32f97461cf1ba61a4fd850470d70d542"


def test_schema_from_empty_is_at_head(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    assert table_names(engine) == []
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert {"runs", "artefacts", "prompt_sets", "prompts", "generations", "detections", "metrics"} <= set(table_names(engine))
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_migration_keeps_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = make_engine(url)
    upgrade(engine, "0001")
    columns = {c["name"] for c in sa.inspect(engine).get_columns("runs")}
    assert "summary" not in columns
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO runs (identity, kind, component, component_version, config, runtime, versions, status, created_at, updated_at)"
            " VALUES ('x', 'eval', 'pocket', '', '{}', '{}', '{}', 'complete', '2026-01-01', '2026-01-01')"
        )
    engine.dispose()
    store = Store(url)  # opening migrates to head
    assert current_revision(store.engine) == head_revision()
    run = store.find_run("x")
    assert run is not None and run.summary == {} and run.status == "complete"


def test_concurrent_first_opens_both_succeed(tmp_path):
    """Two processes creating the same new database race on the migration; neither may fail."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'race.sqlite'}"
    code = f"from trce_audit.store import Store; Store({url!r}).counts()"
    procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errors = [p.communicate()[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    assert current_revision(Store(url).engine) == head_revision()


def test_metric_scorer_migration_backfills_and_drops_repeats(tmp_path):
    url = f"sqlite:///{tmp_path / 'scorers.sqlite'}"
    engine = make_engine(url)
    upgrade(engine, "0002")
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO runs (id, identity, kind, component, component_version, config, runtime, versions, status, summary,"
            " created_at, updated_at) VALUES (1, 'e', 'eval', 'pocket', '', '{}', '{}', '{}', 'complete', '{}',"
            " '2026-01-01', '2026-01-01')"
        )
        for value, protocol in ((0.5, '{"metric": "pocket", "detector": "pocket"}'),
                                (0.9, '{"metric": "pocket", "detector": "pocket"}'),
                                (0.25, '{"metric": "asr", "detector": "nudenet"}'),
                                (12.0, '{"metric": "fid"}')):
            name = "fid" if "fid" in protocol else "asr"
            connection.exec_driver_sql(
                "INSERT INTO metrics (run_id, name, value, n, protocol, created_at)"
                f" VALUES (1, '{name}', {value}, 4, '{protocol}', '2026-01-01')"
            )
    engine.dispose()
    store = Store(url)
    rows = sorted((m.name, m.scorer, m.value) for m in store.metrics(1))
    # Two "asr" rows under one scorer: the first, the one reports showed, is kept.
    assert rows == [("asr", "nudenet", 0.25), ("asr", "pocket", 0.5), ("fid", "fid", 12.0)]
    # Attaching a number again under its key returns the stored row instead of adding one.
    first = store.add_metric(1, "asr", 0.7, scorer="pocket")
    assert first == store.add_metric(1, "asr", 0.1, scorer="pocket")
    assert [m.value for m in store.metrics(1) if m.scorer == "pocket"] == [0.5]
    assert store.add_metric(1, "asr", 0.3, scorer="pocket-heldout") != first
