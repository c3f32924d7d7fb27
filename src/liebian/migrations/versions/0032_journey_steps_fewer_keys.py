"""automation: less to maintain for each step row — two redundant foreign keys dropped, the
wait_event index partial

- Foreign keys (workspace, journey): every step row already belongs to its run (``run_id`` →
  ``journey_runs``, ON DELETE CASCADE), and the run to its journey and workspace (both ON
  DELETE CASCADE): deleting a workspace or a journey deletes its runs and, through them, their
  step rows. On PostgreSQL each inserted step row paid for the two keys a ``SELECT … FOR KEY
  SHARE`` of the same workspace row and the same journey row, taken by every concurrent mark
  transaction at once. The columns stay (the executor and the stats read them).
- ``ix_journey_steps_waiting`` (waiting_event, status) only for rows WHERE waiting_event IS
  NOT NULL: its readers all ask for one waiting event (``waiting_event = …``) or for every
  ``waiting_event IS NOT NULL``; the other rows — nearly all — had an entry (NULL) written at
  their insert and again at their mark (a mark changes ``status``: never an in-place update).

Decision 0056.

Revision ID: 0032_journey_steps_fewer_keys
Revises: 0031_journeys_fillfactor
Create Date: 2026-12-03 22:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0032_journey_steps_fewer_keys"
down_revision: str | Sequence[str] | None = "0031_journeys_fillfactor"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "journey_step_executions"
KEYS = (
    ("fk_journey_step_executions_workspace_id_workspaces", "workspaces", "workspace_id"),
    ("fk_journey_step_executions_journey_id_journeys", "journeys", "journey_id"),
)
WAITING = "ix_journey_steps_waiting"


def upgrade() -> None:
    op.drop_index(WAITING, table_name=TABLE)
    # PostgreSQL: ALTER TABLE … DROP CONSTRAINT; SQLite: the table is rebuilt without them.
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        for name, _, _ in KEYS:
            batch_op.drop_constraint(name, type_="foreignkey")
    op.create_index(
        WAITING,
        TABLE,
        ["waiting_event", "status"],
        sqlite_where=sa.text("waiting_event IS NOT NULL"),
        postgresql_where=sa.text("waiting_event IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(WAITING, table_name=TABLE)
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        for name, parent, column in KEYS:
            batch_op.create_foreign_key(name, parent, [column], ["id"], ondelete="CASCADE")
    op.create_index(WAITING, TABLE, ["waiting_event", "status"])
