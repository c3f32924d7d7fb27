"""Event ingestion: validate, spool, acknowledge. The flusher loads the spool in batches.

An accepted event (2xx) is already in the spool file when the reply leaves, so a crash after
the acknowledgement loses nothing; the spool's segment bookkeeping and event_id dedupe make the
replay after a crash store every event once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError

from liebian.events.schemas import MAX_BATCH, EventIn, IngestResult, Rejected
from liebian.events.spool import Spool
from liebian.events.store.base import Alias, EventStore
from liebian.kit.errors import Invalid, TooLarge
from liebian.kit.ids import new_id

# Clocks on phones drift; a few minutes ahead is normal, an hour ahead is a bug in the sender.
MAX_FUTURE_SKEW = timedelta(minutes=10)
DEFAULT_CURRENCY = "CNY"

_one = TypeAdapter(EventIn)
_many = TypeAdapter(list[EventIn])

ConversionHook = Callable[[str, Sequence[EventIn]], None]


@dataclass(frozen=True)
class Accepted:
    events: list[EventIn]
    result: IngestResult


def parse_body(raw: bytes) -> tuple[list[Any], bool]:
    """The body is one event object, a JSON array, or {"events": [...]}.
    Returns the items and whether the caller sent a batch."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(f"body is not valid JSON: {exc}", code="malformed_json") from exc
    if isinstance(body, dict) and set(body) == {"events"}:
        body = body["events"]
    if isinstance(body, dict):
        return [body], False
    if not isinstance(body, list):
        raise Invalid('send an event object, a JSON array of events, or {"events": [...]}')
    if not body:
        raise Invalid("the batch is empty")
    if len(body) > MAX_BATCH:
        raise TooLarge(
            f"a batch holds at most {MAX_BATCH} events; got {len(body)}: split it up",
            code="batch_too_large",
        )
    return body, True


def _errors(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "(event)", "problem": err["msg"]}
        for err in exc.errors()
    ]


def validate_items(
    items: list[Any], now: datetime
) -> tuple[list[tuple[int, EventIn]], list[Rejected]]:
    try:
        # Fast path: the whole batch in one pass through pydantic-core.
        parsed = list(enumerate(_many.validate_python(items)))
        rejected: list[Rejected] = []
    except ValidationError:
        parsed, rejected = [], []
        for index, item in enumerate(items):
            try:
                parsed.append((index, _one.validate_python(item)))
            except ValidationError as exc:
                rejected.append(Rejected(index=index, errors=_errors(exc)))
    good: list[tuple[int, EventIn]] = []
    horizon = now + MAX_FUTURE_SKEW
    for index, event in parsed:
        if event.ts is not None and event.ts > horizon:
            rejected.append(
                Rejected(
                    index=index,
                    errors=[
                        {
                            "field": "ts",
                            "problem": f"is in the future (more than {MAX_FUTURE_SKEW} ahead of the server clock)",
                        }
                    ],
                )
            )
        elif (
            event.revenue is not None
            and event.revenue > 0
            and event.user_id is None
            and event.visitor_id is None
        ):
            rejected.append(
                Rejected(
                    index=index,
                    errors=[
                        {
                            "field": "user_id",
                            "problem": "revenue needs a user_id or visitor_id to belong to",
                        }
                    ],
                )
            )
        else:
            good.append((index, event))
    rejected.sort(key=lambda r: r.index)
    return good, rejected


def to_line(
    workspace_id: str,
    event: EventIn,
    now: datetime,
    received: str,
    context: dict[str, Any] | None = None,
) -> str:
    """One spool line. ``context`` adds what the server saw (platform, ip_hash, …) for beacons."""
    ts = (event.ts or now).astimezone(now.tzinfo)
    record = {
        "workspace_id": workspace_id,
        "event_id": event.event_id or new_id("evt"),
        "event": event.event,
        "ts": ts.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
        "received_at": received,
        "visitor_id": event.visitor_id,
        "user_id": event.user_id,
        "click_id": event.click_id,
        "link_id": event.link_id,
        "channel": event.channel,
        "campaign_id": event.campaign_id,
        "revenue": event.revenue,
        "currency": (event.currency or DEFAULT_CURRENCY) if event.revenue is not None else None,
        "properties": json.dumps(event.properties, ensure_ascii=False, separators=(",", ":"))
        if event.properties
        else None,
    }
    if context:
        record.update(context)
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def ingest(
    *,
    workspace_id: str,
    raw: bytes,
    spool: Spool,
    store: EventStore,
    now: datetime,
    hooks: Sequence[ConversionHook] = (),
) -> Accepted:
    items, is_batch = parse_body(raw)
    good, rejected = validate_items(items, now)
    if not good:
        if not is_batch:
            raise Invalid(
                "the event is not valid: "
                + "; ".join(f"{e['field']}: {e['problem']}" for e in rejected[0].errors),
                code="invalid_event",
                details=rejected[0].errors,
            )
        raise Invalid(
            f"none of the {len(items)} events is valid",
            code="invalid_events",
            details=[r.model_dump() for r in rejected],
        )
    received = now.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    events = [event for _, event in good]
    payload = "\n".join(to_line(workspace_id, event, now, received) for event in events) + "\n"
    # One write for the whole batch: durable against a process crash once it returns.
    spool.append_line(payload.encode())
    aliases = [
        Alias(workspace_id, e.visitor_id, e.user_id, (e.ts or now).replace(tzinfo=None))
        for e in events
        if e.visitor_id and e.user_id
    ]
    if aliases:
        store.add_aliases(_latest_per_visitor(aliases))
    for hook in hooks:
        hook(workspace_id, events)
    return Accepted(events, IngestResult(accepted=len(events), rejected=rejected))


def _latest_per_visitor(aliases: list[Alias]) -> list[Alias]:
    latest: dict[str, Alias] = {}
    for alias in aliases:
        latest[alias.visitor_id] = alias
    return list(latest.values())
