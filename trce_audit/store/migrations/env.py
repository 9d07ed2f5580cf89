"""Alembic environment: runs on the connection that trce_audit.store.engine hands it."""

from alembic import context

from trce_audit.store.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:  # invoked from the alembic command line with a URL in alembic.ini
    from sqlalchemy import create_engine

    connection = create_engine(context.config.get_main_option("sqlalchemy.url")).connect()

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite alters tables by copying them
)
with context.begin_transaction():
    context.run_migrations()
