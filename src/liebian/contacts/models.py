"""The one person model: a contact is one end user of a workspace, keyed by ``external_id``.

Campaign participation, referrals, rewards and conversions all point here; nothing keeps a
second copy of the person. PII (email, phone, nickname) is stored AES-GCM encrypted; keyed
HMAC hashes of the *normalized* email and phone let fraud checks and dedupe compare people
without decrypting anyone.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from liebian.kit.clock import utcnow
from liebian.kit.db import Base, UTCDateTime


class Contact(Base):
    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("workspace_id", "external_id", name="uq_contacts_workspace_external"),
        Index("ix_contacts_workspace_email_hash", "workspace_id", "email_hash"),
        Index("ix_contacts_workspace_phone_hash", "workspace_id", "phone_hash"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(128))
    email_enc: Mapped[str | None] = mapped_column(String(600), nullable=True)
    phone_enc: Mapped[str | None] = mapped_column(String(200), nullable=True)
    nickname_enc: Mapped[str | None] = mapped_column(String(400), nullable=True)
    avatar_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    email_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    phone_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # First visitor id seen for this person (aliases proper belong to the events identity map).
    visitor_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
