"""The one person model: a contact is one end user of a workspace, keyed by ``external_id``.

Campaign participation, referrals, rewards and conversions all point here; nothing keeps a
second copy of the person. PII (email, phone, nickname) is stored AES-GCM encrypted; keyed
HMAC hashes of the *normalized* email and phone let fraud checks and dedupe compare people
without decrypting anyone. The nickname's first 1–4 normalized characters are kept as short
keyed hashes too (``nick_h1``…``nick_h4``) so a prefix search never decrypts the table
(decision 0016).

Beside the contact: its aliases (every other id that names the same person), manual and rule
tags with their change history, typed custom attributes, and an audit trail of merges and
erasures. The computed attributes (first/last seen, channels, orders, GMV, invites, RFM) are
columns on the contact, updated as conversions and identifies happen and reconciled from the
event store by a job.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Float,
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
_CONTACT = "contacts.id"

ALIAS_KINDS = (
    "visitor_id",
    "click_id",
    "wx_openid",
    "wx_unionid",
    "wecom_external_userid",
    "phone_hash",
    "email_hash",
)
TAG_SOURCES = ("manual", "rule", "import", "api", "event")
ATTRIBUTE_TYPES = ("string", "number", "date", "bool")


class Contact(Base):
    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("workspace_id", "external_id", name="uq_contacts_workspace_external"),
        Index("ix_contacts_workspace_email_hash", "workspace_id", "email_hash"),
        Index("ix_contacts_workspace_phone_hash", "workspace_id", "phone_hash"),
        # The list pages newest first within a workspace.
        Index("ix_contacts_workspace_id", "workspace_id", "id"),
        Index("ix_contacts_workspace_first_seen", "workspace_id", "first_seen_at"),
        Index("ix_contacts_workspace_last_seen", "workspace_id", "last_seen_at"),
        Index("ix_contacts_workspace_first_channel", "workspace_id", "first_channel"),
        Index("ix_contacts_workspace_nick_h1", "workspace_id", "nick_h1"),
        Index("ix_contacts_workspace_nick_h2", "workspace_id", "nick_h2"),
        Index("ix_contacts_workspace_nick_h3", "workspace_id", "nick_h3"),
        Index("ix_contacts_workspace_nick_h4", "workspace_id", "nick_h4"),
        # A profile and its timeline list the contacts merged into this one.
        Index("ix_contacts_merged_into", "merged_into_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(128))
    email_enc: Mapped[str | None] = mapped_column(String(600), nullable=True)
    phone_enc: Mapped[str | None] = mapped_column(String(200), nullable=True)
    nickname_enc: Mapped[str | None] = mapped_column(String(400), nullable=True)
    avatar_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    email_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    phone_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Keyed hashes of the nickname's first 1, 2, 3 and 4 normalized characters.
    nick_h1: Mapped[str | None] = mapped_column(String(16), nullable=True)
    nick_h2: Mapped[str | None] = mapped_column(String(16), nullable=True)
    nick_h3: Mapped[str | None] = mapped_column(String(16), nullable=True)
    nick_h4: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # First visitor id seen for this person (every visitor id is also a contact_aliases row).
    visitor_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # Computed attributes (kept current on conversions/identify; reconciled by a job).
    first_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    first_channel: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_channel: Mapped[str | None] = mapped_column(String(64), nullable=True)
    source_campaign_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    referrer_contact_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    orders_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    gmv_cents: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    last_order_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    invites_made: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    invites_qualified: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    rfm_class: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # Set when this contact was merged into another (the survivor); its rows moved there.
    merged_into_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ContactAlias(Base):
    """Another id naming the same person (visitor, click, WeChat, WeCom, phone/email hash)."""

    __tablename__ = "contact_aliases"
    __table_args__ = (
        PrimaryKeyConstraint("workspace_id", "kind", "value", name="pk_contact_aliases"),
        Index("ix_contact_aliases_contact", "contact_id"),
    )

    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(128))
    contact_id: Mapped[str] = mapped_column(ForeignKey(_CONTACT, ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TagGroup(Base):
    __tablename__ = "tag_groups"
    __table_args__ = (UniqueConstraint("workspace_id", "name", name="uq_tag_groups_ws_name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Tag(Base):
    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("workspace_id", "name", name="uq_tags_ws_name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    group_id: Mapped[str | None] = mapped_column(
        ForeignKey("tag_groups.id", ondelete="SET NULL"), nullable=True
    )
    name: Mapped[str] = mapped_column(String(64))
    color: Mapped[str] = mapped_column(String(16), default="#2f6fed")
    kind: Mapped[str] = mapped_column(String(8), default="manual")  # manual|rule
    # Rule tags only: validated and evaluated by liebian.segments.
    condition: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ContactTag(Base):
    __tablename__ = "contact_tags"
    __table_args__ = (
        PrimaryKeyConstraint("contact_id", "tag_id", name="pk_contact_tags"),
        Index("ix_contact_tags_ws_tag", "workspace_id", "tag_id"),
    )

    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    contact_id: Mapped[str] = mapped_column(ForeignKey(_CONTACT, ondelete="CASCADE"))
    tag_id: Mapped[str] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(8), default="manual")
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TagChange(Base):
    __tablename__ = "tag_changes"
    __table_args__ = (Index("ix_tag_changes_ws_contact_at", "workspace_id", "contact_id", "at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    contact_id: Mapped[str] = mapped_column(ForeignKey(_CONTACT, ondelete="CASCADE"))
    # Kept after a tag is deleted (history), so no FK.
    tag_id: Mapped[str] = mapped_column(String(40))
    change: Mapped[str] = mapped_column(String(8))  # added|removed
    reason: Mapped[str] = mapped_column(String(200), default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AttributeDef(Base):
    __tablename__ = "attribute_defs"
    __table_args__ = (PrimaryKeyConstraint("workspace_id", "key", name="pk_attribute_defs"),)

    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(8))  # string|number|date|bool
    label: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ContactAttribute(Base):
    __tablename__ = "contact_attributes"
    __table_args__ = (
        PrimaryKeyConstraint("contact_id", "key", name="pk_contact_attributes"),
        Index("ix_contact_attributes_ws_key", "workspace_id", "key"),
    )

    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    contact_id: Mapped[str] = mapped_column(ForeignKey(_CONTACT, ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    value_str: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    value_num: Mapped[float | None] = mapped_column(Float, nullable=True)
    value_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    value_bool: Mapped[bool | None] = mapped_column(Boolean, nullable=True)


class ContactAudit(Base):
    """Merges and erasures (and other irreversible acts on a person): who, what, when."""

    __tablename__ = "contact_audit"
    __table_args__ = (Index("ix_contact_audit_ws_at", "workspace_id", "at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    # No FK: the record outlives the contact it names (erasure).
    contact_id: Mapped[str] = mapped_column(String(40), index=True)
    action: Mapped[str] = mapped_column(String(16))  # merge|erase
    actor: Mapped[str] = mapped_column(String(80))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
