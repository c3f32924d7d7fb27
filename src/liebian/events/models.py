"""OLTP tables of the event pipeline (the events themselves live in the event store)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from liebian.kit.db import Base, UTCDateTime


class AppliedEvent(Base):
    """An event whose side effects (the registered consumers: campaigns, rewards…) were
    applied. Written in the same transaction as those effects: its primary key is what makes
    a replay of the hook spool, or a client resending the same ``event_id``, change nothing.
    ``received_at`` → ``applied_at`` is the lag a consumer's effect trailed the 202."""

    __tablename__ = "event_hook_applied"
    __table_args__ = (Index("ix_event_hook_applied_applied_at", "applied_at"),)

    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    event: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime)
