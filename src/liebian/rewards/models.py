"""The rewards ledger: every coupon, point, gift and commission is one entry.

An entry moves pending → approved → issued, or → reversed from any of those. Amounts never
change after insert; a recalculation (partial refund) reverses the entry and writes a new one.
Balances are therefore always a sum over entries: there is no second number to drift.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from liebian.kit.clock import utcnow
from liebian.kit.db import Base, UTCDateTime


class RewardEntry(Base):
    __tablename__ = "reward_entries"
    __table_args__ = (
        # Retries, duplicate callbacks and concurrent requests collapse onto one row.
        UniqueConstraint("workspace_id", "idempotency_key", name="uq_reward_entries_idempotency"),
        Index("ix_reward_entries_contact", "workspace_id", "contact_id"),
        Index("ix_reward_entries_campaign", "campaign_id", "contact_id"),
        Index("ix_reward_entries_status_available", "status", "available_at"),
        Index("ix_reward_entries_referral", "referral_id"),
        Index("ix_reward_entries_order", "workspace_id", "order_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    contact_id: Mapped[str] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    campaign_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # coupon | points | gift | cash
    name: Mapped[str] = mapped_column(String(64), default="")
    # 分 for coupon/cash, points for points, units for gift. Negative only for clawbacks of
    # already-issued cash (a refund after payout).
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    # Why it was granted: tier | invitee | group_leader | assist | commission | manual | clawback
    reason: Mapped[str] = mapped_column(String(32), default="manual")
    coupon_code: Mapped[str | None] = mapped_column(String(24), nullable=True, unique=True)
    referral_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    order_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # Not settled before this moment (refund window / qualifying delay).
    available_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reversed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reversal_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
