"""Campaigns and everything that happens inside one: participants, referrals, group-buy
groups, assist/bargain activities, and the conversions that reach campaigns from events.

Invariants are held by the schema where it can hold them (unique member per group, unique
helper per assist, unique referee per campaign, one conversion per event id) so that a race
the service did not foresee still cannot write a second row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from liebian.kit.clock import utcnow
from liebian.kit.db import Base, UTCDateTime

_WS = "workspaces.id"


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (Index("ix_campaigns_workspace_type", "workspace_id", "type"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="active")  # draft|active|paused|ended
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    template: Mapped[str | None] = mapped_column(String(64), nullable=True)
    share_text: Mapped[str] = mapped_column(String(500), default="")
    # Bumped by every change of ``config``; each version's config is kept in
    # ``campaign_versions`` so a participant keeps the terms they joined under.
    config_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # Consumed stock (reward grants / group seats) and budget (分); bumped by conditional
    # UPDATEs so two requests can never both take the last unit.
    stock_used: Mapped[int] = mapped_column(Integer, default=0)
    budget_used: Mapped[int] = mapped_column(BigInteger, default=0)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The poster designer's design (campaigns/design.py: text, colours, background asset);
    # None = the defaults (a 海报裂变 campaign's own config colours, else the house style).
    poster: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class Participant(Base):
    """A contact's membership in one campaign (not a second copy of the person)."""

    __tablename__ = "participants"
    __table_args__ = (
        UniqueConstraint("campaign_id", "contact_id", name="uq_participants_campaign_contact"),
        Index("ix_participants_campaign_visitor", "campaign_id", "visitor_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"), index=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    contact_id: Mapped[str] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    invite_code: Mapped[str] = mapped_column(String(16), unique=True)
    # Current binding (distribution: who earns commission on this person's purchases).
    referrer_participant_id: Mapped[str | None] = mapped_column(
        String(40), nullable=True, index=True
    )
    bound_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    visitor_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    device_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    ip_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(500), nullable=True)
    # The campaign config version in force when they joined: their reward terms.
    config_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # The share channel of the entry link they came through (dashboard breakdown).
    channel: Mapped[str | None] = mapped_column(String(64), nullable=True)
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CampaignVersion(Base):
    """One config of a campaign as it stood from a change on: version 1 at creation."""

    __tablename__ = "campaign_versions"
    __table_args__ = (
        UniqueConstraint("campaign_id", "version", name="uq_campaign_versions_campaign_version"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"), index=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CampaignChange(Base):
    """The change log of a campaign: every lifecycle action and edit, who did it, before and
    after (what the operator changed, not the whole row)."""

    __tablename__ = "campaign_changes"
    __table_args__ = (Index("ix_campaign_changes_campaign_created", "campaign_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"), index=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    # create | launch | pause | resume | end | extend | add_stock | edit | duplicate
    action: Mapped[str] = mapped_column(String(32))
    config_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    before: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    after: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    actor: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Referral(Base):
    """Who brought whom into a campaign, its risk decision and whether it has qualified."""

    __tablename__ = "referrals"
    __table_args__ = (
        # A person is referred into a campaign once; re-binding (distribution) adds a new row
        # only after the old one is superseded, which the service marks explicitly.
        UniqueConstraint(
            "campaign_id", "referee_participant_id", "seq", name="uq_referrals_referee_seq"
        ),
        Index("ix_referrals_campaign_referrer", "campaign_id", "referrer_participant_id"),
        Index("ix_referrals_workspace_referee_contact", "workspace_id", "referee_contact_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"), index=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    referrer_participant_id: Mapped[str] = mapped_column(
        ForeignKey("participants.id", ondelete="CASCADE")
    )
    referee_participant_id: Mapped[str] = mapped_column(
        ForeignKey("participants.id", ondelete="CASCADE")
    )
    referrer_contact_id: Mapped[str] = mapped_column(String(40))
    referee_contact_id: Mapped[str] = mapped_column(String(40))
    seq: Mapped[int] = mapped_column(Integer, default=0)
    # approved | held | blocked | rejected | superseded
    status: Mapped[str] = mapped_column(String(16))
    risk_score: Mapped[int] = mapped_column(Integer, default=0)
    qualified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The invitee left (deleted the friend / quit the group): the invite stops counting.
    invalidated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Group(Base):
    """A group-buy team (拼团). ``member_count`` only moves by a conditional UPDATE."""

    __tablename__ = "campaign_groups"
    __table_args__ = (Index("ix_campaign_groups_status_expires", "status", "expires_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"), index=True)
    campaign_id: Mapped[str] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    leader_contact_id: Mapped[str] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    size: Mapped[int] = mapped_column(Integer)
    price: Mapped[int] = mapped_column(Integer)
    member_count: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | success | failed
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class GroupMember(Base):
    __tablename__ = "campaign_group_members"
    __table_args__ = (
        UniqueConstraint("group_id", "contact_id", name="uq_group_members_group_contact"),
        UniqueConstraint("group_id", "seat", name="uq_group_members_group_seat"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    group_id: Mapped[str] = mapped_column(ForeignKey("campaign_groups.id", ondelete="CASCADE"))
    workspace_id: Mapped[str] = mapped_column(String(40), index=True)
    contact_id: Mapped[str] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    # 0..size-1: a second guard, since two rows can never share a seat.
    seat: Mapped[int] = mapped_column(Integer)
    is_leader: Mapped[bool] = mapped_column(Boolean, default=False)
    price: Mapped[int] = mapped_column(Integer)
    order_status: Mapped[str] = mapped_column(
        String(16), default="pending"
    )  # pending|confirmed|voided
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Assist(Base):
    """An assist (助力) or bargain (砍价) activity owned by one contact."""

    __tablename__ = "assists"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"), index=True)
    campaign_id: Mapped[str] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    owner_contact_id: Mapped[str] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    owner_visitor_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    owner_ip_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    owner_user_agent: Mapped[str | None] = mapped_column(String(500), nullable=True)
    mode: Mapped[str] = mapped_column(String(16))  # unlock | bargain
    helpers_count: Mapped[int] = mapped_column(Integer, default=0)
    helpers_required: Mapped[int] = mapped_column(Integer)
    price_now: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | unlocked | expired
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    unlocked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AssistHelp(Base):
    __tablename__ = "assist_helps"
    __table_args__ = (
        UniqueConstraint("assist_id", "helper_contact_id", name="uq_assist_helps_assist_helper"),
        # The n-th help is taken once: the compare-and-swap on the helper index.
        UniqueConstraint("assist_id", "helper_index", name="uq_assist_helps_assist_index"),
        Index("ix_assist_helps_helper_created", "helper_contact_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    assist_id: Mapped[str] = mapped_column(ForeignKey("assists.id", ondelete="CASCADE"))
    workspace_id: Mapped[str] = mapped_column(String(40), index=True)
    helper_contact_id: Mapped[str] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    helper_index: Mapped[int] = mapped_column(Integer)
    cut: Mapped[int] = mapped_column(Integer, default=0)
    price_after: Mapped[int | None] = mapped_column(Integer, nullable=True)
    visitor_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Conversion(Base):
    """A conversion event applied to campaigns; the unique event id makes replays no-ops."""

    __tablename__ = "campaign_conversions"
    __table_args__ = (
        UniqueConstraint("workspace_id", "event_id", name="uq_campaign_conversions_event"),
        Index("ix_campaign_conversions_order", "workspace_id", "order_id"),
        Index("ix_campaign_conversions_contact", "contact_id", "event"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(128))
    contact_id: Mapped[str] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(32))
    order_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    revenue: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CampaignEvent(Base):
    """Business facts other parts react to (webhooks, journeys): ``order_voided``,
    ``group.succeeded``… written in the same transaction as the change they describe."""

    __tablename__ = "campaign_events"
    __table_args__ = (Index("ix_campaign_events_workspace_kind", "workspace_id", "kind"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    campaign_id: Mapped[str] = mapped_column(String(40), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(40))
    contact_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CampaignSchedule(Base):
    """A weekly rhythm (周三秒杀, 周五拼团): every ``weekday`` at ``start_time`` in ``timezone``
    the source campaign is copied and the copy goes live for ``duration_minutes``
    (campaigns/schedules.py; decision 0030)."""

    __tablename__ = "campaign_schedules"
    __table_args__ = (Index("ix_campaign_schedules_due", "enabled", "next_run_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"), index=True)
    source_campaign_id: Mapped[str] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    weekday: Mapped[int] = mapped_column(Integer)  # 0 = Monday … 6 = Sunday
    start_time: Mapped[str] = mapped_column(String(5))  # HH:MM, local
    duration_minutes: Mapped[int] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(String(64))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # The next occurrence's start (UTC); the job runs every schedule with next_run_at <= now.
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CampaignScheduleRun(Base):
    """One occurrence of a schedule: unique on (schedule, local date), so two schedulers (or
    a retry after a crash) can never start the same week's campaign twice."""

    __tablename__ = "campaign_schedule_runs"
    __table_args__ = (
        UniqueConstraint("schedule_id", "occurrence", name="uq_campaign_schedule_runs_occurrence"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"), index=True)
    schedule_id: Mapped[str] = mapped_column(
        ForeignKey("campaign_schedules.id", ondelete="CASCADE")
    )
    occurrence: Mapped[str] = mapped_column(String(10))  # local date YYYY-MM-DD
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
