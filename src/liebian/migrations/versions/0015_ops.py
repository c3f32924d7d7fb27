"""live code seats: a visitor's place on a live code, kept across re-scans

Revision ID: 0015_ops
Revises: 0003_live_codes
Create Date: 2026-12-02 20:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import liebian.kit.db

revision: str = "0015_ops"
down_revision: str | Sequence[str] | None = "0003_live_codes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "live_code_seats",
        sa.Column("live_code_id", sa.String(length=40), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("target_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", liebian.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["live_code_id"],
            ["live_codes.id"],
            name=op.f("fk_live_code_seats_live_code_id_live_codes"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["target_id"],
            ["live_code_targets.id"],
            name=op.f("fk_live_code_seats_target_id_live_code_targets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("live_code_id", "holder", name=op.f("pk_live_code_seats")),
    )
    with op.batch_alter_table("live_code_seats", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_live_code_seats_target_id"), ["target_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("live_code_seats", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_live_code_seats_target_id"))
    op.drop_table("live_code_seats")
