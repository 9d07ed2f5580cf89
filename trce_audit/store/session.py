"""The store's one transaction API, shared by every table mixin of ``Store``."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")
# Row ids a user types (--audit, runs show, artefact:ID, set:ID) past 64 bits cannot name a row, and
# SQLite's driver raises OverflowError on them instead of finding nothing.
_ID_RANGE = range(-(2**63), 2**63)


def storable_id(value: int) -> bool:
    return value in _ID_RANGE


class StoreSession:
    """Base of the table mixins: ``Store.__init__`` sets ``_sessions``; nothing here owns an engine."""

    _sessions: sessionmaker

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def _first_writer(self, create: Callable[[Session], T], find: Callable[[Session], T | None]) -> T:
        """``create`` in one transaction; when another writer stored the same key in between (its unique
        constraint fires), the row it stored, found by ``find``."""
        try:
            with self.session() as session:
                return create(session)
        except IntegrityError:
            with self.session() as session:
                found = find(session)
            if found is None:  # not a lost race: another constraint failed
                raise
            return found
