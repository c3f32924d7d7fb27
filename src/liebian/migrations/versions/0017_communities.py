"""communities: communities, groups, members, alerts, violations, flood

Revision ID: 0017_communities
Revises: 0008_segments
Create Date: 2026-12-02 22:34:52.957075
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import liebian.kit.db

revision: str = "0017_communities"
down_revision: str | Sequence[str] | None = "0007_people"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "communities",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("starts_at", liebian.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ends_at", liebian.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("threshold", sa.String(length=16), nullable=False),
        sa.Column("threshold_config", sa.JSON(), nullable=False),
        sa.Column("tiers", sa.JSON(), nullable=False),
        sa.Column("screening", sa.JSON(), nullable=False),
        sa.Column("routing", sa.JSON(), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("welcome_template", sa.Text(), nullable=False),
        sa.Column("announcement_template", sa.Text(), nullable=False),
        sa.Column("channel_id", sa.String(length=40), nullable=True),
        sa.Column("alert_below", sa.Integer(), nullable=False),
        sa.Column("alerted_at", liebian.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", liebian.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", liebian.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_communities_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_communities")),
    )
    with op.batch_alter_table("communities", schema=None) as batch_op:
        batch_op.create_index("ix_communities_workspace_id", ["workspace_id", "id"], unique=False)

    op.create_table(
        "community_alerts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("community_id", sa.String(length=40), nullable=False),
        sa.Column("group_id", sa.String(length=40), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("message", sa.String(length=1000), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", liebian.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["community_id"],
            ["communities.id"],
            name=op.f("fk_community_alerts_community_id_communities"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_community_alerts_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_community_alerts")),
    )
    with op.batch_alter_table("community_alerts", schema=None) as batch_op:
        batch_op.create_index("ix_community_alerts_community", ["community_id", "id"], unique=False)

    op.create_table(
        "community_groups",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("community_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.Column("qr_image", sa.Text(), nullable=True),
        sa.Column("join_url", sa.String(length=500), nullable=True),
        sa.Column("chat_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", liebian.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", liebian.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["community_id"],
            ["communities.id"],
            name=op.f("fk_community_groups_community_id_communities"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_community_groups_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_community_groups")),
        sa.UniqueConstraint("workspace_id", "chat_id", name="uq_community_groups_ws_chat"),
    )
    with op.batch_alter_table("community_groups", schema=None) as batch_op:
        batch_op.create_index(
            "ix_community_groups_community", ["community_id", "status"], unique=False
        )

    op.create_table(
        "community_flood",
        sa.Column("group_id", sa.String(length=40), nullable=False),
        sa.Column("sender", sa.String(length=128), nullable=False),
        sa.Column("window_start", liebian.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["community_groups.id"],
            name=op.f("fk_community_flood_group_id_community_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", "sender", name="pk_community_flood"),
    )
    op.create_table(
        "community_members",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("community_id", sa.String(length=40), nullable=False),
        sa.Column("group_id", sa.String(length=40), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("contact_id", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("scene", sa.String(length=16), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=True),
        sa.Column("tier_source", sa.String(length=16), nullable=True),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("invite_code", sa.String(length=16), nullable=False),
        sa.Column("inviter_member_id", sa.String(length=40), nullable=True),
        sa.Column("muted_until", liebian.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("routed_at", liebian.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("joined_at", liebian.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("left_at", liebian.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["community_id"],
            ["communities.id"],
            name=op.f("fk_community_members_community_id_communities"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_community_members_contact_id_contacts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["community_groups.id"],
            name=op.f("fk_community_members_group_id_community_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_community_members_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_community_members")),
        sa.UniqueConstraint("community_id", "holder", name="uq_community_members_holder"),
        sa.UniqueConstraint("invite_code", name=op.f("uq_community_members_invite_code")),
    )
    with op.batch_alter_table("community_members", schema=None) as batch_op:
        batch_op.create_index("ix_community_members_contact", ["contact_id"], unique=False)
        batch_op.create_index("ix_community_members_group", ["group_id", "status"], unique=False)

    op.create_table(
        "community_violations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("community_id", sa.String(length=40), nullable=False),
        sa.Column("group_id", sa.String(length=40), nullable=False),
        sa.Column("sender", sa.String(length=128), nullable=False),
        sa.Column("contact_id", sa.String(length=40), nullable=True),
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("task_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", liebian.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["community_id"],
            ["communities.id"],
            name=op.f("fk_community_violations_community_id_communities"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["community_groups.id"],
            name=op.f("fk_community_violations_group_id_community_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_community_violations_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_community_violations")),
        sa.UniqueConstraint("group_id", "message_id", "rule", name="uq_community_violations_msg"),
    )
    with op.batch_alter_table("community_violations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_community_violations_member", ["community_id", "sender"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("community_violations", schema=None) as batch_op:
        batch_op.drop_index("ix_community_violations_member")

    op.drop_table("community_violations")
    with op.batch_alter_table("community_members", schema=None) as batch_op:
        batch_op.drop_index("ix_community_members_group")
        batch_op.drop_index("ix_community_members_contact")

    op.drop_table("community_members")
    op.drop_table("community_flood")
    with op.batch_alter_table("community_groups", schema=None) as batch_op:
        batch_op.drop_index("ix_community_groups_community")

    op.drop_table("community_groups")
    with op.batch_alter_table("community_alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_community_alerts_community")

    op.drop_table("community_alerts")
    with op.batch_alter_table("communities", schema=None) as batch_op:
        batch_op.drop_index("ix_communities_workspace_id")

    op.drop_table("communities")
