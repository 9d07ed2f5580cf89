"""Shared fixtures: a workspace and store per test, the benchmark data folder, a tiny random SD."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
