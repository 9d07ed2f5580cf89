"""The result store a command works on."""

from __future__ import annotations

from pathlib import Path

from ..errors import StoreError
from ..store import Store
from ..workspace import Workspace

__all__ = ["Store", "open_store"]

_SQLITE = "sqlite:///"


def open_store(workspace: Workspace, *, must_exist_for: str | None = None) -> Store:
    """The workspace's store, created on first use. ``must_exist_for`` names a command that only reads
    stored results: for it a missing SQLite file is a one-line error, and nothing is created."""
    url = workspace.db_url
    if must_exist_for is not None and url.startswith(_SQLITE) and not Path(url[len(_SQLITE):]).is_file():
        raise StoreError(
            f"no result store at {url[len(_SQLITE):]}; {must_exist_for} reads stored results and never creates "
            "a store: run `trce-audit audit` first, or point --workspace/--db at an existing one"
        )
    return Store(workspace.ensure().db_url)
