from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from liebian.kit.clock import utcnow
from liebian.kit.db import Base, UTCDateTime


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Member(Base):
    """A person's place in a workspace (their role there). The person — sign-in identity,
    password, second factor — is a ``team_accounts`` row (team/models.py): one account may be a
    member of several workspaces."""

    __tablename__ = "members"
    __table_args__ = (UniqueConstraint("workspace_id", "account_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    # Masked (a***@example.com): the address itself is encrypted on the account.
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(16))
    # Unused since accounts (team/): the password lives on the account.
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    account_id: Mapped[str | None] = mapped_column(
        ForeignKey("team_accounts.id", ondelete="CASCADE"), nullable=True, index=True
    )
    # A custom role (team_roles) instead of the built-in ``role``'s permissions.
    custom_role_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Data scope (issue 15): a JSON list of community/group ids this member is limited to
    # ("a community's staff see their own groups"); NULL: the whole workspace.
    data_scope: Mapped[str | None] = mapped_column(Text, nullable=True)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters, shown in lists so an operator can tell keys apart.
    key_hint: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The member the key acts for: it never outranks them, and dies with their membership.
    member_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # May do the operations that need a second verification (a program has no TOTP). Only
    # the installation's first owner key and keys made by a stepped-up member carry it.
    sensitive: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (Index("ix_api_keys_member_id", "member_id"),)
