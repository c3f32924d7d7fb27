"""Pydantic in/out models of the journeys API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from liebian.kit.schemas import StrictModel, error_responses

ERRORS = error_responses()


class JourneyCreate(StrictModel):
    name: str = Field(min_length=1, max_length=100)
    definition: dict[str, Any] = Field(
        description="trigger, entry, exit, goal_event, steps (docs/decisions/0024-automation.md)"
    )


class JourneyUpdate(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    definition: dict[str, Any] | None = None


class JourneyOut(BaseModel):
    id: str
    name: str
    status: str
    live_version: int | None
    draft: dict[str, Any]
    template: str | None
    created_at: datetime
    updated_at: datetime


class PublishOut(BaseModel):
    id: str
    version: int
    status: str


class EnrolIn(StrictModel):
    contact_ids: list[str] | None = Field(default=None, max_length=10_000)
    external_ids: list[str] | None = Field(default=None, max_length=10_000)
    segment_id: str | None = None


class EnrolOut(BaseModel):
    entered: int
    skipped: int


class ArchiveOut(BaseModel):
    id: str
    status: str
    runs_exited: int
