"""Metrics name their scorer (the detector and protocol that produced them), unique per run.

One eval can hold the same number under several scorers (the held-out pocket scorer beside the
attack's judge, NudeNet under every published protocol); ``(run_id, name, scorer)`` is the key that
keeps a retried scorer from adding a second row. Rows stored before this revision get the scorer
their protocol names (its detector for an attack-success rate, else its metric).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _scorer_of(name: str, protocol: dict) -> str:
    if name in ("asr", "preserve_acc") and protocol.get("detector"):
        return str(protocol["detector"])
    return str(protocol.get("metric") or name)


def upgrade() -> None:
    with op.batch_alter_table("metrics") as batch:
        batch.add_column(sa.Column("scorer", sa.String(64), nullable=False, server_default=""))
    metrics = sa.table(
        "metrics", sa.column("id", sa.Integer), sa.column("run_id", sa.Integer), sa.column("name", sa.String),
        sa.column("scorer", sa.String), sa.column("protocol", sa.JSON),
    )
    connection = op.get_bind()
    seen: set[tuple] = set()
    duplicates: list[int] = []
    for row in connection.execute(sa.select(metrics.c.id, metrics.c.run_id, metrics.c.name, metrics.c.protocol).order_by(metrics.c.id)):
        scorer = _scorer_of(row.name, row.protocol or {})
        key = (row.run_id, row.name, scorer)
        if key in seen:  # an earlier version could attach a number twice; the first one was reported
            duplicates.append(row.id)
            continue
        seen.add(key)
        connection.execute(metrics.update().where(metrics.c.id == row.id).values(scorer=scorer))
    if duplicates:
        connection.execute(metrics.delete().where(metrics.c.id.in_(duplicates)))
    with op.batch_alter_table("metrics") as batch:
        batch.create_unique_constraint("uq_metrics_run_name_scorer", ["run_id", "name", "scorer"])


def downgrade() -> None:
    with op.batch_alter_table("metrics") as batch:
        batch.drop_constraint("uq_metrics_run_name_scorer", type_="unique")
        batch.drop_column("scorer")
