"""Event ingestion shapes. Validation happens in pydantic-core (Rust) over the raw body."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, NotRequired

from pydantic import AwareDatetime, ConfigDict, Field, TypeAdapter, with_config
from typing_extensions import TypedDict

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


# A TypedDict, not a model: pydantic-core validates a 10,000-event batch into plain dicts
# about 3x faster than into model instances, and the dicts go straight to orjson for the
# spool line (docs/decisions/0004). The same constraints, declared, so they run in Rust.
@with_config(ConfigDict(extra="forbid", str_strip_whitespace=True))
class EventIn(TypedDict):
    """One event. The properties' size and depth are checked when the line is serialized
    (see ``events.service``), where the JSON is produced anyway."""

    event: Annotated[
        str,
        Field(
            pattern=EVENT_NAME_RE.pattern,
            description="event name, e.g. page_view, signup, purchase, refund: 1–64 of letters, digits, _ . : $ -",
        ),
    ]
    event_id: NotRequired[
        Annotated[
            str | None,
            Field(
                min_length=1,
                max_length=128,
                description="idempotency key: the same id is stored once",
            ),
        ]
    ]
    visitor_id: NotRequired[Annotated[str | None, Field(max_length=128)]]
    user_id: NotRequired[
        Annotated[str | None, Field(max_length=128, description="the brand's external_id")]
    ]
    click_id: NotRequired[
        Annotated[str | None, Field(max_length=64, description="lb_cid from the redirect")]
    ]
    ts: NotRequired[
        Annotated[AwareDatetime | None, Field(description="when it happened (default: now)")]
    ]
    properties: NotRequired[Annotated[dict[str, Any], Field(max_length=MAX_PROPERTIES_KEYS)]]
    revenue: NotRequired[
        Annotated[int | None, Field(ge=0, le=MAX_REVENUE, description="minor units (分)")]
    ]
    currency: NotRequired[
        Annotated[str | None, Field(pattern=CURRENCY_RE.pattern, description="ISO 4217, e.g. CNY")]
    ]
    channel: NotRequired[Annotated[str | None, Field(max_length=64)]]
    campaign_id: NotRequired[Annotated[str | None, Field(max_length=40)]]
    link_id: NotRequired[Annotated[str | None, Field(max_length=40)]]


ONE_EVENT: TypeAdapter[EventIn] = TypeAdapter(EventIn)
EVENT_BATCH: TypeAdapter[list[EventIn]] = TypeAdapter(list[EventIn])


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
    event_ids: list[str] = Field(
        default_factory=list,
        description="the stored id of each accepted event, in the order sent: the client's "
        "own event_id, or the one the server gave (derived from ts, or from the "
        "Idempotency-Key header, so a resend gets the same ids and is stored once)",
    )
    rejected: list[Rejected] = Field(default_factory=list)


class IdentifyIn(StrictModel):
    visitor_id: str = Field(min_length=1, max_length=128)
    user_id: str = Field(min_length=1, max_length=128)
    ts: datetime | None = None
    aliases: dict[str, str] | None = Field(
        default=None,
        max_length=10,
        description="other ids of this person: click_id, wx_openid, wx_unionid, "
        "wecom_external_userid",
    )
    set_attributes: dict[str, Any] | None = Field(
        default=None,
        alias="$set",
        max_length=100,
        description="custom attributes to set on the contact (defined keys; null removes)",
    )
