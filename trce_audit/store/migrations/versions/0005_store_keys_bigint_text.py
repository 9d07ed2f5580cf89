"""A store for many writers and for Postgres: BIGINT seeds, a key on every per-item table, Text names.

- ``prompts.seed`` becomes BIGINT: I2P seeds reach 4,289,762,215, past a 32-bit INTEGER (SQLite
  never enforced the width; Postgres does).
- ``detections`` gets ``ordinal`` (an image's rows numbered per detector, version and weights, in id
  order, so NudeNet's repeated labels keep their rows) and the key
  ``(generation_id, detector, detector_version, weights_sha256, ordinal)``.
- ``artefacts`` gets ``(sha256, path)`` as its key; should a race have stored one twice, the first
  row is kept and run/artefact references to the later one are pointed at it.
- Names chosen by users or plugins (component, model_ref, parent_model, set names, detector, label,
  metric name and scorer) become Text: Postgres enforces VARCHAR(n) lengths, SQLite never did.
  ``generations`` (run_id, prompt_id) and ``metrics`` (run_id, name, scorer) already have their keys.

SQLite changes no column type: its INTEGER already holds 64 bits and VARCHAR(n) is TEXT to it, and
altering a type there means copying the table, which its foreign keys forbid for runs and prompts.
The new keys are unique indexes, which both dialects add in place and ON CONFLICT honours.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_DETECTION_KEY = ("generation_id", "detector", "detector_version", "weights_sha256")
_TEXT_COLUMNS = {
    "runs": (("component", sa.String(128), False), ("component_version", sa.String(32), False), ("model_ref", sa.String(512), True)),
    "artefacts": (("parent_model", sa.String(512), True),),
    "prompt_sets": (("name", sa.String(128), False),),
    "detections": (("detector", sa.String(64), False), ("detector_version", sa.String(64), False), ("label", sa.String(128), False)),
    "metrics": (("name", sa.String(64), False), ("scorer", sa.String(64), False)),
}


def _number_detections() -> None:
    # Each row's ordinal = how many rows of its image and detector came before it (by id).
    earlier = sa.text(
        "UPDATE detections SET ordinal = (SELECT count(*) FROM detections AS d WHERE "
        + " AND ".join(f"d.{c} = detections.{c}" for c in _DETECTION_KEY)
        + " AND d.id < detections.id)"
    )
    op.get_bind().execute(earlier)


def _merge_duplicate_artefacts() -> None:
    connection = op.get_bind()
    artefacts = sa.table("artefacts", sa.column("id", sa.Integer), sa.column("sha256", sa.String), sa.column("path", sa.Text))
    runs = sa.table("runs", sa.column("model_ref", sa.Text))
    parents = sa.table("artefacts", sa.column("parent_model", sa.Text))
    kept: dict[tuple, int] = {}
    for row in connection.execute(sa.select(artefacts).order_by(artefacts.c.id)):
        first = kept.setdefault((row.sha256, row.path), row.id)
        if first == row.id:
            continue
        old, new = f"artefact:{row.id}", f"artefact:{first}"
        connection.execute(runs.update().where(runs.c.model_ref == old).values(model_ref=new))
        connection.execute(parents.update().where(parents.c.parent_model == old).values(parent_model=new))
        connection.execute(artefacts.delete().where(artefacts.c.id == row.id))


def _retype(to_new: bool) -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    old, new = (sa.Integer, sa.BigInteger) if to_new else (sa.BigInteger, sa.Integer)
    op.alter_column("prompts", "seed", type_=new, existing_type=old, existing_nullable=False)
    for table, columns in _TEXT_COLUMNS.items():
        for name, varchar, nullable in columns:
            old, new = (varchar, sa.Text) if to_new else (sa.Text, varchar)
            op.alter_column(table, name, type_=new, existing_type=old, existing_nullable=nullable)


def upgrade() -> None:
    _retype(to_new=True)
    op.add_column("detections", sa.Column("ordinal", sa.Integer, nullable=False, server_default="0"))
    _number_detections()
    op.create_index("uq_detections_key", "detections", [*_DETECTION_KEY, "ordinal"], unique=True)
    _merge_duplicate_artefacts()
    op.create_index("uq_artefacts_sha256_path", "artefacts", ["sha256", "path"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_artefacts_sha256_path", "artefacts")
    op.drop_index("uq_detections_key", "detections")
    with op.batch_alter_table("detections") as batch:  # SQLite drops a column by copying the table
        batch.drop_column("ordinal")
    _retype(to_new=False)
