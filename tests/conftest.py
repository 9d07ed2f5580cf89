"""Shared fixtures: a workspace and store per test, the benchmark data folder, a tiny random SD."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fuzzing import register_profiles
from pg_databases import drop_database

# The property suite's Hypothesis profiles ("repeatable" by default, "deep" for 20x the examples):
# registered here, before Hypothesis reads --hypothesis-profile (tests/fuzzing.py).
register_profiles()

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TRCE_AUDIT_DATA") or REPO.parent / "shared" / "data")


@pytest.fixture
def workspace(tmp_path):
    from trce_audit.workspace import Workspace

    return Workspace.from_options(tmp_path / "ws", None, SHARED_DATA if SHARED_DATA.is_dir() else None).ensure()


@pytest.fixture
def store(workspace):
    from trce_audit.store import Store

    store = Store(workspace.db_url)
    yield store
    store.close()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("benchmark data folder ../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory) -> Path:
    """A random-weight SD pipeline folder (tiny shapes), built once per test session."""
    from trce_audit.models.tiny import save_pipeline

    return save_pipeline(tmp_path_factory.mktemp("tiny-sd") / "model", shape="tiny", seed=0)


@pytest.fixture
def cli(workspace):
    """Run `trce-audit` in-process (through main(), as the console script does) in the test workspace.

    Returns (exit code, stdout, stderr).
    """
    import contextlib
    import io

    from trce_audit.cli import main

    def invoke(*args: str):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["--workspace", str(workspace.root), *args])
        return code, out.getvalue(), err.getvalue()

    return invoke


# Postgres: TRCE_AUDIT_TEST_PG names a server whose role may CREATE DATABASE; each test gets a fresh
# database there. Without it those tests skip, unless TRCE_AUDIT_REQUIRE_PG=1 (CI), where they fail.
@pytest.fixture(scope="session")
def pg_server():
    import sqlalchemy as sa

    from trce_audit.errors import one_line
    from trce_audit.store.engine import mask_url

    url = os.environ.get("TRCE_AUDIT_TEST_PG")

    def missing(why: str):
        if os.environ.get("TRCE_AUDIT_REQUIRE_PG") == "1":
            pytest.fail(f"TRCE_AUDIT_REQUIRE_PG=1 but {why}", pytrace=False)
        pytest.skip(why)

    if not url:
        missing("TRCE_AUDIT_TEST_PG is not set (a Postgres URL whose role may create databases)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing("psycopg is not installed (pip install 'trce-audit[postgres]')")
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        engine.connect().close()
    except sa.exc.DBAPIError as exc:
        missing(f"no Postgres server at {mask_url(url)}: {one_line(exc.orig)}")
    yield engine
    engine.dispose()


@pytest.fixture
def pg_database(pg_server):
    """The URL of a new, empty database on the test server, dropped after the test."""
    import uuid

    name = f"trce_test_{uuid.uuid4().hex[:16]}"
    with pg_server.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield pg_server.url.set(database=name).render_as_string(hide_password=False)
    with pg_server.connect() as connection:
        drop_database(connection, name)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path):
    """A new store URL on each dialect the store supports (Postgres as pg_database provides it)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    return request.getfixturevalue("pg_database")


@pytest.fixture(scope="module")
def pipes():
    """(erased stand-in, original): two tiny random SDs, one per test module, which attacks may mutate."""
    import torch

    from trce_audit.models.tiny import build_pipeline

    torch.set_num_threads(1)
    return build_pipeline("tiny", seed=0), build_pipeline("tiny", seed=1)
