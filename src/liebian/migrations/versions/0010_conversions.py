"""event hook markers: which events' side effects (campaign conversions…) were applied

Revision ID: 0010_conversions
Revises: 0001_foundation
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import liebian.kit.db

revision: str = "0010_conversions"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_hook_applied",
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("received_at", liebian.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("applied_at", liebian.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_event_hook_applied_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "event_id", name=op.f("pk_event_hook_applied")),
    )
    with op.batch_alter_table("event_hook_applied", schema=None) as batch_op:
        batch_op.create_index("ix_event_hook_applied_applied_at", ["applied_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("event_hook_applied", schema=None) as batch_op:
        batch_op.drop_index("ix_event_hook_applied_applied_at")
    op.drop_table("event_hook_applied")
