"""Pydantic shapes of the contacts API (people, tags, attributes, identity, import/export)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from liebian.kit.schemas import StrictModel


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorOut(BaseModel):
    """Every 4xx: ``{"error": {"code", "message", "details"}}``; details name the field."""

    error: ErrorDetail


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorOut} for s in statuses}


AttributeValue = str | float | int | bool | date | None


class TagRef(BaseModel):
    id: str
    name: str
    color: str
    kind: str
    source: str | None = None
    added_at: datetime | None = None


class ContactItem(BaseModel):
    id: str
    external_id: str
    nickname: str | None
    phone: str | None
    email: str | None
    avatar_url: str | None
    first_channel: str | None
    first_seen_at: datetime | None
    last_seen_at: datetime | None
    orders_count: int
    gmv_cents: int
    tags: list[TagRef]
    created_at: datetime


class ContactPage(BaseModel):
    items: list[ContactItem]
    next_cursor: str | None = None


class AliasOut(BaseModel):
    kind: str
    value: str
    created_at: datetime


class Computed(BaseModel):
    first_channel: str | None
    last_channel: str | None
    source_channel: str | None
    source_campaign_id: str | None
    referrer_contact_id: str | None
    referrer_external_id: str | None
    first_seen_at: datetime | None
    last_seen_at: datetime | None
    days_since_last_activity: int | None
    orders_count: int
    gmv_cents: int
    aov_cents: int | None
    last_order_at: datetime | None
    invites_made: int
    invites_qualified: int
    rfm_class: str | None


class SegmentOfContact(BaseModel):
    id: str
    name: str
    kind: str
    source: str  # computed | manual_add
    since: datetime


class Profile(BaseModel):
    id: str
    external_id: str
    nickname: str | None
    phone: str | None
    email: str | None
    avatar_url: str | None
    pii_masked: bool
    created_at: datetime
    updated_at: datetime
    merged_into_id: str | None
    erased_at: datetime | None
    aliases: list[AliasOut]
    tags: list[TagRef]
    attributes: dict[str, AttributeValue]
    computed: Computed
    segments: list[SegmentOfContact] = Field(
        default_factory=list, description="segments the contact is a member of"
    )


class ContactPatch(StrictModel):
    nickname: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=320)
    avatar_url: str | None = Field(default=None, max_length=500)
    attributes: dict[str, AttributeValue] | None = Field(
        default=None, description="custom attributes by key (defined first); null removes one"
    )


class TimelineItem(BaseModel):
    ts: datetime
    source: Literal["event", "campaign_join", "invite", "invited_by", "help", "reward", "tag"]
    kind: str
    title: str
    ref_id: str
    campaign_id: str | None = None
    channel: str | None = None
    revenue: int | None = None
    currency: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class TimelinePage(BaseModel):
    items: list[TimelineItem]
    next_cursor: str | None = None


class MergeIn(StrictModel):
    other: str = Field(
        min_length=1, max_length=128, description="id or external id of the contact merged away"
    )


class MergeOut(BaseModel):
    survivor_id: str
    merged_id: str
    moved: dict[str, int]
    kept_on_merged: dict[str, int]
    audit_id: str


class AliasKindValue(StrictModel):
    kind: Literal["click_id", "wx_openid", "wx_unionid", "wecom_external_userid", "visitor_id"]
    value: str = Field(min_length=1, max_length=128)


# -- tags --------------------------------------------------------------------------------------


class TagGroupIn(StrictModel):
    name: str = Field(min_length=1, max_length=64)


class TagGroupOut(BaseModel):
    id: str
    name: str
    created_at: datetime
    tags_count: int = 0


class TagIn(StrictModel):
    name: str = Field(min_length=1, max_length=64)
    color: str = Field(default="#2f6fed", pattern=r"^#[0-9a-fA-F]{6}$")
    group_id: str | None = None


class TagPatch(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=64)
    color: str | None = Field(default=None, pattern=r"^#[0-9a-fA-F]{6}$")
    group_id: str | None = None


class TagOut(BaseModel):
    id: str
    name: str
    color: str
    kind: str
    group_id: str | None
    condition: dict[str, Any] | None = None
    contacts_count: int = 0
    created_at: datetime


class TagIdsIn(StrictModel):
    tag_ids: list[str] = Field(min_length=1, max_length=50)


class BulkTagIn(StrictModel):
    tag_ids: list[str] = Field(min_length=1, max_length=50)
    action: Literal["add", "remove"] = "add"
    contact_ids: list[str] = Field(
        default_factory=list, max_length=10_000, description="contact ids (ctc_…)"
    )
    external_ids: list[str] = Field(default_factory=list, max_length=10_000)
    segment_id: str | None = Field(
        default=None,
        max_length=40,
        description="and/or every member of this segment (seg_…), up to 50,000",
    )


class TagChangeOut(BaseModel):
    changed: int
    contacts: int


# -- attributes --------------------------------------------------------------------------------


class AttributeDefIn(StrictModel):
    key: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    type: Literal["string", "number", "date", "bool"]
    label: str = Field(default="", max_length=100)


class AttributeDefPatch(StrictModel):
    label: str = Field(max_length=100)


class AttributeDefOut(BaseModel):
    key: str
    type: str
    label: str
    created_at: datetime


# -- import ------------------------------------------------------------------------------------


class RowError(BaseModel):
    row: int
    field: str
    problem: str


class ImportOut(BaseModel):
    created: int
    updated: int
    rows: int


class TagGroupList(BaseModel):
    items: list[TagGroupOut]


class TagList(BaseModel):
    items: list[TagOut]


class AttributeDefList(BaseModel):
    items: list[AttributeDefOut]


class ErasureOut(BaseModel):
    """What a PIPL erasure did (it cannot be undone)."""

    id: str = Field(description="the contact's id, kept so references still resolve")
    erased_at: datetime
    marker: str = Field(description="the pseudonym the person's events now carry")
    events_pseudonymized: int


class PersonExport(BaseModel):
    """PIPL: everything held about one person (PII in clear). The record sections hold the
    rows of each table that names the person, as they are stored."""

    contact: dict[str, Any]
    aliases: list[dict[str, Any]]
    tags: list[dict[str, Any]]
    tag_changes: list[dict[str, Any]]
    attributes: dict[str, Any]
    records: dict[str, Any]
    events: list[dict[str, Any]]
    events_truncated: bool
    exported_at: datetime
