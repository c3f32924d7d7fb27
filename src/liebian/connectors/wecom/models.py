"""WeCom connector tables: the connection, what its callbacks told us, and what we sent.

Every table carries ``workspace_id``; every effect at WeCom that must happen once has a unique
key here, written and committed before the call (welcome code, mass-send idempotency key) and
every callback is recorded under a content key so WeCom's retries are applied once.
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


class WecomConnection(Base):
    """One WeCom corp per workspace. The agent secret, callback token and EncodingAESKey are
    read back to call WeCom and to verify callbacks, so they are encrypted (runtime.cipher),
    never hashed, and never returned in clear."""

    __tablename__ = "wecom_connections"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey(_WS, ondelete="CASCADE"), unique=True, index=True
    )
    corp_id: Mapped[str] = mapped_column(String(64))
    agent_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    secret_enc: Mapped[str] = mapped_column(String(400))
    token_enc: Mapped[str] = mapped_column(String(400))
    aes_key_enc: Mapped[str] = mapped_column(String(400))
    secret_hint: Mapped[str] = mapped_column(String(16))
    # Bumped whenever a secret changes: cached access tokens of the old secret are dropped.
    version: Mapped[int] = mapped_column(Integer, default=1)
    last_callback_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The last tag_changes row pushed to WeCom (tags.py: liebian → WeCom corp tag mirror).
    tag_cursor: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WecomCallback(Base):
    """One callback applied. WeCom re-sends a callback it got no timely answer for (new
    timestamp and nonce, same message): the key is the hash of the decrypted message, so
    the retry finds this row and changes nothing."""

    __tablename__ = "wecom_callbacks"
    __table_args__ = (
        UniqueConstraint("workspace_id", "dedupe_key", name="uq_wecom_callbacks_ws_key"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"), index=True)
    dedupe_key: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(64))
    change_type: Mapped[str] = mapped_column(String(64), default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WecomFollow(Base):
    """An external contact (customer) followed by a staff member, from the callbacks."""

    __tablename__ = "wecom_follows"
    __table_args__ = (
        PrimaryKeyConstraint(
            "workspace_id", "external_userid", "staff_userid", name="pk_wecom_follows"
        ),
        Index("ix_wecom_follows_contact", "contact_id"),
        Index("ix_wecom_follows_welcome_code", "workspace_id", "welcome_code"),
    )

    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    external_userid: Mapped[str] = mapped_column(String(128))
    staff_userid: Mapped[str] = mapped_column(String(128))
    contact_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    state: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The add callback's WelcomeCode: valid for 20 seconds from added_at, single-use.
    welcome_code: Mapped[str | None] = mapped_column(String(256), nullable=True)
    # active | removed_by_staff (del_external_contact) | removed_by_customer (del_follow_user)
    status: Mapped[str] = mapped_column(String(24), default="active")
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class WecomContactWay(Base):
    """A 联系我 (kind "contact") or 加入群聊 (kind "join") way with its ``state``: whoever
    comes through it carries the state back in the add/join callback, naming the channel."""

    __tablename__ = "wecom_contact_ways"
    __table_args__ = (
        UniqueConstraint("workspace_id", "kind", "state", name="uq_wecom_ways_ws_kind_state"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(30))
    channel: Mapped[str | None] = mapped_column(String(64), nullable=True)
    config_id: Mapped[str] = mapped_column(String(128))
    qr_code: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    # Contact ways: sent with send_welcome_msg when someone is added through the way
    # (welcome.py), inside WeCom's 20-second window.
    welcome_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    # staff user ids (contact ways) or chat ids (join ways) the way leads to.
    targets: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WecomWelcome(Base):
    """A welcome message for one welcome_code (single-use at WeCom): the row is committed
    before the call, so the same code is never sent twice by us."""

    __tablename__ = "wecom_welcomes"
    __table_args__ = (
        PrimaryKeyConstraint("workspace_id", "welcome_code", name="pk_wecom_welcomes"),
    )

    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    welcome_code: Mapped[str] = mapped_column(String(256))
    # sending | sent | failed
    status: Mapped[str] = mapped_column(String(16), default="sending")
    errcode: Mapped[int | None] = mapped_column(Integer, nullable=True)
    errmsg: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WecomMassSend(Base):
    """A 企业群发 task (add_msg_template) that a staff member confirms in WeCom."""

    __tablename__ = "wecom_mass_sends"
    __table_args__ = (
        UniqueConstraint("workspace_id", "idempotency_key", name="uq_wecom_mass_ws_key"),
        Index("ix_wecom_mass_sends_source", "workspace_id", "source", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    # single (customers: ``recipients`` are external_userids, WeCom's monthly cap applies) |
    # group (customer groups: ``recipients`` are chat ids, ``sender`` is their owner).
    chat_type: Mapped[str] = mapped_column(String(8), default="single", server_default="single")
    # Who asked, for listing (e.g. "community:<id>"); free text of the caller.
    source: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sender: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # sending | created (waiting for the staff member to confirm) | failed | refused
    status: Mapped[str] = mapped_column(String(16), default="sending")
    month: Mapped[str] = mapped_column(String(7))
    recipients: Mapped[list[str]] = mapped_column(JSON)
    # Customers left out because they reached WeCom's monthly cap (not sent to WeCom at all).
    over_cap: Mapped[list[str]] = mapped_column(JSON)
    # Customers WeCom itself refused (its fail_list).
    fail_list: Mapped[list[str]] = mapped_column(JSON)
    msgid: Mapped[str | None] = mapped_column(String(128), nullable=True)
    errcode: Mapped[int | None] = mapped_column(Integer, nullable=True)
    errmsg: Mapped[str | None] = mapped_column(String(500), nullable=True)
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    # What WeCom reports of the task (get_groupmsg_task / get_groupmsg_send_result), polled:
    # {"senders": {userid: 0 not sent | 1 sent}, "items": {chat id or external_userid:
    # 0 not sent | 1 sent | 2 not a customer / not in the group | 3 received another mass
    # message (the limit)}}.
    results: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    results_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WecomMonthlyReceipt(Base):
    """How many mass messages one customer was sent this natural month (Beijing time)."""

    __tablename__ = "wecom_monthly_receipts"
    __table_args__ = (
        PrimaryKeyConstraint(
            "workspace_id", "external_userid", "month", name="pk_wecom_monthly_receipts"
        ),
    )

    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    external_userid: Mapped[str] = mapped_column(String(128))
    month: Mapped[str] = mapped_column(String(7))
    count: Mapped[int] = mapped_column(Integer, default=0)


class WecomTagMap(Base):
    """A WeCom corp tag and the liebian tag that mirrors it."""

    __tablename__ = "wecom_tag_map"
    __table_args__ = (
        PrimaryKeyConstraint("workspace_id", "corp_tag_id", name="pk_wecom_tag_map"),
        UniqueConstraint("workspace_id", "tag_id", name="uq_wecom_tag_map_ws_tag"),
    )

    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    corp_tag_id: Mapped[str] = mapped_column(String(128))
    tag_id: Mapped[str] = mapped_column(String(40))
    corp_group_name: Mapped[str] = mapped_column(String(64), default="")
    name: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
