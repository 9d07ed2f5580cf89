"""Dropping a test database on the Postgres test server, whatever is still connected to it."""

from __future__ import annotations

import time

import sqlalchemy as sa


def drop_database(connection, name: str, attempts: int = 10) -> None:
    """``DROP DATABASE … WITH (FORCE)`` ends this role's leftover sessions, but it also tries to end an
    autovacuum worker that happens to be on the new database, which no non-superuser may signal
    (InsufficientPrivilege on Postgres 15: CI failed so once). A plain DROP DATABASE stops autovacuum workers
    itself, so after a refusal this role's own sessions are ended by hand and the plain form is retried."""
    try:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    except sa.exc.DBAPIError:
        pass
    for attempt in range(attempts):
        connection.exec_driver_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %(name)s AND usename = current_user AND pid <> pg_backend_pid()", {"name": name})
        try:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
            return
        except sa.exc.DBAPIError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)  # a session or worker on its way out
