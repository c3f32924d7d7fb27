"""Segments (人群): a named condition (dynamic) or a frozen list (static), and its members.

Membership rows keep their source apart: ``computed`` rows are what the condition selects
(or the snapshot of a static segment), ``manual_add`` / ``manual_remove`` are an operator's
exceptions and survive every rebuild. A contact is a member when it has a computed or
manual_add row and no manual_remove row. Every entry and exit is recorded with its cause.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from liebian.kit.clock import utcnow
from liebian.kit.db import Base, UTCDateTime

_WS = "workspaces.id"
MEMBER_SOURCES = ("computed", "manual_add", "manual_remove")
KINDS = ("dynamic", "static")


class Segment(Base):
    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("workspace_id", "name", name="uq_segments_ws_name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(500), default="")
    kind: Mapped[str] = mapped_column(String(8))  # dynamic | static
    condition: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The dynamic segment a static one was frozen from, if any.
    frozen_from_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # Bumped by every full build; incremental changes carry the version they were made under.
    version: Mapped[int] = mapped_column(Integer, default=0)
    size: Mapped[int] = mapped_column(Integer, default=0)
    built_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    build_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Set when the last build failed (a stale segment says so instead of looking current).
    build_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SegmentMember(Base):
    __tablename__ = "segment_members"
    __table_args__ = (
        PrimaryKeyConstraint("segment_id", "contact_id", "source", name="pk_segment_members"),
        Index("ix_segment_members_ws_contact", "workspace_id", "contact_id"),
    )

    segment_id: Mapped[str] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"))
    contact_id: Mapped[str] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    workspace_id: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(16))  # computed | manual_add | manual_remove
    since: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SegmentMembershipChange(Base):
    __tablename__ = "segment_membership_changes"
    __table_args__ = (
        Index("ix_segment_changes_segment_at", "segment_id", "at"),
        Index("ix_segment_changes_ws_contact_at", "workspace_id", "contact_id", "at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    segment_id: Mapped[str] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"))
    workspace_id: Mapped[str] = mapped_column(String(40))
    contact_id: Mapped[str] = mapped_column(String(40))
    change: Mapped[str] = mapped_column(String(8))  # entered | exited
    # What made it happen: "event:purchase", "tags_changed", "attributes_changed",
    # "rebuild", "manual_add", "csv", "segment:seg_…", …
    cause: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer, default=0)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SegmentSize(Base):
    __tablename__ = "segment_sizes"
    __table_args__ = (PrimaryKeyConstraint("segment_id", "day", name="pk_segment_sizes"),)

    segment_id: Mapped[str] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"))
    workspace_id: Mapped[str] = mapped_column(String(40))
    day: Mapped[date] = mapped_column(Date)
    size: Mapped[int] = mapped_column(Integer)
