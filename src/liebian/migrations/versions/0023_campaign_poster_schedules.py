"""campaigns: poster design column, weekly schedules and their runs

Revision ID: 0023_campaign_poster_schedules
Revises: 0012_campaign_loop
Create Date: 2026-12-03 02:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import liebian.kit.db

revision: str = "0023_campaign_poster_schedules"
down_revision: str | Sequence[str] | None = "0012_campaign_loop"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("poster", sa.JSON(), nullable=True))
    op.create_table(
        "campaign_schedules",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("source_campaign_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("start_time", sa.String(length=5), nullable=False),
        sa.Column("duration_minutes", sa.Integer(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("next_run_at", liebian.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", liebian.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", liebian.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_schedules_source_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_campaign_schedules_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_schedules")),
    )
    with op.batch_alter_table("campaign_schedules", schema=None) as batch_op:
        batch_op.create_index("ix_campaign_schedules_due", ["enabled", "next_run_at"])
        batch_op.create_index(
            batch_op.f("ix_campaign_schedules_workspace_id"), ["workspace_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_campaign_schedules_source_campaign_id"),
            ["source_campaign_id"],
            unique=False,
        )
    op.create_table(
        "campaign_schedule_runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("schedule_id", sa.String(length=40), nullable=False),
        sa.Column("occurrence", sa.String(length=10), nullable=False),
        sa.Column("campaign_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", liebian.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_schedule_runs_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["campaign_schedules.id"],
            name=op.f("fk_campaign_schedule_runs_schedule_id_campaign_schedules"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_campaign_schedule_runs_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_schedule_runs")),
        sa.UniqueConstraint(
            "schedule_id", "occurrence", name="uq_campaign_schedule_runs_occurrence"
        ),
    )
    with op.batch_alter_table("campaign_schedule_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_campaign_schedule_runs_workspace_id"), ["workspace_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("campaign_schedule_runs")
    op.drop_table("campaign_schedules")
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_column("poster")
