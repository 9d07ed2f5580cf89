"""Per-seed attack rows: each seed prompt's adversarial prompt is stored when its search ends, so a
killed attack resumes at the next seed instead of from scratch (hours at paper budgets).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attack_rows",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False, index=True),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("seed_prompt_id", sa.Integer, sa.ForeignKey("prompts.id"), nullable=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("guidance", sa.Float, nullable=False),
        sa.Column("loss", sa.Float, nullable=True),
        sa.Column("meta", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("run_id", "idx", name="uq_attack_rows_run_idx"),
    )


def downgrade() -> None:
    op.drop_table("attack_rows")
