"""Tables the live codes add beside ``links.models`` (migration ``0003_live_codes``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from liebian.kit.clock import utcnow
from liebian.kit.db import Base, UTCDateTime


class LiveCodeAlert(Base):
    """A webhook-ready record: "fewer than ``threshold`` usable targets remain".

    Written in the same transaction as the scan that crossed the threshold, so an alert exists
    exactly when the crossing was committed. ``delivered_at`` is for the automation/webhook
    dispatcher, which marks what it has sent.
    """

    __tablename__ = "live_code_alerts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    live_code_id: Mapped[str] = mapped_column(
        ForeignKey("live_codes.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(32), default="low_targets")
    usable: Mapped[int] = mapped_column(Integer)
    threshold: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class LiveCodeSeat(Base):
    """The place a visitor took on a live code: a re-scan shows the same target and takes no
    second place. ``holder`` is the visitor id (``lb_vid``) or, for a scan without one, a
    keyed hash of IP and user agent, so cookie-less re-scans from one phone keep their place
    too (migration ``0015_ops``)."""

    __tablename__ = "live_code_seats"

    live_code_id: Mapped[str] = mapped_column(
        ForeignKey("live_codes.id", ondelete="CASCADE"), primary_key=True
    )
    holder: Mapped[str] = mapped_column(String(64), primary_key=True)
    target_id: Mapped[str] = mapped_column(
        ForeignKey("live_code_targets.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
