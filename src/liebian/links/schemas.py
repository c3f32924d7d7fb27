"""Link API shapes. Unknown fields are rejected (StrictModel) so typos never pass silently."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, Field, field_validator, model_validator

from liebian.kit.schemas import OutModel, StrictModel

PLATFORMS = (
    "wechat", "wecom", "qq", "alipay", "douyin", "weibo", "dingtalk", "feishu", "xiaohongshu",
    "browser", "bot",
)  # fmt: skip
Platform = Literal[
    "wechat", "wecom", "qq", "alipay", "douyin", "weibo", "dingtalk", "feishu", "xiaohongshu",
    "browser", "bot",
]  # fmt: skip

SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
TAG_RE = re.compile(r"^[^\s,][^,]{0,63}$")
MAX_URL = 2048


class Utm(StrictModel):
    source: str | None = Field(default=None, max_length=200)
    medium: str | None = Field(default=None, max_length=200)
    campaign: str | None = Field(default=None, max_length=200)
    term: str | None = Field(default=None, max_length=200)
    content: str | None = Field(default=None, max_length=200)


class Variant(StrictModel):
    url: str = Field(max_length=MAX_URL)
    weight: int = Field(ge=1, le=1000)


class LinkFields(StrictModel):
    """Everything a link may set; create and bulk rows share it."""

    url: str = Field(max_length=MAX_URL, description="destination, http(s) only")
    slug: str | None = Field(default=None, description="custom path; random when omitted")
    title: str = Field(default="", max_length=300)
    channel: str | None = Field(
        default=None, max_length=64, description="渠道 code, e.g. wx_group_01"
    )
    campaign_id: str | None = Field(default=None, max_length=40)
    utm: Utm | None = None
    tags: list[str] = Field(default_factory=list, max_length=20)
    expires_at: AwareDatetime | None = None
    expired_url: str | None = Field(default=None, max_length=MAX_URL)
    max_clicks: int | None = Field(default=None, ge=1, le=1_000_000_000)
    password: str | None = Field(default=None, min_length=8, max_length=128)
    allowed_platforms: list[Platform] | None = Field(default=None, min_length=1)
    ios_url: str | None = Field(default=None, max_length=MAX_URL)
    android_url: str | None = Field(default=None, max_length=MAX_URL)
    variants: list[Variant] | None = Field(default=None, min_length=2, max_length=4)
    browser_guide: bool = False

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str | None) -> str | None:
        if value is not None and not SLUG_RE.match(value):
            raise ValueError(
                "slug may hold letters, digits, '-' and '_' (1–63 characters, not starting with - or _)"
            )
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        for tag in value:
            if not TAG_RE.match(tag):
                raise ValueError(f"tag '{tag}' must be 1–64 characters without commas")
        return sorted(set(value))

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_.\-\u4e00-\u9fff]{1,64}", value):
            raise ValueError(
                "channel is a code: letters, digits, Chinese characters, '_', '-', '.'"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> LinkFields:
        if self.expired_url and not self.expires_at and not self.max_clicks:
            raise ValueError("expired_url needs expires_at or max_clicks")
        return self


class LinkCreate(LinkFields):
    pass


class LinkUpdate(StrictModel):
    """Partial update: only the fields sent change; send null to clear an optional field."""

    url: str | None = Field(default=None, max_length=MAX_URL)
    title: str | None = Field(default=None, max_length=300)
    channel: str | None = Field(default=None, max_length=64)
    campaign_id: str | None = Field(default=None, max_length=40)
    utm: Utm | None = None
    tags: list[str] | None = Field(default=None, max_length=20)
    expires_at: AwareDatetime | None = None
    expired_url: str | None = Field(default=None, max_length=MAX_URL)
    max_clicks: int | None = Field(default=None, ge=1, le=1_000_000_000)
    password: str | None = Field(default=None, min_length=8, max_length=128)
    allowed_platforms: list[Platform] | None = Field(default=None, min_length=1)
    ios_url: str | None = Field(default=None, max_length=MAX_URL)
    android_url: str | None = Field(default=None, max_length=MAX_URL)
    variants: list[Variant] | None = Field(default=None, min_length=2, max_length=4)
    browser_guide: bool | None = None

    _tags = field_validator("tags")(lambda cls, v: None if v is None else LinkFields._tags(v))
    _channel = field_validator("channel")(lambda cls, v: LinkFields._channel(v))


class LinkOut(OutModel):
    id: str
    slug: str
    short_url: str
    url: str
    title: str
    channel: str | None
    campaign_id: str | None
    utm: dict[str, str]
    tags: list[str]
    expires_at: datetime | None
    expired_url: str | None
    max_clicks: int | None
    has_password: bool
    allowed_platforms: list[str] | None
    ios_url: str | None
    android_url: str | None
    variants: list[dict[str, object]] | None
    browser_guide: bool
    qr_url: str
    created_at: datetime
    updated_at: datetime


class BulkError(OutModel):
    row: int
    field: str | None = None
    message: str


class BulkResult(OutModel):
    created: int
    items: list[LinkOut] | None = None
    errors: list[BulkError] = Field(default_factory=list)
