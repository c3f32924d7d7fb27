"""Channels, the send record (one row per idempotency key), opt-outs, guard settings, staff tasks.

``channel_sends`` is the exactly-once record: unique (workspace_id, idempotency_key), inserted
and committed before an adapter is called and marked after it answered (service.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from liebian.kit.clock import utcnow
from liebian.kit.db import Base, UTCDateTime
from liebian.workspaces import models as _workspaces  # noqa: F401  (the table the FKs name)

_WS = "workspaces.id"


class Channel(Base):
    """A configured channel of a workspace: its kind, plain settings and encrypted secret."""

    __tablename__ = "channels"
    __table_args__ = (Index("ix_channels_workspace_id", "workspace_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    # Non-secret settings (URL, host, sender…), validated by the kind's adapter.
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    # SMTP password, robot key, SMS/webhook secret: AES-GCM (runtime.cipher), never returned.
    secret_enc: Mapped[str | None] = mapped_column(String(800), nullable=True)
    secret_hint: Mapped[str | None] = mapped_column(String(16), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Marketing messages per contact on this channel: at most cap_count in cap_hours (None: no cap).
    cap_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cap_hours: Mapped[int] = mapped_column(Integer, default=24)
    # Messages a contact may receive on this channel per calendar month (WeCom's receive cap).
    monthly_cap: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChannelSend(Base):
    """One message, keyed by the caller's idempotency key: sending → sent | failed, or
    deferred / suppressed / pending_staff without an adapter call."""

    __tablename__ = "channel_sends"
    __table_args__ = (
        UniqueConstraint("workspace_id", "idempotency_key", name="uq_channel_sends_key"),
        # Caps count a contact's recent sends on a channel.
        Index("ix_channel_sends_contact", "workspace_id", "contact_id", "channel_id", "created_at"),
        # Recovery finds records left "sending" by a dead process.
        Index("ix_channel_sends_status_claim", "status", "claimed_until"),
        Index("ix_channel_sends_channel", "channel_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    contact_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(32))
    category: Mapped[str] = mapped_column(String(16))
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    retryable: Mapped[bool] = mapped_column(Boolean, default=False)
    provider_message_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # While "sending": the claim. A caller that finds it past is the recovery (lookup, resend).
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    deferred_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    task_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ChannelOptOut(Base):
    """A contact who does not want marketing messages on a channel ("*": on every channel)."""

    __tablename__ = "channel_opt_outs"

    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"), primary_key=True)
    contact_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    via: Mapped[str] = mapped_column(String(16))  # api | link
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChannelGuardSettings(Base):
    """A workspace's quiet hours (local time of its time zone); absent row: the defaults."""

    __tablename__ = "channel_guard_settings"

    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"), primary_key=True)
    quiet_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    quiet_start: Mapped[str] = mapped_column(String(5), default="21:00")
    quiet_end: Mapped[str] = mapped_column(String(5), default="09:00")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StaffTask(Base):
    """Work for a person: a message to send by hand (personal WeChat), a 1:1 call, a follow-up.

    ``dedupe_key`` (unique per workspace when set) makes creating a task from a journey step
    exactly once; marking done a task that carries a send confirms that send."""

    __tablename__ = "staff_tasks"
    __table_args__ = (
        UniqueConstraint("workspace_id", "dedupe_key", name="uq_staff_tasks_dedupe"),
        Index("ix_staff_tasks_inbox", "workspace_id", "status", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    contact_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    assignee: Mapped[str | None] = mapped_column(String(100), nullable=True)
    source: Mapped[str] = mapped_column(String(32), default="api")
    dedupe_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    send_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | done | cancelled
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    done_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    note: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
