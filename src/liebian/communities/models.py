"""Tables of communities (社群运营), migration ``0017_communities``.

A community (引流 / 福利 / 快闪) holds groups; each group has a capacity and a ``members``
counter that a scan raises only through a conditional UPDATE (``members < capacity``), so a
group never takes more places than it has, however many scans race. ``community_members`` is
one row per (community, holder): the holder is the contact id when the person is known, else
the visitor — a re-scan finds the row and is shown the same group without taking a second
place. Violations, alerts and owner tasks are the audit trail of 群规则.
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
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from liebian.kit.clock import utcnow
from liebian.kit.db import Base, UTCDateTime

_WS = "workspaces.id"
_COMMUNITY = "communities.id"
_GROUP = "community_groups.id"

KINDS = ("acquisition", "welfare", "flash")  # 引流 / 福利 / 快闪
THRESHOLDS = ("open", "invitation", "activity", "purchase", "screening")
PLATFORMS = ("wechat", "wecom")  # 个人微信群 / 企业微信客户群
GROUP_STATUSES = ("open", "full", "archived")
MEMBER_STATUSES = ("routed", "joined", "left", "removed")
SCENES = ("scan", "invite", "screening", "wecom", "api")
DEFAULT_CAPACITY = {"wechat": 200, "wecom": 500}


class Community(Base):
    __tablename__ = "communities"
    __table_args__ = (Index("ix_communities_workspace_id", "workspace_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(1000), default="")
    kind: Mapped[str] = mapped_column(String(16))
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    threshold: Mapped[str] = mapped_column(String(16), default="open")
    # {"campaign_id": ...} for activity; {"min_orders": 1} for purchase.
    threshold_config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    tiers: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    screening: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    routing: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    rules: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    welcome_template: Mapped[str] = mapped_column(Text, default="")
    announcement_template: Mapped[str] = mapped_column(Text, default="")
    # 首日任务: [{key, label, url}] shown after the join as tracked links.
    first_day_tasks: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    channel_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # Raise an alert when fewer than this many open places remain in a tier.
    alert_below: Mapped[int] = mapped_column(Integer, default=20)
    alerted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CommunityGroup(Base):
    __tablename__ = "community_groups"
    __table_args__ = (
        UniqueConstraint("workspace_id", "chat_id", name="uq_community_groups_ws_chat"),
        Index("ix_community_groups_community", "community_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    community_id: Mapped[str] = mapped_column(ForeignKey(_COMMUNITY, ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    platform: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str] = mapped_column(String(64), default="")
    # The owner's WeCom userid (a WeCom customer group): the ``sender`` of the group mass
    # posts (add_msg_template, chat_type group) the owner confirms in the WeCom app.
    owner_wecom_userid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    capacity: Mapped[int] = mapped_column(Integer)
    tier: Mapped[str | None] = mapped_column(String(32), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="open")
    # Places taken (routed + joined members); raised only by a conditional UPDATE.
    members: Mapped[int] = mapped_column(Integer, default=0)
    # The group's QR as a data: URL (the entry page loads nothing from elsewhere), and/or a
    # join link (WeCom 加入群聊 way).
    qr_image: Mapped[str | None] = mapped_column(Text, nullable=True)
    join_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    chat_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # The group's bot (a signed webhook to the brand's bot, or a WeCom group robot): the
    # content calendar posts through it instead of giving the owner a task.
    bot_channel_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CommunityMember(Base):
    __tablename__ = "community_members"
    __table_args__ = (
        UniqueConstraint("community_id", "holder", name="uq_community_members_holder"),
        Index("ix_community_members_group", "group_id", "status"),
        Index("ix_community_members_contact", "contact_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    community_id: Mapped[str] = mapped_column(ForeignKey(_COMMUNITY, ondelete="CASCADE"))
    group_id: Mapped[str] = mapped_column(ForeignKey(_GROUP, ondelete="CASCADE"))
    # The contact id when known, else "v:<visitor id>" / "h:<keyed hash of ip+ua>".
    holder: Mapped[str] = mapped_column(String(64))
    contact_id: Mapped[str | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL"), nullable=True
    )
    status: Mapped[str] = mapped_column(String(16), default="routed")
    scene: Mapped[str] = mapped_column(String(16), default="scan")
    tier: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # "age" when the tier came from a date answer (it moves as time passes).
    tier_source: Mapped[str | None] = mapped_column(String(16), nullable=True)
    answers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    invite_code: Mapped[str] = mapped_column(String(16), unique=True)
    inviter_member_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    muted_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    routed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    joined_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class CommunityAlert(Base):
    """Something an owner should see: few places left, a keyword, a violation."""

    __tablename__ = "community_alerts"
    __table_args__ = (Index("ix_community_alerts_community", "community_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    community_id: Mapped[str] = mapped_column(ForeignKey(_COMMUNITY, ondelete="CASCADE"))
    group_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))  # low_places / keyword / violation
    message: Mapped[str] = mapped_column(String(1000))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CommunityViolation(Base):
    """A group message that broke a rule; ``step`` is the member's count, ``action`` the
    ladder's answer. One per (group, message id, rule): a re-sent message counts once."""

    __tablename__ = "community_violations"
    __table_args__ = (
        UniqueConstraint("group_id", "message_id", "rule", name="uq_community_violations_msg"),
        Index("ix_community_violations_member", "community_id", "sender"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    community_id: Mapped[str] = mapped_column(ForeignKey(_COMMUNITY, ondelete="CASCADE"))
    group_id: Mapped[str] = mapped_column(ForeignKey(_GROUP, ondelete="CASCADE"))
    sender: Mapped[str] = mapped_column(String(128))
    contact_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    message_id: Mapped[str] = mapped_column(String(128))
    text: Mapped[str] = mapped_column(Text)
    rule: Mapped[str] = mapped_column(String(64))
    step: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))  # warn / mute / remove
    task_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CommunityFlood(Base):
    """Messages per sender in the current minute of a group (the flood limit)."""

    __tablename__ = "community_flood"
    __table_args__ = (PrimaryKeyConstraint("group_id", "sender", name="pk_community_flood"),)

    group_id: Mapped[str] = mapped_column(ForeignKey(_GROUP, ondelete="CASCADE"))
    sender: Mapped[str] = mapped_column(String(128))
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    count: Mapped[int] = mapped_column(Integer, default=0)


