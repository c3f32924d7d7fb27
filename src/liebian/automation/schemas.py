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


class TemplateOut(BaseModel):
    id: str
    name: str
    description: str
    trigger: dict[str, Any]
    steps: int


class FromTemplateIn(StrictModel):
    template: str = Field(max_length=40)
    channel_id: str = Field(max_length=40, description="the channel the template's messages go on")
    name: str | None = Field(default=None, min_length=1, max_length=100)
    coupon_amount: int = Field(default=1000, ge=1, le=100_000_000, description="分")
    reward_amount: int = Field(default=500, ge=1, le=100_000_000)
    consultant: str | None = Field(default=None, max_length=100)
    publish: bool = False


class StepRunOut(BaseModel):
    step_id: str
    type: str
    status: str
    result: str | None
    due_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    why_not: str | None
    detail: dict[str, Any] | None


class RunExplainOut(BaseModel):
    run_id: str
    journey_id: str
    journey_name: str
    journey_status: str
    version: int
    status: str
    current_step: str | None
    trigger: str
    entered_at: datetime
    finished_at: datetime | None
    exit_reason: str | None
    converted_at: datetime | None
    steps: list[StepRunOut]


class ExplainOut(BaseModel):
    contact_id: str
    runs: list[RunExplainOut]


class DryRunIn(StrictModel):
    contact: str = Field(max_length=128, description="contact id or external id")
    draft: bool = Field(default=False, description="run the draft instead of the live version")


class DryRunOut(BaseModel):
    journey_id: str
    contact_id: str
    would_exit: bool
    steps: list[dict[str, Any]]


class StepStatsOut(BaseModel):
    step_id: str
    type: str
    label: str | None
    reached: int
    done: int
    failed: int
    skipped: int
    pending: int
    conversion: float
    results: dict[str, int]


class StatsOut(BaseModel):
    journey_id: str
    entered: int
    active: int
    completed: int
    exited: int
    exit_reasons: dict[str, int]
    converted: int
    steps: list[StepStatsOut]
