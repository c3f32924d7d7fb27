"""Response models of the webhooks API (what ``/openapi.json`` promises each route returns)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from liebian.kit.schemas import OutModel


class TopicOut(OutModel):
    topic: str
    description: str


class SignatureOut(OutModel):
    header: str = Field(description="the request header that carries the signature")
    format: str


class TopicsOut(OutModel):
    items: list[TopicOut]
    wildcard: str = Field(description="subscribe to every topic")
    signature: SignatureOut


class EndpointOut(OutModel):
    id: str
    url: str
    topics: list[str]
    description: str
    active: bool
    secret_hint: str = Field(description="the secret's first characters, to tell secrets apart")
    created_at: datetime
    updated_at: datetime


class EndpointWithSecretOut(EndpointOut):
    secret: str = Field(description="shown once, in this reply only: store it now")


class EndpointList(OutModel):
    items: list[EndpointOut]


class TestSentOut(OutModel):
    event_id: str


class AttemptOut(OutModel):
    number: int
    status_code: int | None
    error: str | None
    response_excerpt: str | None
    at: datetime


class DeliveryOut(OutModel):
    id: str
    event_id: str
    topic: str
    status: str = Field(description="pending, delivered, failed (retrying) or dead")
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    data: dict[str, Any]
    log: list[AttemptOut]


class DeliveryPage(OutModel):
    items: list[DeliveryOut]
    next_cursor: str | None = None


class RetryOut(OutModel):
    id: str
    status: str
    next_attempt_at: datetime | None
