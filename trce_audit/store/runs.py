"""Runs in the store: started once per identity, resumed, completed or failed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import StoreError
from ..hashing import run_identity
from ..versions import package_versions
from .schema import PromptSet, Run, utcnow
from .session import StoreSession, storable_id


@dataclass
class RunHandle:
    """A started run; ``resumed`` when a run with its identity was stored before."""

    id: int
    identity: str
    status: str
    resumed: bool


class _PromptSets(Protocol):
    """What ``start_run`` needs from the prompt-set mixin that ``Store`` combines it with."""

    def get_prompt_set(self, set_id: int) -> PromptSet: ...


def attempt(runtime: dict[str, Any] | None) -> dict[str, Any]:
    """A run's runtime record as an attempt at it starts: when it started, for the seconds ``finish``
    records (``created_at`` is the first attempt's, so it cannot time a run resumed after a kill)."""
    return {**(runtime or {}), "attempt_started": utcnow().isoformat()}


def finish(run: Run) -> None:
    """Stamp the finish, and the attempt's seconds in the runtime record where its start is known."""
    run.finished_at = utcnow()
    started = (run.runtime or {}).get("attempt_started")
    if isinstance(started, str):
        seconds = (run.finished_at - datetime.fromisoformat(started)).total_seconds()
        run.runtime = {**run.runtime, "seconds": round(seconds, 1)}


class RunTables(StoreSession):
    def start_run(
        self,
        *,
        kind: str,
        component: str,
        config: dict[str, Any],
        runtime: dict[str, Any] | None = None,
        component_version: str = "",
        model_ref: str | None = None,
        model_fingerprint: str | None = None,
        prompt_set_id: int | None = None,
        parent_run_id: int | None = None,
        inputs: dict[str, Any] | None = None,
    ) -> RunHandle:
        """Start a run, or resume the one with the same identity (a failed one is restarted)."""
        prompt_sha = None
        if prompt_set_id is not None:
            prompt_sha = cast(_PromptSets, self).get_prompt_set(prompt_set_id).sha256
        identity = run_identity(
            kind,
            component,
            config,
            component_version=component_version,
            model_fingerprint=model_fingerprint,
            prompt_set_sha=prompt_sha,
            inputs=inputs,
        )

        def resume(session: Session) -> RunHandle | None:
            existing = session.scalar(select(Run).where(Run.identity == identity))
            if existing is None:
                return None
            if existing.status == "failed":
                existing.status = "started"
                existing.error = None
            if existing.status != "complete":  # a complete run is not redone: its record of where it ran stands
                existing.runtime = attempt(runtime)
            return RunHandle(existing.id, identity, existing.status, resumed=True)

        def create(session: Session) -> RunHandle:
            found = resume(session)
            if found is not None:
                return found
            run = Run(
                identity=identity,
                kind=kind,
                component=component,
                component_version=component_version,
                config=config,
                runtime=attempt(runtime),
                model_ref=model_ref,
                model_fingerprint=model_fingerprint,
                prompt_set_id=prompt_set_id,
                parent_run_id=parent_run_id,
                versions=package_versions(),
                status="started",
                summary={},
            )
            session.add(run)
            session.flush()
            return RunHandle(run.id, identity, run.status, resumed=False)

        return self._first_writer(create, resume)

    def complete_run(self, run_id: int, summary: dict[str, Any] | None = None, runtime: dict[str, Any] | None = None) -> None:
        """Mark a run complete; ``runtime`` adds what was learnt only where the work ran (a worker's threads).
        A run already complete (a re-measure, a resumed audit passing by) keeps its finish time and seconds."""
        with self.session() as session:
            run = self._run(session, run_id)
            if summary is not None:
                run.summary = {**(run.summary or {}), **summary}
            if runtime:
                run.runtime = {**(run.runtime or {}), **runtime}
            if run.status != "complete":
                run.status = "complete"
                finish(run)

    def update_summary(self, run_id: int, summary: dict[str, Any]) -> None:
        """Record progress of a run still in flight (its status is left alone)."""
        with self.session() as session:
            run = self._run(session, run_id)
            run.summary = {**(run.summary or {}), **summary}

    def fail_run(self, run_id: int, error: str) -> None:
        with self.session() as session:
            run = self._run(session, run_id)
            run.status = "failed"
            run.error = error
            finish(run)

    def _run(self, session: Session, run_id: int) -> Run:
        run = session.get(Run, run_id) if storable_id(run_id) else None
        if run is None:
            raise StoreError(f"run {run_id} does not exist")
        return run

    def get_run(self, run_id: int) -> Run:
        with self.session() as session:
            return self._run(session, run_id)

    def find_run(self, identity: str) -> Run | None:
        with self.session() as session:
            return session.scalar(select(Run).where(Run.identity == identity))

    def list_runs(
        self, kind: str | None = None, status: str | None = None, parent_run_id: int | None = None, limit: int = 100
    ) -> list[Run]:
        query = select(Run).order_by(Run.id.desc()).limit(limit)
        if kind:
            query = query.where(Run.kind == kind)
        if status:
            query = query.where(Run.status == status)
        if parent_run_id is not None:
            query = query.where(Run.parent_run_id == parent_run_id)
        with self.session() as session:
            return list(session.scalars(query))
