"""Pydantic in/out models of the segments API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from liebian.kit.schemas import StrictModel


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorOut(BaseModel):
    """Every 4xx: ``details.path`` names the JSON path of a bad condition node."""

    error: ErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text}
    for status, text in (
        (401, "missing or unknown API key"),
        (403, "the key's role may not do this"),
        (404, "no such segment in this workspace"),
        (409, "name taken, or the segment is used by another"),
        (422, "bad input: the message says what to fix"),
    )
}

Condition = dict[str, Any]


class SegmentCreate(StrictModel):
    name: str = Field(min_length=1, max_length=100)
    kind: Literal["dynamic", "static"] = "dynamic"
    condition: Condition | None = Field(
        default=None, description="the condition (docs/segments.md); dynamic segments only"
    )
    description: str = Field(default="", max_length=500)


class SegmentUpdate(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    condition: Condition | None = None
    description: str | None = Field(default=None, max_length=500)


class SegmentOut(BaseModel):
    id: str
    name: str
    description: str
    kind: str
    condition: Condition | None
    frozen_from_id: str | None
    version: int
    size: int
    built_at: datetime | None
    build_ms: int | None
    build_error: str | None
    created_at: datetime
    updated_at: datetime


class PreviewIn(StrictModel):
    condition: Condition


class SampleMember(BaseModel):
    id: str
    external_id: str


class PreviewOut(BaseModel):
    count: int
    sample: list[SampleMember]
    took_ms: int
    warnings: list[str]


class BuildOut(BaseModel):
    segment_id: str
    version: int
    entered: int
    exited: int
    size: int


class MemberOut(BaseModel):
    contact_id: str
    external_id: str
    source: str
    since: datetime


class ChangeOut(BaseModel):
    contact_id: str
    external_id: str | None
    change: str
    cause: str
    version: int
    at: datetime


class SizePoint(BaseModel):
    day: str
    size: int


class SizesOut(BaseModel):
    segment_id: str
    items: list[SizePoint]


class ManualIn(StrictModel):
    add: list[str] = Field(default_factory=list, max_length=10_000, description="contact ids")
    remove: list[str] = Field(default_factory=list, max_length=10_000, description="contact ids")


class FreezeIn(StrictModel):
    name: str = Field(min_length=1, max_length=100)


class UploadOut(BaseModel):
    segment: SegmentOut
    entered: int
    exited: int
    unknown_ids: list[str]


class VocabularyOut(BaseModel):
    """What the builder offers: attributes with their types and operators, custom attributes,
    tags, events seen, measures."""

    attributes: list[dict[str, Any]]
    custom_attributes: list[dict[str, Any]]
    tags: list[dict[str, Any]]
    events: list[str]
    segments: list[dict[str, Any]]
    communities: list[dict[str, Any]] = Field(
        default_factory=list, description="id, name, tiers (key, name), groups (id, name, tier)"
    )
    operators: dict[str, list[str]]


class RuleTagIn(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=64)
    color: str = Field(default="#2f6fed", pattern=r"^#[0-9a-fA-F]{6}$")
    group_id: str | None = None
    condition: Condition


class RuleTagOut(BaseModel):
    id: str
    name: str
    kind: str
    color: str
    condition: Condition | None
    added: int
    removed: int
