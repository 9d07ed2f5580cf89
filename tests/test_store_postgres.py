"""The store behind a server URL: bad or unreachable URLs fail cleanly, and a pocket eval runs on Postgres."""

from __future__ import annotations

import json

import pytest

SECRET = "s3cret-pw"


def _tree(root) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1) for p in root.rglob("*"))


@pytest.mark.parametrize(
    "url, shown, problem",
    [
        (f"postgresql+psycopg://trce:{SECRET}@127.0.0.1:1/nowhere", "postgresql+psycopg://trce:***@127.0.0.1:1/nowhere", "cannot"),
        (f"postgresql://trce:{SECRET}@127.0.0.1:notaport/db", "postgresql://trce:***@127.0.0.1:notaport/db", "invalid database URL"),
        (f"postgres//trce:{SECRET}@host/db", "postgres//trce:***@host/db", "invalid database URL"),
        (f"mysql://trce:{SECRET}@127.0.0.1/db", "mysql://trce:***@127.0.0.1/db", "unsupported database URL"),
    ],
    ids=["unreachable", "bad-port", "no-scheme", "unsupported"],
)
def test_a_bad_database_url_exits_2_naming_it_without_its_password(cli, workspace, url, shown, problem):
    before = _tree(workspace.root)
    code, out, err = cli("--db", url, "runs", "list")
    assert code == 2 and out == ""
    [line] = err.strip().splitlines()
    assert line.startswith(f"error: {problem}")
    assert repr(shown) in line and SECRET not in line
    assert _tree(workspace.root) == before  # nothing written: no SQLite fallback, no folder


def test_a_sqlite_path_that_cannot_be_created_exits_2(cli, workspace, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    before = _tree(workspace.root)
    # a command that writes (a reader refuses a missing store before it tries to create one)
    code, _, err = cli("--db", f"sqlite:///{blocker}/store.sqlite", "data", "add", "pocket-explicit")
    assert code == 2 and err.startswith(f"error: cannot open database 'sqlite:///{blocker}/store.sqlite'")
    assert len(err.strip().splitlines()) == 1 and _tree(workspace.root) == before


@pytest.mark.slow
def test_pocket_eval_on_postgres_resumes_without_new_rows(cli, pg_database):
    from trce_audit.store import Store

    command = ("--db", pg_database, "eval", "--model", "pocket", "--prompts", "pocket-explicit", "--metric", "pocket",
               "--limit", "2", "--json")
    code, out, err = cli(*command)
    assert code == 0, err
    first = json.loads(out)
    store = Store(pg_database)
    counts = store.counts()
    code, out, err = cli(*command)
    again = json.loads(out)
    assert code == 0 and (first["generated"], again["generated"]) == (2, 0)
    assert [m["value"] for m in again["metrics"]] == [m["value"] for m in first["metrics"]]
    # the pocket judge is calibrated, so its ASR is stored beside a Rogan-Gladen-corrected one
    assert sorted(m["name"] for m in first["metrics"]) == ["asr", "asr_corrected"]
    assert store.counts() == counts and counts["generations"] == 2 and counts["metrics"] == 2
    assert all(run.model_ref == "pocket" for run in store.list_runs())
    store.close()
