"""contacts: index on merged_into_id (a profile lists the contacts merged into it)

Revision ID: 0021_contacts_merged_index
Revises: 0007_people
Create Date: 2026-12-03 00:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0021_contacts_merged_index"
down_revision: str | Sequence[str] | None = "0007_people"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_contacts_merged_into", "contacts", ["merged_into_id"])


def downgrade() -> None:
    op.drop_index("ix_contacts_merged_into", table_name="contacts")
