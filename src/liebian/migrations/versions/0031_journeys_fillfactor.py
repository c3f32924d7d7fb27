"""automation: room on each page of the journey tables for in-place (HOT) updates (PostgreSQL)

A claim rewrites a step row's lease and token, a mark moves its run's current step: columns
no index holds. With full pages PostgreSQL writes each such new row version elsewhere and adds
an entry to every index of the table (four on the steps, five on the runs); with room on the
page it updates in place and touches no index (decision 0051). SQLite: nothing to do.

Revision ID: 0031_journeys_fillfactor
Revises: 0024_journey_trigger_outbox
Create Date: 2026-12-03 15:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0031_journeys_fillfactor"
down_revision: str | Sequence[str] | None = "0024_journey_trigger_outbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("journey_step_executions", "journey_runs")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        # New pages only: rows already written stay where they are.
        op.execute(f"ALTER TABLE {table} SET (fillfactor = 60)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
