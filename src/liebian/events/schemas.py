"""Event ingestion shapes. Validation happens in pydantic-core (Rust) over the raw body."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, Field

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
    """One event. Constraints are declared (not Python validators) so a batch of 10,000 is
    checked inside pydantic-core; the properties size and depth are checked when the row is
    serialized (see ``events.service``), where the JSON is produced anyway."""

    event: str = Field(
        pattern=EVENT_NAME_RE.pattern,
        description="event name, e.g. page_view, signup, purchase, refund: 1–64 of letters, digits, _ . : $ -",
    )
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
    properties: dict[str, Any] = Field(default_factory=dict, max_length=MAX_PROPERTIES_KEYS)
    revenue: int | None = Field(default=None, ge=0, le=MAX_REVENUE, description="minor units (分)")
    currency: str | None = Field(
        default=None, pattern=CURRENCY_RE.pattern, description="ISO 4217, e.g. CNY"
    )
    channel: str | None = Field(default=None, max_length=64)
    campaign_id: str | None = Field(default=None, max_length=40)
    link_id: str | None = Field(default=None, max_length=40)


def properties_problem(properties: dict[str, Any], serialized_size: int) -> str | None:
    """Why these properties are refused, or None. Depth is only walked when something nests."""
    if serialized_size > MAX_PROPERTIES_BYTES:
        return f"properties are {serialized_size} bytes; at most {MAX_PROPERTIES_BYTES} allowed"
    if (
        any(isinstance(v, (dict, list)) for v in properties.values())
        and _depth(properties) > MAX_PROPERTIES_DEPTH
    ):
        return f"properties may nest at most {MAX_PROPERTIES_DEPTH} levels deep"
    return None


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
