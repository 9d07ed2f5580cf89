"""The Store: typed operations on the result store. Components and the api call these, never raw SQL.

Each table group is a mixin over one transaction API (``StoreSession``); ``Store`` owns the engine.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import sessionmaker

from ..errors import StoreError
from . import engine as engine_mod
from .artefacts import ArtefactTables
from .measurements import MeasurementTables
from .prompts import PromptTables
from .runs import RunTables
from .schema import Artefact, AttackRow, Detection, Generation, Metric, Prompt, PromptSet, Run


class Store(RunTables, PromptTables, MeasurementTables, ArtefactTables):
    def __init__(self, url: str, *, migrate: bool = True, read_only: bool = False):
        """``read_only``: an existing store, opened so that nothing can be written (no migration either)."""
        self.url = url
        self.engine = engine_mod.make_engine(url, read_only=read_only)
        engine_mod.check_connection(self.engine)
        try:
            if read_only:
                engine_mod.check_schema(self.engine)
            elif migrate:
                engine_mod.upgrade(self.engine)
        except DBAPIError as exc:  # a file that is no SQLite database, or one cut short: one line, not a traceback
            self.engine.dispose()
            raise StoreError(f"cannot read the store in {self.display_url!r}: {engine_mod.reason(exc, self.engine.url)}") from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def display_url(self) -> str:
        """The URL with any password masked: the only form to print, log or store."""
        return engine_mod.mask_url(self.url)

    def close(self) -> None:
        self.engine.dispose()

    def counts(self) -> dict[str, int]:
        """Row counts per table: used by tests to prove a failed command left the store unchanged."""
        with self.session() as session:
            return {
                model.__tablename__: session.scalar(select(func.count()).select_from(model))
                for model in (Run, Artefact, PromptSet, Prompt, Generation, Detection, Metric, AttackRow)
            }
