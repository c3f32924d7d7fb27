"""Team tables: accounts (people), custom roles, invitations, console sessions, recovery codes,
workspace security policy and the audit log. Memberships are ``members`` (workspaces/models.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from liebian.kit.clock import utcnow
from liebian.kit.db import Base, UTCDateTime


class Account(Base):
    """A person who signs in: email and/or phone (encrypted, found by keyed hash), password
    (argon2id), TOTP secret (encrypted) and the sign-in lockout counters."""

    __tablename__ = "team_accounts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    email_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    phone_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    email_enc: Mapped[str | None] = mapped_column(String(600), nullable=True)
    phone_enc: Mapped[str | None] = mapped_column(String(200), nullable=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    totp_secret_enc: Mapped[str | None] = mapped_column(String(200), nullable=True)
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The last accepted TOTP time step: a code is accepted once (replay inside its window: 4xx).
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    failed_signins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CustomRole(Base):
    __tablename__ = "team_roles"
    __table_args__ = (Index("uq_team_roles_workspace_name", "workspace_id", "name", unique=True),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    # JSON list of permission names (team/permissions.py).
    permissions: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Invitation(Base):
    """A one-time link: the token is shown once, stored as a hash, and used at most once."""

    __tablename__ = "team_invitations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    custom_role_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    email_masked: Mapped[str] = mapped_column(String(320), default="")
    invited_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    member_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # The data scope the new member gets (JSON list of community/group ids; NULL: all).
    data_scope: Mapped[str | None] = mapped_column(Text, nullable=True)


class ConsoleSession(Base):
    """A signed-in browser: the cookie's token is stored as a hash."""

    __tablename__ = "team_sessions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("team_accounts.id", ondelete="CASCADE"), index=True
    )
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    member_id: Mapped[str] = mapped_column(String(40))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Signed in with password only while the workspace requires TOTP: only /auth/totp works.
    pending_totp: Mapped[bool] = mapped_column(Boolean, default=False)
    # Last second verification (TOTP or recovery code): sensitive operations need it recent.
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(300), default="")


class RecoveryCode(Base):
    __tablename__ = "team_recovery_codes"
    __table_args__ = (
        Index("uq_team_recovery_codes_account_hash", "account_id", "code_hash", unique=True),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("team_accounts.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SecurityPolicy(Base):
    __tablename__ = "team_policies"

    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    require_totp: Mapped[bool] = mapped_column(Boolean, default=False)
    audit_retention_days: Mapped[int] = mapped_column(Integer, default=365)


class AuditEntry(Base):
    """One change (or refused attempt, sign-in, export). Append-only: a trigger refuses
    UPDATE on both backends; rows leave only by the retention purge."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_workspace_at", "workspace_id", "id"),
        Index("ix_audit_log_workspace_member", "workspace_id", "member_id"),
        Index("ix_audit_log_workspace_object", "workspace_id", "object_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # member / key / cli / anonymous (a failed sign-in names no one yet)
    actor_type: Mapped[str] = mapped_column(String(16))
    member_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    key_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    action: Mapped[str] = mapped_column(String(100))
    object_type: Mapped[str] = mapped_column(String(50), default="")
    object_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # JSON: {"<table>:<id>": {"op": "create|update|delete", "fields": {f: [before, after]}}}
    changes: Mapped[str] = mapped_column(Text, default="{}")
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    # ok / denied / failed
    outcome: Mapped[str] = mapped_column(String(16))
    status: Mapped[int] = mapped_column(Integer, default=200)