class CommunityPost(Base):
    """A post of the content calendar (内容日历): at ``at`` (HH:MM, the workspace's time
    zone) on the given ISO weekdays (empty: every day), to every group of the community (or
    one group), as a task for the group's owner with the text and a short link of its own per
    group. ``status``: active / paused."""

    __tablename__ = "community_posts"
    __table_args__ = (Index("ix_community_posts_community", "community_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    community_id: Mapped[str] = mapped_column(ForeignKey(_COMMUNITY, ondelete="CASCADE"))
    group_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    title: Mapped[str] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text, default="")
    image: Mapped[str | None] = mapped_column(Text, nullable=True)
    link_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    weekdays: Mapped[list[int]] = mapped_column(JSON, default=list)
    at: Mapped[str] = mapped_column(String(5))
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CommunityPostSend(Base):
    """One post sent to one group for one local date: written once (unique key) in the same
    transaction as its short link and owner task — or, for a group with a bot, as the
    channel send's record (channels then delivers it once per key)."""

    __tablename__ = "community_post_sends"
    __table_args__ = (
        UniqueConstraint("post_id", "group_id", "slot", name="uq_community_post_sends_slot"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    post_id: Mapped[str] = mapped_column(ForeignKey("community_posts.id", ondelete="CASCADE"))
    group_id: Mapped[str] = mapped_column(ForeignKey(_GROUP, ondelete="CASCADE"))
    slot: Mapped[str] = mapped_column(String(10))  # the local date, YYYY-MM-DD
    link_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    short_url: Mapped[str | None] = mapped_column(String(300), nullable=True)
    task_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # Sent through the group's bot: channels' send record (its status is the send's).
    channel_send_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # Sent to a WeCom customer group as a group mass post: the connector's task
    # (wecom_mass_sends), confirmed by the owner in WeCom.
    wecom_mass_send_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CommunityMaterial(Base):
    """The material library (标题库 / 内容库 / 图片库) posts draw from."""

    __tablename__ = "community_materials"
    __table_args__ = (Index("ix_community_materials_ws", "workspace_id", "kind", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # title / content / image
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
