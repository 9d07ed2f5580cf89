"""Commands that only read the store (runs, report, gate, models) open it read-only: a missing store is a
one-line error (exit 2) and nothing is created; an existing one, SQLite or Postgres, is left byte-identical.
A command group named without a subcommand prints its help as written."""

from __future__ import annotations

import contextlib
import hashlib
import io
from pathlib import Path

import pytest
import sqlalchemy as sa

from trce_audit.cli import main
from trce_audit.records import PromptRow
from trce_audit.store import Store

READERS = [
    ["runs", "list"],
    ["runs", "show", "1"],
    ["models"],
    ["gate", "--max-asr", "50%"],
    ["report", "--out", "{out}/report.html"],
]


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def rows_digest(url: str) -> str:
    """sha256 of every row of every table, in a fixed order (what "the store is unchanged" means)."""
    engine = sa.create_engine(url)
    digest = hashlib.sha256()
    with engine.connect() as connection:
        for table in sorted(sa.inspect(connection).get_table_names()):
            for row in connection.execute(sa.text(f'SELECT * FROM "{table}"')).all():
                digest.update(repr((table, tuple(row))).encode())
    engine.dispose()
    return digest.hexdigest()


def a_store(url: str) -> None:
    store = Store(url)
    store.add_prompt_set("seeds", [PromptRow("a red cross", 1, 7.5)])
    store.close()


@pytest.mark.parametrize("args", READERS, ids=lambda a: " ".join(a[:2]))
def test_a_missing_sqlite_store_is_one_line_and_nothing_is_created(tmp_path, args):
    db = tmp_path / "no" / "such" / "dir" / "store.db"
    code, out, err = run("--db", f"sqlite:///{db}", *[a.format(out=tmp_path) for a in args])
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and "no result store at" in err and str(db) in err
    assert not (tmp_path / "no").exists() and not (tmp_path / "report.html").exists()


@pytest.mark.parametrize("args", READERS, ids=lambda a: " ".join(a[:2]))
def test_a_missing_workspace_store_creates_no_workspace(tmp_path, args):
    code, _, err = run("--workspace", str(tmp_path / "ws"), *[a.format(out=tmp_path) for a in args])
    assert code == 2 and err.count("\n") == 1
    assert not (tmp_path / "ws").exists()


@pytest.mark.parametrize("args", READERS, ids=lambda a: " ".join(a[:2]))
def test_readers_leave_an_existing_sqlite_store_byte_identical(tmp_path, args):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    url = f"sqlite:///{workspace / 'trce-audit.sqlite'}"
    a_store(url)
    before = tree_digest(workspace)
    code, out, err = run("--workspace", str(workspace), *[a.format(out=tmp_path) for a in args])
    assert code in (0, 2), (out, err)  # `runs show 1`, `gate`, `report` have nothing to show: exit 2
    assert tree_digest(workspace) == before  # not even a -wal or -shm file beside it


@pytest.mark.parametrize("args", READERS, ids=lambda a: " ".join(a[:2]))
def test_readers_leave_a_postgres_store_unchanged(pg_database, tmp_path, args):
    a_store(pg_database)
    before = rows_digest(pg_database)
    code, out, err = run("--db", pg_database, *[a.format(out=tmp_path) for a in args])
    assert code in (0, 2), (out, err)
    assert rows_digest(pg_database) == before


def test_a_postgres_database_without_a_store_is_refused_and_left_empty(pg_database):
    code, _, err = run("--db", pg_database, "runs", "list")
    assert code == 2 and err.count("\n") == 1 and "no result store in database" in err
    assert sa.inspect(sa.create_engine(pg_database)).get_table_names() == []


def test_a_read_only_store_refuses_writes(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    a_store(url)
    reader = Store(url, read_only=True)
    assert [s.name for s in reader.list_prompt_sets()] == ["seeds"]
    with pytest.raises(sa.exc.OperationalError, match="readonly"):
        reader.add_prompt_set("other", [PromptRow("a blue circle", 2, 7.5)])
    reader.close()


@pytest.mark.parametrize("group", [[], ["runs"], ["data"]])
def test_a_group_without_a_subcommand_prints_its_help(group):
    code, out, err = run(*group)
    assert code == 2 and out == ""  # click's convention for no_args_is_help: help on stderr, exit 2
    assert err.startswith("Usage: trce-audit") and "Commands:" in err and "error:" not in err
    assert err.count("\n") > 5  # the help as written, not folded into one line
