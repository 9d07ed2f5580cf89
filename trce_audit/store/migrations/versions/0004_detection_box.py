"""Detections keep their box (x, y, width, height in image pixels) where the detector gives one.

NudeNet returns a box with every detection; keeping it lets a protocol that depends on geometry (or
a reviewer looking at an image) use the stored pass instead of running the detector again. Nullable:
rows stored before this revision and detectors without boxes (the pocket CNN) have none.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("detections") as batch:
        batch.add_column(sa.Column("box", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("detections") as batch:
        batch.drop_column("box")
