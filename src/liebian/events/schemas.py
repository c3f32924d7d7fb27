"""Event ingestion shapes. Validation happens in pydantic-core (Rust) over the raw body."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, Field, field_validator

from liebian.kit.schemas import StrictModel

MAX_BATCH = 10_000
MAX_PROPERTIES_BYTES = 8 * 1024
MAX_PROPERTIES_DEPTH = 4
MAX_PROPERTIES_KEYS = 100
EVENT_NAME_RE = re.compile(r"^[A-Za-z$][A-Za-z0-9_.:$-]{0,63}$")
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
# Money limit per event: ¥10 billion in 分; anything larger is a unit mistake (元 vs 分).
MAX_REVENUE = 1_000_000_000_000


def _depth(value: Any, level: int = 1) -> int:
    if isinstance(value, dict):
        return max([level, *(_depth(v, level + 1) for v in value.values())])
    if isinstance(value, list):
        return max([level, *(_depth(v, level + 1) for v in value)])
    return level - 1


class EventIn(StrictModel):
    event: str = Field(description="event name, e.g. page_view, signup, purchase, refund")
    event_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="idempotency key: the same id is stored once",
    )
    visitor_id: str | None = Field(default=None, max_length=128)
    user_id: str | None = Field(default=None, max_length=128, description="the brand's external_id")
    click_id: str | None = Field(
        default=None, max_length=64, description="lb_cid from the redirect"
    )
    ts: AwareDatetime | None = Field(default=None, description="when it happened (default: now)")
    properties: dict[str, Any] = Field(default_factory=dict)
    revenue: int | None = Field(default=None, ge=0, le=MAX_REVENUE, description="minor units (分)")
    currency: str | None = Field(default=None, description="ISO 4217, e.g. CNY")
    channel: str | None = Field(default=None, max_length=64)
    campaign_id: str | None = Field(default=None, max_length=40)
    link_id: str | None = Field(default=None, max_length=40)

    @field_validator("event")
    @classmethod
    def _event(cls, value: str) -> str:
        if not EVENT_NAME_RE.match(value):
            raise ValueError(
                "event names are 1–64 characters: letters, digits, _ . : $ -, starting with a letter or $"
            )
        return value

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        if value is not None and not CURRENCY_RE.match(value):
            raise ValueError("currency is an ISO 4217 code in capitals, e.g. CNY")
        return value

    @field_validator("properties")
    @classmethod
    def _properties(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > MAX_PROPERTIES_KEYS:
            raise ValueError(f"properties may hold at most {MAX_PROPERTIES_KEYS} keys")
        if _depth(value) > MAX_PROPERTIES_DEPTH:
            raise ValueError(f"properties may nest at most {MAX_PROPERTIES_DEPTH} levels deep")
        size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
        if size > MAX_PROPERTIES_BYTES:
            raise ValueError(f"properties are {size} bytes; at most {MAX_PROPERTIES_BYTES} allowed")
        return value


class Rejected(StrictModel):
    index: int
    errors: list[dict[str, str]]


class IngestResult(StrictModel):
    accepted: int
    rejected: list[Rejected] = Field(default_factory=list)


class IdentifyIn(StrictModel):
    visitor_id: str = Field(min_length=1, max_length=128)
    user_id: str = Field(min_length=1, max_length=128)
    ts: datetime | None = None
