"""Journeys (旅程): a versioned definition, a run per person, a durable row per step.

Exactly-once comes from the schema: ``journey_step_executions`` is unique on (run, step), a
step is claimed by a lease and a claim token before its effect, and marked done (inserting the
next step's row in the same transaction) only by the holder of the token.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from liebian.kit.clock import utcnow
from liebian.kit.db import Base, UTCDateTime

_WS = "workspaces.id"
STATUSES = ("draft", "live", "paused", "archived")
RUN_STATUSES = ("active", "completed", "exited", "failed")
STEP_STATUSES = ("pending", "done", "failed", "skipped")


class Journey(Base):
    __tablename__ = "journeys"
    __table_args__ = (UniqueConstraint("workspace_id", "name", name="uq_journeys_ws_name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(10), default="draft")
    # The definition being edited: {trigger, entry, exit, goal_event, steps}.
    draft: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The version new runs start on (None until the first publish).
    live_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    template: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JourneyVersion(Base):
    """A published definition, never changed: a run finishes on the version it started on."""

    __tablename__ = "journey_versions"
    __table_args__ = (PrimaryKeyConstraint("journey_id", "version"),)

    journey_id: Mapped[str] = mapped_column(ForeignKey("journeys.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JourneyRun(Base):
    """One person's pass through one version of a journey."""

    __tablename__ = "journey_runs"
    __table_args__ = (
        # The entry rule's key: the contact (once ever) or contact + trigger occurrence.
        UniqueConstraint("journey_id", "entry_key", name="uq_journey_runs_entry"),
        # Never two active runs of one journey for one person (every time / once per N days).
        Index(
            "uq_journey_runs_active",
            "journey_id",
            "contact_id",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
        Index("ix_journey_runs_contact", "workspace_id", "contact_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    journey_id: Mapped[str] = mapped_column(ForeignKey("journeys.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    contact_id: Mapped[str] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    entry_key: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10), default="active")
    current_step: Mapped[str | None] = mapped_column(String(40), nullable=True)
    trigger: Mapped[str] = mapped_column(String(200), default="")
    exit_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    converted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class JourneyStepExecution(Base):
    """One (run, step): the durable unit of work. ``pending`` rows whose ``due_at`` has passed
    and whose lease is free are claimed by a worker (``executor.py``)."""

    __tablename__ = "journey_step_executions"
    __table_args__ = (
        UniqueConstraint("run_id", "step_id", name="uq_journey_steps_run_step"),
        Index("ix_journey_steps_due", "status", "due_at"),
        # Only the rows of wait_event steps (decision 0056): every other row — nearly all —
        # is inserted and marked without an entry here (a mark changes ``status``, so it is
        # never an in-place update and adds an entry to each index that holds the row).
        Index(
            "ix_journey_steps_waiting",
            "waiting_event",
            "status",
            sqlite_where=text("waiting_event IS NOT NULL"),
            postgresql_where=text("waiting_event IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # The run's workspace and journey, kept for reads; no foreign keys of their own: the run
    # (``run_id``, cascading) already ties a step to both, and each key cost every inserted
    # step row a lock of the same parent row (decision 0056).
    workspace_id: Mapped[str] = mapped_column(String(40))
    journey_id: Mapped[str] = mapped_column(String(40))
    run_id: Mapped[str] = mapped_column(ForeignKey("journey_runs.id", ondelete="CASCADE"))
    step_id: Mapped[str] = mapped_column(String(40))
    step_type: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(10), default="pending")
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Claimed: the holder's token and until when; an expired lease is taken over.
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    claim_token: Mapped[str | None] = mapped_column(String(40), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # wait_event steps: the event awaited, and whether it came before the timeout.
    waiting_event: Mapped[str | None] = mapped_column(String(100), nullable=True)
    event_matched: Mapped[bool] = mapped_column(default=False)
    # What happened: sent / suppressed:opted_out / branch:then / timeout / error text…
    result: Mapped[str | None] = mapped_column(String(300), nullable=True)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    next_step_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class JourneyTriggerOutbox(Base):
    """A bus change that may start people on journeys (tags, segments, communities), written
    in the publisher's own transaction (``triggers.TriggerOutbox``), so a change committed
    just before a crash is still turned into enrolments; deleted in the transaction that
    applies it (``triggers.drain_outbox``)."""

    __tablename__ = "journey_trigger_outbox"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # ULID: oldest first
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    topic: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
