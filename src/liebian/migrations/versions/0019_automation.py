"""automation: journeys, versions, runs, step executions

Revision ID: 0019_automation
Revises: 0008_segments
Create Date: 2026-12-02 23:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import liebian.kit.db

revision: str = "0019_automation"
down_revision: str | Sequence[str] | None = "0008_segments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_T = liebian.kit.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "journeys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("draft", sa.JSON(), nullable=False),
        sa.Column("live_version", sa.Integer(), nullable=True),
        sa.Column("template", sa.String(length=40), nullable=True),
        sa.Column("created_at", _T, nullable=False),
        sa.Column("updated_at", _T, nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workspace_id", "name", name="uq_journeys_ws_name"),
    )
    op.create_index(op.f("ix_journeys_workspace_id"), "journeys", ["workspace_id"])
    op.create_table(
        "journey_versions",
        sa.Column("journey_id", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("published_at", _T, nullable=False),
        sa.ForeignKeyConstraint(["journey_id"], ["journeys.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("journey_id", "version"),
    )
    op.create_table(
        "journey_runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("journey_id", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.String(length=40), nullable=False),
        sa.Column("entry_key", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("current_step", sa.String(length=40), nullable=True),
        sa.Column("trigger", sa.String(length=200), nullable=False),
        sa.Column("exit_reason", sa.String(length=200), nullable=True),
        sa.Column("entered_at", _T, nullable=False),
        sa.Column("finished_at", _T, nullable=True),
        sa.Column("converted_at", _T, nullable=True),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["journey_id"], ["journeys.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("journey_id", "entry_key", name="uq_journey_runs_entry"),
    )
    op.create_index(op.f("ix_journey_runs_contact_id"), "journey_runs", ["contact_id"])
    op.create_index("ix_journey_runs_contact", "journey_runs", ["workspace_id", "contact_id"])
    op.create_index(
        "uq_journey_runs_active",
        "journey_runs",
        ["journey_id", "contact_id"],
        unique=True,
        sqlite_where=sa.text("status = 'active'"),
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "journey_step_executions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("journey_id", sa.String(length=40), nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("step_id", sa.String(length=40), nullable=False),
        sa.Column("step_type", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("due_at", _T, nullable=False),
        sa.Column("lease_until", _T, nullable=True),
        sa.Column("claim_token", sa.String(length=40), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("waiting_event", sa.String(length=100), nullable=True),
        sa.Column("event_matched", sa.Boolean(), nullable=False),
        sa.Column("result", sa.String(length=300), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("next_step_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", _T, nullable=False),
        sa.Column("started_at", _T, nullable=True),
        sa.Column("finished_at", _T, nullable=True),
        sa.ForeignKeyConstraint(["journey_id"], ["journeys.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_id"], ["journey_runs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "step_id", name="uq_journey_steps_run_step"),
    )
    op.create_index("ix_journey_steps_due", "journey_step_executions", ["status", "due_at"])
    op.create_index(
        "ix_journey_steps_waiting", "journey_step_executions", ["waiting_event", "status"]
    )


def downgrade() -> None:
    op.drop_table("journey_step_executions")
    op.drop_index("uq_journey_runs_active", table_name="journey_runs")
    op.drop_table("journey_runs")
    op.drop_table("journey_versions")
    op.drop_index(op.f("ix_journeys_workspace_id"), table_name="journeys")
    op.drop_table("journeys")
