"""Inspect runs in the store."""

from __future__ import annotations

from typing import Any

from ..store import Store
from ..store.schema import Run

__all__ = ["list_runs", "show_run"]


def run_record(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "identity": run.identity,
        "kind": run.kind,
        "component": run.component,
        "component_version": run.component_version,
        "status": run.status,
        "model": run.model_ref,
        "model_fingerprint": run.model_fingerprint,
        "prompt_set_id": run.prompt_set_id,
        "parent_run_id": run.parent_run_id,
        "created_at": run.created_at.isoformat(timespec="seconds") if run.created_at else None,
        "finished_at": run.finished_at.isoformat(timespec="seconds") if run.finished_at else None,
    }


def list_runs(store: Store, *, kind: str | None = None, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    return [run_record(run) for run in store.list_runs(kind=kind, status=status, limit=limit)]


def show_run(store: Store, run_id: int) -> dict[str, Any]:
    run = store.get_run(run_id)
    record = run_record(run)
    record.update(
        config=run.config,
        runtime=run.runtime,
        versions=run.versions,
        error=run.error,
        summary=run.summary,
        n_generations=len(store.generations(run_id)),
        metrics=[m.as_record() for m in store.metrics(run_id)],
        children=[run_record(child) for child in store.list_runs(parent_run_id=run_id, limit=1000)],
    )
    return record
