"""communities: content calendar (posts, their sends per group and day) and material library

Revision ID: 0026_community_calendar
Revises: 0017_communities
Create Date: 2026-12-03 02:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from liebian.kit.db import UTCDateTime

revision: str = "0026_community_calendar"
down_revision: str | Sequence[str] | None = "0017_communities"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "community_posts",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("community_id", sa.String(40), sa.ForeignKey("communities.id", ondelete="CASCADE"), nullable=False),
        sa.Column("group_id", sa.String(40), nullable=True),
        sa.Column("title", sa.String(100), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("image", sa.Text(), nullable=True),
        sa.Column("link_url", sa.String(2000), nullable=True),
        sa.Column("weekdays", sa.JSON(), nullable=False),
        sa.Column("at", sa.String(5), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
    )  # fmt: skip
    op.create_index("ix_community_posts_community", "community_posts", ["community_id", "id"])
    op.create_table(
        "community_post_sends",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("post_id", sa.String(40), sa.ForeignKey("community_posts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("group_id", sa.String(40), sa.ForeignKey("community_groups.id", ondelete="CASCADE"), nullable=False),
        sa.Column("slot", sa.String(10), nullable=False),
        sa.Column("link_id", sa.String(40), nullable=True),
        sa.Column("short_url", sa.String(300), nullable=True),
        sa.Column("task_id", sa.String(40), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("post_id", "group_id", "slot", name="uq_community_post_sends_slot"),
    )  # fmt: skip
    op.create_table(
        "community_materials",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
    )  # fmt: skip
    op.create_index(
        "ix_community_materials_ws", "community_materials", ["workspace_id", "kind", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_community_materials_ws", table_name="community_materials")
    op.drop_table("community_materials")
    op.drop_table("community_post_sends")
    op.drop_index("ix_community_posts_community", table_name="community_posts")
    op.drop_table("community_posts")
