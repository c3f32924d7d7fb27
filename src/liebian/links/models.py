"""Links, their tags, short domains, live codes, and the slug registry they share."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from liebian.kit.clock import utcnow
from liebian.kit.db import Base, UTCDateTime


class Slug(Base):
    """One namespace for every public path (links and live codes): a slug is taken once."""

    __tablename__ = "slugs"

    slug: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "link" | "live_code"
    target_id: Mapped[str] = mapped_column(String(40), unique=True)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )


class Link(Base):
    __tablename__ = "links"
    __table_args__ = (Index("ix_links_workspace_channel", "workspace_id", "channel"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    url: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(String(300), default="")
    channel: Mapped[str | None] = mapped_column(String(64), nullable=True)
    campaign_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    utm: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expired_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    max_clicks: Mapped[int | None] = mapped_column(Integer, nullable=True)
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    allowed_platforms: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    ios_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    android_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    variants: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    # Inside WeChat/QQ show the "open in your browser" guide instead of redirecting (for
    # destinations those apps block, such as app downloads).
    browser_guide: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    tag_rows: Mapped[list[LinkTag]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="LinkTag.tag"
    )

    @property
    def tags(self) -> list[str]:
        return [t.tag for t in self.tag_rows]


class LinkTag(Base):
    __tablename__ = "link_tags"
    __table_args__ = (Index("ix_link_tags_workspace_tag", "workspace_id", "tag"),)

    link_id: Mapped[str] = mapped_column(
        ForeignKey("links.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(40))


class Domain(Base):
    """A short domain of a workspace. Health is set by an operator or the API, never rotated
    automatically (rotating to evade a platform block breaks WeChat's rules)."""

    __tablename__ = "domains"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    host: Mapped[str] = mapped_column(String(253), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="healthy")  # healthy | blocked
    is_primary: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class LiveCode(Base):
    """活码: one stable URL/QR serving the currently usable target among several."""

    __tablename__ = "live_codes"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Fire ``live_code.low_targets`` when fewer usable targets than this remain (API default 2:
    # while the last group still has places).
    alert_below: Mapped[int] = mapped_column(Integer, default=2)
    alerted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    targets: Mapped[list[LiveCodeTarget]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="LiveCodeTarget.position"
    )


class LiveCodeTarget(Base):
    __tablename__ = "live_code_targets"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    live_code_id: Mapped[str] = mapped_column(
        ForeignKey("live_codes.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(200), default="")
    url: Mapped[str | None] = mapped_column(Text, nullable=True)
    image: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    image_type: Mapped[str | None] = mapped_column(String(40), nullable=True)
    capacity: Mapped[int] = mapped_column(Integer)
    scans: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
