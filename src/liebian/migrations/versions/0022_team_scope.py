"""team: data scope of members and invitations (a community's staff see their own groups)

Revision ID: 0022_team_scope
Revises: 0021_contacts_merged_index
Create Date: 2026-12-03 02:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022_team_scope"
down_revision: str | Sequence[str] | None = "0021_contacts_merged_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("members") as batch:
        batch.add_column(sa.Column("data_scope", sa.Text(), nullable=True))
    with op.batch_alter_table("team_invitations") as batch:
        batch.add_column(sa.Column("data_scope", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("team_invitations") as batch:
        batch.drop_column("data_scope")
    with op.batch_alter_table("members") as batch:
        batch.drop_column("data_scope")
