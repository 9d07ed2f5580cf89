"""The result store a command works on."""

from __future__ import annotations

from ..errors import StoreError
from ..store import Store
from ..workspace import Workspace

__all__ = ["Store", "open_store"]


def open_store(workspace: Workspace, *, read_only_for: str | None = None) -> Store:
    """The workspace's store, created on first use. ``read_only_for`` names a command that only reads
    stored results: it opens an existing store read-only, and a missing one is a one-line error."""
    if read_only_for is None:
        store = Store(workspace.db_url)  # a store that cannot be opened leaves no workspace behind
        workspace.ensure()
        return store
    try:
        return Store(workspace.db_url, read_only=True)
    except StoreError as exc:
        if not str(exc).startswith("no result store"):
            raise
        raise StoreError(
            f"{exc}; {read_only_for} reads stored results and never creates or changes a store: "
            "run `trce-audit audit` first, or point --workspace/--db at an existing one"
        ) from None
