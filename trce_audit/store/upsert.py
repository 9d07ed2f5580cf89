"""INSERT … ON CONFLICT DO NOTHING on the store's two dialects: how retried writes stay idempotent."""

from __future__ import annotations

from typing import Any, Sequence, TypeVar

from sqlalchemy.orm import Session

from ..errors import StoreError

T = TypeVar("T")
DIALECTS = ("sqlite", "postgresql")


def chunks(items: Sequence[T], size: int = 500) -> list[Sequence[T]]:
    """Slices short enough for SQLite's bound-parameter limit."""
    return [items[start : start + size] for start in range(0, len(items), size)]


def _insert(dialect: str):
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise StoreError(f"the store supports {' and '.join(DIALECTS)} databases, not {dialect}")
    return insert


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
