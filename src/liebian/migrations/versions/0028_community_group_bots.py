"""communities: a group's bot channel; calendar sends made through it

Revision ID: 0028_community_group_bots
Revises: 0027_community_first_day_tasks
Create Date: 2026-12-03 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0028_community_group_bots"
down_revision: str | Sequence[str] | None = "0027_community_first_day_tasks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("community_groups") as batch:
        batch.add_column(sa.Column("bot_channel_id", sa.String(40), nullable=True))
    with op.batch_alter_table("community_post_sends") as batch:
        batch.add_column(sa.Column("channel_send_id", sa.String(40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("community_post_sends") as batch:
        batch.drop_column("channel_send_id")
    with op.batch_alter_table("community_groups") as batch:
        batch.drop_column("bot_channel_id")
