"""channel spend (cost side of CAC/ROI)

Revision ID: 0005_spend
Revises: 0001_foundation
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import liebian.kit.db

revision: str = "0005_spend"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "channel_spend",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.Column("created_at", liebian.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_channel_spend_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_spend")),
    )
    with op.batch_alter_table("channel_spend", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_channel_spend_workspace_id"), ["workspace_id"], unique=False
        )
        batch_op.create_index(
            "ix_channel_spend_ws_channel", ["workspace_id", "channel"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("channel_spend", schema=None) as batch_op:
        batch_op.drop_index("ix_channel_spend_ws_channel")
        batch_op.drop_index(batch_op.f("ix_channel_spend_workspace_id"))
    op.drop_table("channel_spend")
