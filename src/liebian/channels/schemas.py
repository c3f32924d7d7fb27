"""Pydantic in/out models of the channels API (input is strict: unknown fields are 422)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from liebian.kit.schemas import StrictModel


class ChannelCreate(StrictModel):
    kind: str = Field(description="webhook | wecom_robot | smtp | sms | personal_wechat")
    name: str = Field(min_length=1, max_length=100)
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="webhook: {url}; wecom_robot: {url: the robot's whole webhook address};"
        " smtp: {host, port, security, username, from_address, from_name, default_subject};"
        " sms: {url, lookup_url, app_id, sign_name}; personal_wechat: {assignee}",
    )
    secret: str | None = Field(
        default=None,
        max_length=500,
        description="SMTP password, SMS signing secret or webhook secret; stored encrypted,"
        " never returned (a webhook secret is generated and shown once when absent)",
    )
    cap_count: int | None = Field(default=None, description="marketing messages per contact")
    cap_hours: int = Field(default=24, description="… within this many hours")
    monthly_cap: int | None = Field(default=None, description="messages per contact a month")
    active: bool = True


class ChannelPatch(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    config: dict[str, Any] | None = None
    secret: str | None = Field(default=None, max_length=500)
    cap_count: int | None = None
    cap_hours: int | None = None
    monthly_cap: int | None = None
    active: bool | None = None


class ChannelOut(BaseModel):
    id: str
    kind: str
    name: str
    config: dict[str, Any]
    has_secret: bool
    secret_hint: str | None
    active: bool
    cap_count: int | None
    cap_hours: int
    monthly_cap: int | None
    created_at: datetime
    updated_at: datetime


class ChannelCreated(ChannelOut):
    secret: str | None = Field(
        default=None, description="the generated secret, shown this once (webhook channels)"
    )


class ChannelList(BaseModel):
    items: list[ChannelOut]


class SendIn(StrictModel):
    contact_id: str | None = Field(default=None, description="ctc_… or the external id")
    content: dict[str, Any]
    idempotency_key: str = Field(min_length=1, max_length=200)
    category: Literal["marketing", "transactional"] = "marketing"


class TestSendIn(StrictModel):
    contact_id: str | None = None
    content: dict[str, Any] | None = Field(
        default=None, description="defaults to a short test text (or a subject for email)"
    )


class OutcomeOut(BaseModel):
    send_id: str
    status: str
    reason: str | None = None
    deferred_until: datetime | None = None
    provider_message_id: str | None = None
    retryable: bool = False
    error: str | None = None
    task_id: str | None = None
    replayed: bool = False


class SendRecordOut(BaseModel):
    id: str
    channel_id: str
    contact_id: str | None
    idempotency_key: str
    source: str
    category: str
    status: str
    reason: str | None
    error: str | None
    provider_message_id: str | None
    attempts: int
    deferred_until: datetime | None
    task_id: str | None
    created_at: datetime
    sent_at: datetime | None


class SendPage(BaseModel):
    items: list[SendRecordOut]
    next_cursor: str | None = None


class ReceiptIn(StrictModel):
    idempotency_key: str | None = Field(default=None, max_length=200)
    provider_message_id: str | None = Field(default=None, max_length=200)
    result: Literal["delivered", "bounced"]
    detail: str | None = Field(default=None, max_length=500)


class GuardSettingsIn(StrictModel):
    quiet_enabled: bool = True
    quiet_start: str = Field(default="21:00", pattern=r"^\d{2}:\d{2}$")
    quiet_end: str = Field(default="09:00", pattern=r"^\d{2}:\d{2}$")


class GuardSettingsOut(BaseModel):
    quiet_enabled: bool
    quiet_start: str
    quiet_end: str
    timezone: str


class OptOutIn(StrictModel):
    contact_id: str = Field(min_length=1, max_length=128, description="ctc_… or external id")
    channel_id: str = Field(min_length=1, max_length=40, description='chn_… or "*" for all')


class OptOutOut(BaseModel):
    contact_id: str
    channel_id: str
    via: str
    created_at: datetime


class OptOutList(BaseModel):
    items: list[OptOutOut]


class TaskIn(StrictModel):
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=4000)
    kind: str = Field(default="manual", min_length=1, max_length=32)
    contact_id: str | None = None
    assignee: str | None = Field(default=None, max_length=100)
    due_at: datetime | None = None
    dedupe_key: str | None = Field(default=None, min_length=1, max_length=200)


class TaskDoneIn(StrictModel):
    done_by: str | None = Field(default=None, max_length=100)
    note: str | None = Field(default=None, max_length=500)


class TaskOut(BaseModel):
    id: str
    kind: str
    title: str
    body: str
    contact_id: str | None
    assignee: str | None
    source: str
    send_id: str | None
    status: str
    due_at: datetime | None
    done_at: datetime | None
    done_by: str | None
    note: str | None
    created_at: datetime


class TaskPage(BaseModel):
    items: list[TaskOut]
    next_cursor: str | None = None
