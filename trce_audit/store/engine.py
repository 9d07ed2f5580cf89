"""Open a store by SQLAlchemy URL and bring its schema to the current migration."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from ..errors import StoreError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
HEAD = "head"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets a report read while a run writes; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"invalid database URL {url!r}: {exc}") from exc
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(parsed)
    except Exception as exc:  # missing DBAPI driver, bad options
        raise StoreError(f"cannot open database {url!r}: {exc}") from exc
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _alembic_config(connection):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def upgrade(engine: Engine, revision: str = HEAD, *, attempts: int = 5) -> None:
    """Migrate the schema to ``revision`` (creating it from empty if needed).

    Two processes opening a new database at once both see it empty; the loser's DDL fails, and it
    then finds the winner's schema, so a failed migration is re-checked before it is reported.
    """
    import time

    from alembic import command

    target = head_revision() if revision == HEAD else revision
    for attempt in range(attempts):
        try:
            if current_revision(engine) == target:
                return
            with engine.begin() as connection:
                command.upgrade(_alembic_config(connection), revision)
            return
        except OperationalError as exc:
            if attempt == attempts - 1:
                raise StoreError(f"cannot migrate database {engine.url!r}: {exc.orig}") from exc
            time.sleep(0.2 * (attempt + 1))


def table_names(engine: Engine) -> list[str]:
    return sorted(inspect(engine).get_table_names())
