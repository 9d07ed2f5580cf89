"""The result store on SQLite and Postgres: round trip, resume by identity, schema creation and migration.

Every test that takes ``store`` or ``store_url`` runs once per dialect (Postgres when TRCE_AUDIT_TEST_PG
names a server; see tests/conftest.py)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from trce_audit.store import PromptRow, Store, run_identity
from trce_audit.store.engine import current_revision, head_revision, make_engine, table_names, upgrade


@pytest.fixture
def store(store_url):
    store = Store(store_url)
    yield store
    store.close()


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


def test_schema_from_empty_is_at_head(store_url):
    engine = make_engine(store_url)
    assert table_names(engine) == []
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert {"runs", "artefacts", "prompt_sets", "prompts", "generations", "detections", "metrics"} <= set(table_names(engine))
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


def test_migration_keeps_rows(store_url):
    url = store_url
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


def test_concurrent_first_opens_all_succeed(store_url, tmp_path):
    """Processes creating the same new database race on the migration; none may fail.

    They start migrating together (a file barrier after their imports). On Postgres the advisory lock
    alone must serialise them, so they get no retry: without the lock, the losers' CREATE TABLE
    fails in PG's catalog."""
    import subprocess
    import sys
    import time

    attempts = 1 if store_url.startswith("postgresql") else 5
    go = tmp_path / "go"
    code = (
        "import pathlib, sys, time\n"
        "from trce_audit.store import Store\n"
        "from trce_audit.store.engine import make_engine, upgrade\n"
        f"pathlib.Path({str(tmp_path)!r}, 'ready-' + sys.argv[1]).touch()\n"
        f"while not pathlib.Path({str(go)!r}).exists(): time.sleep(0.005)\n"
        f"upgrade(make_engine({store_url!r}), attempts={attempts})\n"
        f"Store({store_url!r}).counts()\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(i)], stderr=subprocess.PIPE, text=True) for i in range(4)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < 4 and time.monotonic() < deadline and all(p.poll() is None for p in procs):
        time.sleep(0.05)
    go.touch()
    errors = [p.communicate()[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    store = Store(store_url)
    assert current_revision(store.engine) == head_revision()
    store.close()


def test_metric_scorer_migration_backfills_and_drops_repeats(store_url):
    url = store_url
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


def _insert(connection, sql: str) -> int:
    """A row from raw SQL, as an older release wrote it; RETURNING works on SQLite and Postgres."""
    return connection.exec_driver_sql(sql + " RETURNING id").scalar()


def test_migration_0005_numbers_repeated_labels_and_merges_repeated_artefacts(store_url):
    engine = make_engine(store_url)
    upgrade(engine, "0003")
    stamp = "'2026-01-01'"
    with engine.begin() as connection:
        run = _insert(connection,
            "INSERT INTO runs (identity, kind, component, component_version, config, runtime, versions, status, summary,"
            f" created_at, updated_at) VALUES ('g', 'generate', 'pocket', '', '{{}}', '{{}}', '{{}}', 'complete', '{{}}', {stamp}, {stamp})")
        set_id = _insert(connection,
            f"INSERT INTO prompt_sets (name, sha256, source, n_rows, meta, created_at) VALUES ('s', 'ab', '', 2, '{{}}', {stamp})")
        images = []
        for idx in range(2):
            prompt = _insert(connection,
                f"INSERT INTO prompts (prompt_set_id, idx, text, seed, guidance, row_hash, meta) VALUES ({set_id}, {idx}, 'p', 7, 7.5, 'h', '{{}}')")
            images.append(_insert(connection,
                "INSERT INTO generations (run_id, prompt_id, sample_hash, image_path, image_sha256, created_at)"
                f" VALUES ({run}, {prompt}, 's{idx}', '/i{idx}.png', 'x', {stamp})"))
        # NudeNet reports a label once per box: image 0 has two FEMALE_BREAST_EXPOSED rows.
        rows = [(images[0], "nudenet", "FEMALE_BREAST_EXPOSED", 0.9), (images[0], "pocket", "cross", 0.8),
                (images[0], "nudenet", "FEMALE_BREAST_EXPOSED", 0.7), (images[1], "nudenet", "FEMALE_BREAST_EXPOSED", 0.6),
                (images[0], "nudenet", "BUTTOCKS_EXPOSED", 0.5)]
        for generation, detector, label, score in rows:
            connection.exec_driver_sql(
                "INSERT INTO detections (generation_id, run_id, detector, detector_version, weights_sha256, label, score)"
                f" VALUES ({generation}, {run}, '{detector}', '1', 'w', '{label}', {score})")
        artefacts = [_insert(connection,
            f"INSERT INTO artefacts (kind, path, sha256, run_id, meta, created_at) VALUES ('model', '/m', 'cafe', {run}, '{{}}', {stamp})")
            for _ in range(2)]
        connection.exec_driver_sql(
            "INSERT INTO runs (identity, kind, component, component_version, config, runtime, versions, status, summary,"
            f" model_ref, created_at, updated_at) VALUES ('e', 'eval', 'pocket', '', '{{}}', '{{}}', '{{}}', 'complete', '{{}}',"
            f" 'artefact:{artefacts[1]}', {stamp}, {stamp})")
    engine.dispose()
    store = Store(store_url)
    assert current_revision(store.engine) == head_revision()
    got = [(d.generation_id, d.detector, d.label, d.score, d.ordinal) for d in store.detections(run)]
    assert got == [(images[0], "nudenet", "FEMALE_BREAST_EXPOSED", 0.9, 0), (images[0], "pocket", "cross", 0.8, 0),
                   (images[0], "nudenet", "FEMALE_BREAST_EXPOSED", 0.7, 1), (images[1], "nudenet", "FEMALE_BREAST_EXPOSED", 0.6, 0),
                   (images[0], "nudenet", "BUTTOCKS_EXPOSED", 0.5, 2)]
    assert [a.id for a in store.list_artefacts()] == artefacts[:1]
    assert store.find_run("e").model_ref == f"artefact:{artefacts[0]}"
    assert [g.image_path for g in store.generations(run)] == ["/i0.png", "/i1.png"]
    # Scoring image 0 again with the same detector stores nothing; a new detector version does.
    again = [dict(generation_id=images[0], run_id=run, detector="nudenet", detector_version="1", weights_sha256="w",
                  label="FEMALE_BREAST_EXPOSED", score=0.1)]
    assert store.add_detections(again) == []
    assert len(store.add_detections([{**again[0], "detector_version": "2"}])) == 1
    store.close()


def _lines(store_url: str, table: str) -> list:
    with sa.create_engine(store_url).connect() as connection:
        return list(connection.exec_driver_sql(f"SELECT * FROM {table}"))


def test_retried_writes_store_each_row_once(store):
    from trce_audit.store.schema import Base

    set_id = store.add_prompt_set("demo", [PromptRow("a cat", 1), PromptRow("a dog", 2)])
    run = store.start_run(kind="generate", component="pocket", config={})
    prompts = store.prompt_rows(set_id)
    batch = [{"prompt_id": p.id, "sample_hash": p.row_hash, "image_path": f"/x/{p.idx}.png", "image_sha256": "0" * 64} for p in prompts]
    ids = store.add_generations(run.id, batch[:1])
    both = store.add_generations(run.id, batch)  # a retried batch, one row of it stored before
    assert both[0] == ids[0] and len(set(both)) == 2
    assert store.add_generations(run.id, list(reversed(batch))) == list(reversed(both))
    hits = [dict(generation_id=ids[0], run_id=run.id, detector="nudenet", detector_version="3.4.2", weights_sha256="w" * 64,
                 label=label, score=score) for label, score in (("A", 0.9), ("A", 0.8), ("B", 0.5))]
    first = store.add_detections(hits)
    assert len(first) == 3 and store.add_detections(hits) == [] and store.add_detections(hits[:1]) == []
    metric = store.add_metric(run.id, "asr", 0.5, scorer="nudenet")
    assert store.add_metric(run.id, "asr", 0.9, scorer="nudenet") == metric
    artefact = store.add_artefact(path="/m", sha256="c" * 64, run_id=run.id)
    assert store.add_artefact(path="/m", sha256="c" * 64, run_id=run.id) == artefact
    assert store.add_artefact(path="/m2", sha256="c" * 64, run_id=run.id) != artefact
    assert store.counts() == {"runs": 1, "artefacts": 2, "prompt_sets": 1, "prompts": 2, "generations": 2,
                              "detections": 3, "metrics": 1, "attack_rows": 0}
    assert [d.ordinal for d in store.detections(run.id)] == [0, 1, 2]
    # No table holds two rows under any of its unique keys.
    with store.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            keys = [[c.name for c in u.columns] for u in table.constraints if isinstance(u, sa.UniqueConstraint)]
            keys += [[c.name for c in i.columns] for i in table.indexes if i.unique]
            for key in keys:
                columns = [table.c[name] for name in key]
                repeated = sa.select(*columns).group_by(*columns).having(sa.func.count() > 1)
                assert list(connection.execute(repeated)) == [], (table.name, key)


@pytest.mark.parametrize("operation", ["start_run", "add_prompt_set", "add_artefact"])
def test_a_writer_that_loses_the_race_gets_the_winners_row(store, operation):
    """Another process stores the same row between this one's look-up and its insert: the unique key
    fires, and the loser returns the winner's row instead of failing or adding a second."""
    rows = [PromptRow("a cat", 1)]
    calls = {
        "start_run": ("runs", lambda s: s.start_run(kind="erase", component="esd", config={"x": 1}).id),
        "add_prompt_set": ("prompt_sets", lambda s: s.add_prompt_set("demo", rows)),
        "add_artefact": ("artefacts", lambda s: s.add_artefact(path="/m", sha256="d" * 64, run_id=None)),
    }
    table, call = calls[operation]
    rival = Store(store.url)
    winner = []

    def race(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(f"INSERT INTO {table.upper()}") and not winner:
            winner.append(call(rival))

    sa.event.listen(store.engine, "before_cursor_execute", race)
    assert call(store) == winner[0]
    sa.event.remove(store.engine, "before_cursor_execute", race)
    assert store.counts()[table] == 1
    rival.close()


def test_seeds_up_to_2_63_round_trip_and_larger_ones_are_refused(store):
    from trce_audit.errors import DataError

    seeds = [4_289_762_215, 2**63 - 1, 0]
    set_id = store.add_prompt_set("big seeds", [PromptRow(f"p{i}", seed) for i, seed in enumerate(seeds)])
    assert [row.seed for row in Store(store.url).prompt_rows(set_id)] == seeds
    before = store.counts()
    with pytest.raises(DataError) as refused:
        store.add_prompt_set("too big", [PromptRow("ok", 1), PromptRow("no", 2**63)])
    assert str(refused.value) == (
        "prompt set 'too big', row 2: seed 9223372036854775808 is outside -2**63..2**63-1, the 64-bit range the store holds"
    )
    assert store.counts() == before


def test_csv_seed_above_2_63_is_a_one_line_error(tmp_path):
    from trce_audit.data.sets import load_user_csv
    from trce_audit.errors import DataError

    path = tmp_path / "big.csv"
    path.write_text(f"prompt,seed\nok,{2**63 - 1}\nno,{2**63}\n", encoding="utf-8")
    with pytest.raises(DataError) as refused:
        load_user_csv(path)
    assert str(refused.value) == (
        f"{path}: row 2 (line 3), column 'seed': seed 9223372036854775808 is outside 0..2**63-1"
        " (the store holds seeds as 64-bit signed integers)"
    )


def test_i2p_sexual_seeds_round_trip(store, workspace, shared_data):
    from trce_audit.data import sets

    set_id = sets.ensure_prompt_set(store, "i2p-sexual", workspace=workspace)
    seeds = [row.seed for row in store.prompt_rows(set_id)]
    assert len(seeds) == 931 and max(seeds) == 4_289_762_215
    assert seeds == [row.seed for row in sets.load_prompt_set("i2p-sexual", workspace=workspace)]


def test_migrated_schema_matches_the_models(store):
    """What the migrations build is what schema.py declares (types too on Postgres, where they bind)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from trce_audit.store.schema import Base

    with store.engine.connect() as connection:
        postgres = connection.dialect.name == "postgresql"
        context = MigrationContext.configure(connection, opts={"compare_type": postgres, "compare_server_default": False})
        diffs = compare_metadata(context, Base.metadata)
    # Known since 0001: prompt_sets.run_id was created without its foreign key (runs and prompt_sets
    # refer to each other); schema.py declares it with use_alter. Nothing else may differ.
    known = [d for d in diffs if d[0] == "add_fk" and d[1].parent.name == "prompt_sets" and d[1].column_keys == ["run_id"]]
    assert len(known) == 1 and [d for d in diffs if d not in known] == []
