"""Prompt sets and concepts: list, fetch, show, store; the concepts an eraser can target in a world."""

from __future__ import annotations

import os
from typing import Any

from ..data.concepts import Concept, concept_names, load_concept
from ..data.downloads import data_status, fetch
from ..data.registry import PROMPT_SETS, data_file, fetchable_names
from ..data.sets import ensure_prompt_set, load_prompt_set, load_user_csv
from ..errors import DataError
from ..store import Store
from ..workspace import Workspace, user_path

__all__ = ["add_prompt_set", "fetch_data", "list_concepts", "list_data", "show_prompt_set"]


def list_data(workspace: Workspace, data_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    return data_status(workspace, data_dir)


def fetch_data(
    workspace: Workspace,
    names: list[str],
    *,
    url: str | None = None,
    base_url: str | None = None,
) -> list[dict[str, Any]]:
    """Download each named file (or every file when ``names`` is empty) into the workspace cache."""
    wanted = names or fetchable_names()
    if url is not None and len(wanted) != 1:
        raise DataError("--url replaces the address of one file; name exactly one set or concept list")
    for name in wanted:
        data_file(name)  # unknown or generated names fail before anything is downloaded
    records = []
    for name in wanted:
        path = fetch(name, workspace, url_override=url, base_url_override=base_url)
        records.append({"name": name, "path": str(path), "sha256": data_file(name).sha256, "status": "verified"})
    return records


def _row_record(row) -> dict[str, Any]:
    return {"text": row.text, "seed": row.seed, "guidance": row.guidance, "meta": row.meta}


def show_prompt_set(
    name_or_path: str, workspace: Workspace, *, data_dir: str | os.PathLike | None = None, limit: int = 10
) -> dict[str, Any]:
    """The first ``limit`` rows of a named set or of a user CSV file."""
    if name_or_path in PROMPT_SETS:
        spec = PROMPT_SETS[name_or_path]
        rows = load_prompt_set(name_or_path, data_dir=data_dir, workspace=workspace, limit=limit)
        kind, source = spec.kind, spec.provider or ""
    else:
        path = user_path(name_or_path)
        if not (os.path.lexists(path) or path.suffix.lower() == ".csv"):
            raise DataError(f"unknown prompt set {name_or_path!r}; known: {', '.join(PROMPT_SETS)}, or a CSV file path")
        rows = load_user_csv(path, limit=limit)
        kind, source = "file", str(path.resolve())
    return {"name": name_or_path, "kind": kind, "source": source, "shown": len(rows), "rows": [_row_record(r) for r in rows]}


def add_prompt_set(store: Store, workspace: Workspace, name_or_path: str, *, limit: int | None = None) -> dict[str, Any]:
    set_id = ensure_prompt_set(store, name_or_path, workspace=workspace, limit=limit)
    record = store.get_prompt_set(set_id)
    return {"id": set_id, "name": record.name, "rows": record.n_rows, "sha256": record.sha256, "source": record.source}


def concept_record(concept: Concept) -> dict[str, Any]:
    return {**concept.as_dict(), "n_pairs": len(concept.pairs), "meta": concept.meta}


def list_concepts(
    world: str = "sd", *, workspace: Workspace | None = None, data_dir: str | os.PathLike | None = None
) -> list[dict[str, Any]]:
    """Concepts of a world with their pairs; a concept whose pair file is not local says how to get it."""
    records = []
    for name in concept_names(world):
        try:
            records.append(concept_record(load_concept(name, world=world, workspace=workspace, data_dir=data_dir)))
        except DataError as exc:
            records.append({"name": name, "world": world, "pairs": None, "n_pairs": None, "error": str(exc)})
    return records
