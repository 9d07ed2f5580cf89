"""Model folders the store knows by content: erased models, fine-tuned checkpoints."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import StoreError
from .schema import Artefact
from .session import StoreSession, storable_id


class ArtefactTables(StoreSession):
    def add_artefact(
        self,
        *,
        path: str,
        sha256: str,
        run_id: int | None,
        parent_model: str | None = None,
        parent_fingerprint: str | None = None,
        kind: str = "model",
        meta: dict[str, Any] | None = None,
    ) -> int:
        """Record a model folder once per (sha256, path); returns its id (the existing one if stored)."""

        def find(session: Session) -> int | None:
            return session.scalar(select(Artefact.id).where(Artefact.sha256 == sha256, Artefact.path == path))

        def create(session: Session) -> int:
            found = find(session)
            if found is not None:
                return found
            artefact = Artefact(
                kind=kind,
                path=path,
                sha256=sha256,
                run_id=run_id,
                parent_model=parent_model,
                parent_fingerprint=parent_fingerprint,
                meta=meta or {},
            )
            session.add(artefact)
            session.flush()
            return artefact.id

        return self._first_writer(create, find)

    def get_artefact(self, artefact_id: int) -> Artefact:
        with self.session() as session:
            found = session.get(Artefact, artefact_id) if storable_id(artefact_id) else None
            if found is None:
                raise StoreError(f"artefact {artefact_id} does not exist")
            return found

    def list_artefacts(self) -> list[Artefact]:
        with self.session() as session:
            return list(session.scalars(select(Artefact).order_by(Artefact.id)))
