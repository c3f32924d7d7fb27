"""communities: the group owner's WeCom userid; a calendar slot's WeCom group mass send

Revision ID: 0029_community_wecom_posts
Revises: 0028_community_group_bots
Create Date: 2026-12-03 12:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0029_community_wecom_posts"
down_revision: str | Sequence[str] | None = "0028_community_group_bots"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("community_groups") as batch:
        batch.add_column(sa.Column("owner_wecom_userid", sa.String(64), nullable=True))
    with op.batch_alter_table("community_post_sends") as batch:
        batch.add_column(sa.Column("wecom_mass_send_id", sa.String(40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("community_post_sends") as batch:
        batch.drop_column("wecom_mass_send_id")
    with op.batch_alter_table("community_groups") as batch:
        batch.drop_column("owner_wecom_userid")
