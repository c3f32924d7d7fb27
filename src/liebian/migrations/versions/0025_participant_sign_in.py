"""participants: sign-in methods per workspace/campaign, one-time SMS codes

Revision ID: 0025_participant_sign_in
Revises: 0007_people
Create Date: 2026-12-03 02:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import liebian.kit.db

revision: str = "0025_participant_sign_in"
down_revision: str | Sequence[str] | None = "0007_people"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "participant_sign_in",
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("scope", sa.String(length=40), nullable=False),
        sa.Column("methods", sa.String(length=64), nullable=False),
        sa.Column("sms_channel_id", sa.String(length=40), nullable=True),
        sa.Column("sms_text", sa.String(length=300), nullable=True),
        sa.Column("sms_template_id", sa.String(length=64), nullable=True),
        sa.Column("wechat_app_id", sa.String(length=64), nullable=True),
        sa.Column("wechat_secret_enc", sa.String(length=400), nullable=True),
        sa.Column("wechat_secret_hint", sa.String(length=16), nullable=True),
        sa.Column("wechat_scope", sa.String(length=20), nullable=False),
        sa.Column("updated_at", liebian.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_participant_sign_in_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "scope", name="pk_participant_sign_in"),
    )
    op.create_table(
        "participant_sms_codes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("phone_hash", sa.String(length=64), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("ip_hash", sa.String(length=32), nullable=False),
        sa.Column("contact_id", sa.String(length=40), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("expires_at", liebian.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", liebian.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("send_id", sa.String(length=40), nullable=True),
        sa.Column("send_status", sa.String(length=20), nullable=True),
        sa.Column("created_at", liebian.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_participant_sms_codes_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_participant_sms_codes")),
        sa.UniqueConstraint(
            "workspace_id", "phone_hash", "slot", name="uq_participant_sms_codes_slot"
        ),
    )
    op.create_index(
        "ix_participant_sms_codes_phone", "participant_sms_codes",
        ["workspace_id", "phone_hash", "created_at"],
    )  # fmt: skip
    op.create_index(
        "ix_participant_sms_codes_ip", "participant_sms_codes",
        ["workspace_id", "ip_hash", "created_at"],
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("ix_participant_sms_codes_ip", table_name="participant_sms_codes")
    op.drop_index("ix_participant_sms_codes_phone", table_name="participant_sms_codes")
    op.drop_table("participant_sms_codes")
    op.drop_table("participant_sign_in")
