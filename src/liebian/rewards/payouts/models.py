"""Payout batches, their lines (one per payee, campaign and currency) and the entries each
line pays.

An entry is held by at most one live line: ``payout_items`` is unique on (entry_id, holding),
where ``holding`` is 1 while the line is pending or paid and NULL once it failed (NULLs never
collide), so a failed line gives its entries back to the next batch and nothing else can.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
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

BATCH_STATUSES = ("open", "closed")
LINE_STATUSES = ("pending", "paid", "failed")


class PayoutBatch(Base):
    __tablename__ = "payout_batches"
    __table_args__ = (
        UniqueConstraint("workspace_id", "idempotency_key", name="uq_payout_batches_idempotency"),
        Index("ix_payout_batches_workspace_status", "workspace_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="open")
    # What the batch was asked for: only this campaign's cash (None: every campaign and
    # manual cash), only this currency (None: all), at least this much per line (分).
    campaign_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    min_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    note: Mapped[str] = mapped_column(String(200), default="")
    line_count: Mapped[int] = mapped_column(Integer, default=0)
    # Per currency: {"CNY": 12345}.
    totals: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    exported_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    export_count: Mapped[int] = mapped_column(Integer, default=0)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class PayoutLine(Base):
    __tablename__ = "payout_lines"
    __table_args__ = (
        Index("ix_payout_lines_batch", "batch_id", "id"),
        Index("ix_payout_lines_contact", "workspace_id", "contact_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    batch_id: Mapped[str] = mapped_column(ForeignKey("payout_batches.id", ondelete="CASCADE"))
    contact_id: Mapped[str] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    campaign_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(BigInteger, default=0)
    entry_count: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    # The Idempotency-Key of the request that decided this line, and what finance reported.
    outcome_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reference: Mapped[str | None] = mapped_column(String(128), nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PayoutItem(Base):
    __tablename__ = "payout_items"
    __table_args__ = (
        PrimaryKeyConstraint("line_id", "entry_id", name="pk_payout_items"),
        # The pay-once key: one live (pending or paid) line per ledger entry.
        UniqueConstraint("entry_id", "holding", name="uq_payout_items_holding"),
        Index("ix_payout_items_batch", "batch_id"),
    )

    line_id: Mapped[str] = mapped_column(ForeignKey("payout_lines.id", ondelete="CASCADE"))
    entry_id: Mapped[str] = mapped_column(ForeignKey("reward_entries.id", ondelete="CASCADE"))
    workspace_id: Mapped[str] = mapped_column(String(40))
    batch_id: Mapped[str] = mapped_column(String(40))
    amount: Mapped[int] = mapped_column(BigInteger)
    holding: Mapped[int | None] = mapped_column(Integer, nullable=True, default=1)
