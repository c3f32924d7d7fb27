"""communities: first-day tasks (首日任务) per community

Revision ID: 0027_community_first_day_tasks
Revises: 0026_community_calendar
Create Date: 2026-12-03 02:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027_community_first_day_tasks"
down_revision: str | Sequence[str] | None = "0026_community_calendar"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("communities") as batch:
        batch.add_column(
            sa.Column("first_day_tasks", sa.JSON(), nullable=False, server_default="[]")
        )


def downgrade() -> None:
    with op.batch_alter_table("communities") as batch:
        batch.drop_column("first_day_tasks")
