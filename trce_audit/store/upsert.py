"""INSERT … ON CONFLICT DO NOTHING on the store's two dialects: how retried writes stay idempotent."""

from __future__ import annotations

from typing import Any, Iterable, Sequence, TypeVar

from sqlalchemy import select, tuple_
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ..errors import StoreError
from .schema import Detection

T = TypeVar("T")
DIALECTS = ("sqlite", "postgresql")
_INSERTS = {"sqlite": sqlite_insert, "postgresql": postgresql_insert}


def chunks(items: Sequence[T], size: int = 500) -> list[Sequence[T]]:
    """Slices short enough for SQLite's bound-parameter limit."""
    return [items[start : start + size] for start in range(0, len(items), size)]


def _insert(dialect: str):
    if dialect not in _INSERTS:
        raise StoreError(f"the store supports {' and '.join(DIALECTS)} databases, not {dialect}")
    return _INSERTS[dialect]


def insert_new(session: Session, model: type, rows: list[dict[str, Any]], *, returning: bool = False) -> list[int]:
    """Insert the rows whose unique key is not stored yet; the others are left as they are.

    Returns the ids of the rows inserted when ``returning`` (one statement either way)."""
    if not rows:
        return []
    table = model.__table__
    statement = _insert(session.get_bind().dialect.name)(table).on_conflict_do_nothing()
    if not returning:
        session.execute(statement, rows)
        return []
    statement = statement.returning(table.c.id)
    return [row.id for row in session.execute(statement, rows)]


def insert_detections(session: Session, records: Iterable[dict[str, Any]]) -> list[int]:
    """``Store.add_detections`` inside a caller's transaction (``add_generations`` stores a shard's too)."""
    keyed: dict[tuple, list[dict[str, Any]]] = {}
    for record in records:
        key = (record["generation_id"], record["detector"], record.get("detector_version", ""), record.get("weights_sha256", ""))
        group = keyed.setdefault(key, [])
        group.append({"detector_version": key[2], "weights_sha256": key[3], "ordinal": len(group), **record})
    if not keyed:
        return []
    columns = (Detection.generation_id, Detection.detector, Detection.detector_version, Detection.weights_sha256)
    for part in chunks(list(keyed), 200):  # four parameters a key: stay under SQLite's limit
        stored = session.execute(select(*columns).distinct().where(tuple_(*columns).in_(part)))
        for key in stored:
            keyed.pop(tuple(key), None)
    return insert_new(session, Detection, [row for group in keyed.values() for row in group], returning=True)
