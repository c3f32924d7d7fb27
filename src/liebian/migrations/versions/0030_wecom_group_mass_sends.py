"""wecom: customer-group mass sends (chat_type group) and the results WeCom reports

Revision ID: 0030_wecom_group_mass_sends
Revises: 0018_wecom
Create Date: 2026-12-03 12:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from liebian.kit.db import UTCDateTime

revision: str = "0030_wecom_group_mass_sends"
down_revision: str | Sequence[str] | None = "0018_wecom"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("wecom_mass_sends") as batch:
        batch.add_column(
            sa.Column("chat_type", sa.String(8), nullable=False, server_default="single")
        )
        batch.add_column(sa.Column("source", sa.String(64), nullable=True))
        batch.add_column(sa.Column("results", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("results_at", UTCDateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_wecom_mass_sends_source", "wecom_mass_sends", ["workspace_id", "source", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_wecom_mass_sends_source", table_name="wecom_mass_sends")
    with op.batch_alter_table("wecom_mass_sends") as batch:
        batch.drop_column("results_at")
        batch.drop_column("results")
        batch.drop_column("source")
        batch.drop_column("chat_type")
