"""Open a store by SQLAlchemy URL and bring its schema to the current migration."""

from __future__ import annotations

import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError, ProgrammingError

from ..errors import StoreError, mask_url_secrets, one_line, scrub_url_secrets
from .upsert import DIALECTS
from ..workspace import user_path

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
HEAD = "head"
# Any fixed 64-bit key: every trce-audit process migrating one Postgres database queues on it.
MIGRATION_LOCK_KEY = 0x7472_6365_0001


def mask_url(url: str | URL) -> str:
    """The URL as it may be shown: any password replaced by ***, even in a URL that does not parse, in a
    password with an unencoded "@", or in a query parameter (``?password=``, libpq's ``sslpassword``)."""
    if isinstance(url, URL):
        return mask_url_secrets(url.render_as_string(hide_password=True))
    try:
        return mask_url_secrets(make_url(url).render_as_string(hide_password=True))
    except (ArgumentError, ValueError):
        # too malformed to parse: the user part up to the last "@", or without a "://" anything from the
        # first colon to the last "@", may hold a password
        if "://" in url:
            return mask_url_secrets(url)
        colon, at = url.find(":"), url.rfind("@")
        return f"{url[:colon]}:***{url[at:]}" if at > colon >= 0 else url


def reason(exc: BaseException, url: URL) -> str:
    """A driver's message on one line, with the password scrubbed should the driver echo it."""
    message = one_line(getattr(exc, "orig", None) or exc)
    if url.password:
        message = message.replace(str(url.password), "***")
    return scrub_url_secrets(message, url.render_as_string(hide_password=False))  # a ?password= too


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets a report read while a run writes; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    _sqlite_reader_pragmas(dbapi_connection, _record)
    cursor.close()


def _sqlite_reader_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _connect_args(url: URL, read_only: bool) -> dict:
    args: dict = {}
    if url.get_backend_name() == "postgresql":
        # An unreachable host must fail within seconds, not after the OS's TCP timeout (minutes).
        if "connect_timeout" not in url.query:
            args["connect_timeout"] = 10
        if read_only:  # the server refuses any write in every transaction of these connections
            args["options"] = "-c default_transaction_read_only=on"
    return args


def read_only_sqlite(parsed: URL) -> URL:
    """The URL of an existing SQLite file opened read-only (SQLite's own mode=ro): nothing is created."""
    path = user_path(parsed.database or "")
    if parsed.database in (None, "", ":memory:") or not path.is_file():
        raise StoreError(f"no result store at {parsed.database or '(no path)'}")
    query = {**parsed.query, "mode": "ro", "uri": "true"}
    if not path.with_name(path.name + "-wal").exists():
        # No writer has it open (the last one checkpointed and removed its WAL): a mode=ro reader would
        # still create -wal/-shm files beside it. Read it as immutable instead; a writer that starts
        # meanwhile appends to a new WAL this reader does not see, and the main file changes only at
        # that writer's checkpoint.
        query["immutable"] = "1"
    return parsed.set(database=f"file:{path.resolve()}", query=query)


def make_engine(url: str, *, read_only: bool = False) -> Engine:
    """An engine on ``url``; ``read_only`` opens an existing store for reading and creates nothing."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise StoreError(f"invalid database URL {mask_url(url)!r}: expected dialect[+driver]://user:password@host/db or sqlite:///path") from None
    if "@" in (parsed.host or ""):
        # the password held an unencoded "@": the driver would take its tail for the host name (and print it)
        raise StoreError(f"invalid database URL {mask_url(url)!r}: a password with '@' in it must be written %40")
    if parsed.get_backend_name() not in DIALECTS:
        raise StoreError(
            f"unsupported database URL {mask_url(parsed)!r}: the store runs on {' or '.join(DIALECTS)}"
        )
    sqlite = parsed.get_backend_name() == "sqlite"
    shown = parsed
    if sqlite and read_only:
        parsed = read_only_sqlite(parsed)
    elif sqlite and parsed.database not in (None, "", ":memory:"):
        try:
            user_path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot open database {mask_url(parsed)!r}: {exc.strerror or exc}") from None
    try:
        # Server connections sit idle through long GPU steps; a ping replaces one the server dropped.
        engine = create_engine(parsed, pool_pre_ping=not sqlite, connect_args=_connect_args(parsed, read_only))
    except ModuleNotFoundError as exc:
        hint = "; install trce-audit[postgres]" if parsed.get_backend_name() == "postgresql" else ""
        raise StoreError(f"cannot open database {mask_url(shown)!r}: {exc}{hint}") from None
    except Exception as exc:  # unknown dialect, bad options
        raise StoreError(f"cannot open database {mask_url(shown)!r}: {reason(exc, parsed)}") from None
    if sqlite:
        # a reader leaves the journal mode as the writer set it (changing it is a write)
        event.listen(engine, "connect", _sqlite_reader_pragmas if read_only else _sqlite_pragmas)
    return engine


def check_connection(engine: Engine) -> None:
    """Fail at once, naming the database, when it cannot be reached (no retry, nothing written)."""
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        engine.dispose()
        raise StoreError(f"cannot connect to database {mask_url(engine.url)!r}: {reason(exc, engine.url)}") from None


def _alembic_config(connection):
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def check_schema(engine: Engine) -> None:
    """A reader's check: the database holds a store at this version's schema (a reader never migrates)."""
    revision = current_revision(engine)
    if revision is None:
        engine.dispose()
        raise StoreError(f"no result store in database {mask_url(engine.url)!r}")
    if revision != head_revision():
        engine.dispose()
        raise StoreError(
            f"the store in {mask_url(engine.url)!r} is at schema {revision}, this trce-audit reads {head_revision()}; "
            "a command that writes (generate, eval, audit) migrates it"
        )


def upgrade(engine: Engine, revision: str = HEAD, *, attempts: int = 5) -> None:
    """Migrate the schema to ``revision`` (creating it from empty if needed).

    Processes opening a new database at once all see it empty. On Postgres they queue on an advisory
    lock held for the migration's transaction, so the later ones find the schema done. SQLite has no
    such lock: the loser's DDL fails (or, on a server without the lock, PG's catalog raises
    IntegrityError/ProgrammingError), so a failed migration is re-checked before it is reported.
    """
    target = head_revision() if revision == HEAD else revision
    for attempt in range(attempts):
        try:
            if current_revision(engine) == target:
                return
            with engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                command.upgrade(_alembic_config(connection), revision)
            return
        except (OperationalError, IntegrityError, ProgrammingError) as exc:
            if attempt == attempts - 1:
                raise StoreError(f"cannot migrate database {mask_url(engine.url)!r}: {reason(exc, engine.url)}") from exc
            time.sleep(0.2 * (attempt + 1))


def table_names(engine: Engine) -> list[str]:
    return sorted(inspect(engine).get_table_names())
