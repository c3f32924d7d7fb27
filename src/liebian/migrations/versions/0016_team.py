"""team: accounts, memberships, custom roles, invitations, console sessions, recovery codes,
security policy, audit log; API keys owned by a member

Revision ID: 0016_team
Revises: 0001_foundation
Create Date: 2026-12-02 22:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import liebian.kit.db

revision: str = "0016_team"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DT = liebian.kit.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "team_accounts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("email_hash", sa.String(length=64), nullable=True),
        sa.Column("phone_hash", sa.String(length=64), nullable=True),
        sa.Column("email_enc", sa.String(length=600), nullable=True),
        sa.Column("phone_enc", sa.String(length=200), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("totp_secret_enc", sa.String(length=200), nullable=True),
        sa.Column("totp_enabled_at", DT, nullable=True),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
        sa.Column("failed_signins", sa.Integer(), nullable=False),
        sa.Column("locked_until", DT, nullable=True),
        sa.Column("created_at", DT, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_team_accounts")),
        sa.UniqueConstraint("email_hash", name=op.f("uq_team_accounts_email_hash")),
        sa.UniqueConstraint("phone_hash", name=op.f("uq_team_accounts_phone_hash")),
    )
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.add_column(sa.Column("account_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("custom_role_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("removed_at", DT, nullable=True))
        batch_op.create_index(batch_op.f("ix_members_account_id"), ["account_id"], unique=False)
        batch_op.create_unique_constraint(
            batch_op.f("uq_members_workspace_id_account_id"), ["workspace_id", "account_id"]
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_members_account_id_team_accounts"),
            "team_accounts",
            ["account_id"],
            ["id"],
            ondelete="CASCADE",
        )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("member_id", sa.String(length=40), nullable=True))
        batch_op.add_column(
            sa.Column("sensitive", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.create_index("ix_api_keys_member_id", ["member_id"], unique=False)
    op.create_table(
        "team_roles",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("permissions", sa.Text(), nullable=False),
        sa.Column("created_at", DT, nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_team_roles_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_team_roles")),
    )
    op.create_index(
        "uq_team_roles_workspace_name", "team_roles", ["workspace_id", "name"], unique=True
    )
    op.create_table(
        "team_invitations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("custom_role_id", sa.String(length=40), nullable=True),
        sa.Column("email_masked", sa.String(length=320), nullable=False),
        sa.Column("invited_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", DT, nullable=False),
        sa.Column("expires_at", DT, nullable=False),
        sa.Column("used_at", DT, nullable=True),
        sa.Column("member_id", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_team_invitations_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_team_invitations")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_team_invitations_token_hash")),
    )
    op.create_index(op.f("ix_team_invitations_workspace_id"), "team_invitations", ["workspace_id"])
    op.create_table(
        "team_sessions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("member_id", sa.String(length=40), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", DT, nullable=False),
        sa.Column("expires_at", DT, nullable=False),
        sa.Column("pending_totp", sa.Boolean(), nullable=False),
        sa.Column("verified_at", DT, nullable=True),
        sa.Column("revoked_at", DT, nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("user_agent", sa.String(length=300), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["team_accounts.id"],
            name=op.f("fk_team_sessions_account_id_team_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_team_sessions_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_team_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_team_sessions_token_hash")),
    )
    op.create_index(op.f("ix_team_sessions_account_id"), "team_sessions", ["account_id"])
    op.create_table(
        "team_recovery_codes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("used_at", DT, nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["team_accounts.id"],
            name=op.f("fk_team_recovery_codes_account_id_team_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_team_recovery_codes")),
    )
    op.create_index(
        "uq_team_recovery_codes_account_hash",
        "team_recovery_codes",
        ["account_id", "code_hash"],
        unique=True,
    )
    op.create_table(
        "team_policies",
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("require_totp", sa.Boolean(), nullable=False),
        sa.Column("audit_retention_days", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_team_policies_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", name=op.f("pk_team_policies")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("at", DT, nullable=False),
        sa.Column("actor_type", sa.String(length=16), nullable=False),
        sa.Column("member_id", sa.String(length=40), nullable=True),
        sa.Column("key_id", sa.String(length=40), nullable=True),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("object_type", sa.String(length=50), nullable=False),
        sa.Column("object_id", sa.String(length=100), nullable=True),
        sa.Column("changes", sa.Text(), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("user_agent", sa.String(length=300), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_workspace_at", "audit_log", ["workspace_id", "id"])
    op.create_index("ix_audit_log_workspace_member", "audit_log", ["workspace_id", "member_id"])
    op.create_index("ix_audit_log_workspace_object", "audit_log", ["workspace_id", "object_id"])
    # Append-only from the application's side: an UPDATE is refused by the database itself.
    # (DELETE stays possible for the retention purge.)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
    else:
        op.execute(
            "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    op.drop_table("audit_log")
    op.drop_table("team_policies")
    op.drop_index("uq_team_recovery_codes_account_hash", table_name="team_recovery_codes")
    op.drop_table("team_recovery_codes")
    op.drop_index(op.f("ix_team_sessions_account_id"), table_name="team_sessions")
    op.drop_table("team_sessions")
    op.drop_index(op.f("ix_team_invitations_workspace_id"), table_name="team_invitations")
    op.drop_table("team_invitations")
    op.drop_index("uq_team_roles_workspace_name", table_name="team_roles")
    op.drop_table("team_roles")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_api_keys_member_id")
        batch_op.drop_column("sensitive")
        batch_op.drop_column("member_id")
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_members_account_id_team_accounts"), type_="foreignkey"
        )
        batch_op.drop_constraint(batch_op.f("uq_members_workspace_id_account_id"), type_="unique")
        batch_op.drop_index(batch_op.f("ix_members_account_id"))
        batch_op.drop_column("removed_at")
        batch_op.drop_column("custom_role_id")
        batch_op.drop_column("account_id")
    op.drop_table("team_accounts")
