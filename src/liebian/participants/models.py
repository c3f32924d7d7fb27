"""Which sign-in methods a campaign page offers, and the one-time SMS codes.

``participant_sign_in`` holds one row per workspace (``scope`` = ``"workspace"``) and,
optionally, one per campaign (``scope`` = the campaign id) that overrides the methods; the
SMS channel and the official account's credentials are the workspace's (AppSecret
encrypted, like every stored secret).

``participant_sms_codes``: one row per code sent. Only a keyed hash of the code is kept. The
unique (workspace, phone hash, slot) — ``slot`` is the minute the code was asked for — lets
one code per phone per minute through however many requests race for it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, PrimaryKeyConstraint, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from liebian.kit.clock import utcnow
from liebian.kit.db import Base, UTCDateTime
from liebian.workspaces import models as _workspaces  # noqa: F401  (the table the FKs name)

_WS = "workspaces.id"
WORKSPACE_SCOPE = "workspace"


class SignInSettings(Base):
    __tablename__ = "participant_sign_in"
    __table_args__ = (PrimaryKeyConstraint("workspace_id", "scope", name="pk_participant_sign_in"),)

    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(40))
    # Comma-separated, in the order a page shows them: token, sms, wechat.
    methods: Mapped[str] = mapped_column(String(64))
    sms_channel_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # The SMS text; {code} and {minutes} are filled in.
    sms_text: Mapped[str | None] = mapped_column(String(300), nullable=True)
    sms_template_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    wechat_app_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    wechat_secret_enc: Mapped[str | None] = mapped_column(String(400), nullable=True)
    wechat_secret_hint: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # snsapi_base (openid only, silent) or snsapi_userinfo (asks; nickname too).
    wechat_scope: Mapped[str] = mapped_column(String(20), default="snsapi_base")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SmsCode(Base):
    __tablename__ = "participant_sms_codes"
    __table_args__ = (
        UniqueConstraint(
            "workspace_id", "phone_hash", "slot", name="uq_participant_sms_codes_slot"
        ),
        Index("ix_participant_sms_codes_phone", "workspace_id", "phone_hash", "created_at"),
        Index("ix_participant_sms_codes_ip", "workspace_id", "ip_hash", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey(_WS, ondelete="CASCADE"))
    phone_hash: Mapped[str] = mapped_column(String(64))
    slot: Mapped[int] = mapped_column(Integer)
    code_hash: Mapped[str] = mapped_column(String(64))
    ip_hash: Mapped[str] = mapped_column(String(32))
    contact_id: Mapped[str] = mapped_column(String(40))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    send_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    send_status: Mapped[str | None] = mapped_column(String(20), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
