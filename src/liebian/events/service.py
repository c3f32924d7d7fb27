"""Event ingestion: validate, spool, acknowledge. The flusher loads the spool in batches.

An accepted event (2xx) is already in the spool file when the reply leaves, so a crash after
the acknowledgement loses nothing; the spool's segment bookkeeping and event_id dedupe make the
replay after a crash store every event once.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any

import orjson
from pydantic import ValidationError

from liebian.events.hooks import HookQueue
from liebian.events.schemas import (
    CURRENCY_RE,
    EVENT_BATCH,
    EVENT_NAME_RE,
    MAX_BATCH,
    MAX_PROPERTIES_BYTES,
    MAX_PROPERTIES_DEPTH,
    MAX_PROPERTIES_KEYS,
    MAX_REVENUE,
    ONE_EVENT,
    EventIn,
    IngestResult,
    Rejected,
    properties_problem,
)
from liebian.events.spool import Spool, SpoolWriteError
from liebian.kit.errors import Invalid, TooLarge, Unavailable
from liebian.kit.ids import new_id

# Clocks on phones drift; a few minutes ahead is normal, an hour ahead is a bug in the sender.
MAX_FUTURE_SKEW = timedelta(minutes=10)
DEFAULT_CURRENCY = "CNY"
# Seconds a client is told to wait when the spool refuses a write (the flusher frees space
# within a tick or two once the store takes the backlog).
SPOOL_RETRY_AFTER = 5


@dataclass(frozen=True)
class Accepted:
    events: list[EventIn]
    result: IngestResult
    # The spool lines of ``events`` (written by ``commit``).
    line: bytes = b""

    def payload(self) -> bytes:
        """``result`` as JSON: what ``orjson.dumps(result.model_dump())`` gives, without
        pydantic's serializer walking a 10,000-id list (~0.15 µs an event)."""
        result = self.result
        return orjson.dumps(
            {
                "accepted": result.accepted,
                "event_ids": result.event_ids,
                "rejected": [r.model_dump() for r in result.rejected],
            }
        )


# 19 digits in a row: maybe an integer beyond what orjson reads as one (−2**63 … 2**64 − 1).
_LONG_NUMBER = re.compile(rb"\d{19}").search


def parse_body(raw: bytes) -> tuple[list[Any], bool]:
    """The body is one event object, a JSON array, or {"events": [...]}.
    Returns the items and whether the caller sent a batch."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"body is not valid JSON: {exc}", code="malformed_json") from exc
    if _LONG_NUMBER(raw):
        # orjson reads an integer beyond 64 bits as a float (2**70 → 1.18e21, which would be
        # stored as such); the standard library keeps it an int, refused like the batch path
        # refuses it (_unstorable). Same JSON otherwise: orjson accepted it.
        body = json.loads(raw)
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


def validate_items(items: list[Any]) -> tuple[list[tuple[int, EventIn]], list[Rejected]]:
    try:
        # Fast path: the whole batch in one pass through pydantic-core.
        return list(enumerate(EVENT_BATCH.validate_python(items))), []
    except ValidationError:
        parsed, rejected = [], []
        for index, item in enumerate(items):
            try:
                parsed.append((index, ONE_EVENT.validate_python(item)))
            except ValidationError as exc:
                rejected.append(Rejected(index=index, errors=_errors(exc)))
        return parsed, rejected


# The string fields of EventIn and their max_length (event_id also has min_length 1).
_STR_LIMITS = {
    "event_id": 128,
    "visitor_id": 128,
    "user_id": 128,
    "click_id": 64,
    "channel": 64,
    "campaign_id": 40,
    "link_id": 40,
}
# Keys whose null pydantic keeps as None.
_NULLABLE = frozenset([*_STR_LIMITS, "ts", "revenue", "currency"])
_EVENT_NAME = re.compile(EVENT_NAME_RE.pattern.removeprefix("^").removesuffix("$")).fullmatch
_CURRENCY = re.compile(CURRENCY_RE.pattern.removeprefix("^").removesuffix("$")).fullmatch
# RFC 3339 as most senders write it: what datetime.fromisoformat and pydantic read alike.
_PLAIN_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)").fullmatch
# orjson reads an integer beyond 64 bits as a float, pydantic as an int (refused when dumped).
_FLOAT_EXACT = float(2**63)


def _plain_batch(raw: bytes) -> list[EventIn] | None:
    """The events of a JSON array when every item is of the common shapes, or None.

    pydantic-core builds the validated dicts at ~2 µs an event of the request thread, in one
    call that holds the GIL for a whole 10,000-event batch (25-135 ms, during which the
    flusher's DuckDB cannot take it back: docs/benchmarks.md, session 8). orjson builds the
    same dicts in about half that, and this loop checks them at a fraction of the rest,
    releasing the GIL at the interpreter's switch interval. It accepts only what EVENT_BATCH
    accepts unchanged: known keys; strings within their limits and without the surrounding
    whitespace pydantic would strip (Python's isspace covers Rust's trim); an event name and
    a currency that match their patterns; ``revenue`` a plain int in range; ``ts`` as
    ``_PLAIN_TS`` (parsed to the same instant and offset); properties of at most
    MAX_PROPERTIES_KEYS flat values, keys unpadded, floats below 2**63 (orjson reads larger
    integers as floats). Anything else (lax coercions, padding, nested properties, a bad
    item) returns None, and the batch goes through pydantic-core from the bytes as before.
    """
    if raw.count(b"[") != 1:
        # A list inside: nested properties (or a bracket in a text), which the checks below
        # would refuse only after parsing the whole body. ~0.04 µs an event to find out.
        return None
    try:
        items = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(items) is not list or not 0 < len(items) <= MAX_BATCH:
        return None
    limits = _STR_LIMITS
    for item in items:
        if type(item) is not dict or "event" not in item:
            return None
        for key, value in item.items():
            if type(value) is str:
                limit = limits.get(key)
                if limit is not None:
                    # strip() returns the very string when there is nothing to strip.
                    if len(value) > limit or value.strip() is not value:
                        return None
                    if not value and key == "event_id":
                        return None
                elif key == "event":
                    if not _EVENT_NAME(value):
                        return None
                elif key == "ts":
                    if not _PLAIN_TS(value):
                        return None
                    try:
                        item["ts"] = datetime.fromisoformat(value)
                    except ValueError:
                        return None
                elif key != "currency" or not _CURRENCY(value):
                    return None
            elif value is None:
                if key not in _NULLABLE:
                    return None
            elif key == "properties":
                if type(value) is not dict or not _plain_properties(value):
                    return None
            elif key != "revenue" or type(value) is not int or not 0 <= value <= MAX_REVENUE:
                return None
    return items


def _plain_properties(properties: dict[str, Any]) -> bool:
    """Whether pydantic would keep these properties as orjson read them (see _plain_batch)."""
    if len(properties) > MAX_PROPERTIES_KEYS:
        return False
    for key, value in properties.items():
        if key.strip() is not key:
            return False
        kind = type(value)
        if kind is float:
            if not -_FLOAT_EXACT < value < _FLOAT_EXACT:
                return False
        elif kind is dict or kind is list:
            return False
    return True


def _parse_and_validate(raw: bytes) -> tuple[list[tuple[int, EventIn]], list[Rejected], int, bool]:
    """Parsed events, rejections, item count and whether it was a batch.

    A plain JSON array of events of the common shapes is parsed by orjson and checked by
    ``_plain_batch``; any other array is validated straight from the bytes by pydantic-core
    (parse and check in one pass); anything else, or a batch with a bad item, goes through
    orjson and item-by-item validation so each bad item is named.
    """
    if raw.lstrip()[:1] == b"[":
        events = _plain_batch(raw)
        if events is None:
            try:
                events = EVENT_BATCH.validate_json(raw)
            except ValidationError:
                events = None
        if events is not None:
            if not events:
                raise Invalid("the batch is empty")
            if len(events) > MAX_BATCH:
                raise TooLarge(
                    f"a batch holds at most {MAX_BATCH} events; got {len(events)}: split it up",
                    code="batch_too_large",
                )
            return list(enumerate(events)), [], len(events), True
    items, is_batch = parse_body(raw)
    parsed, rejected = validate_items(items)
    return parsed, rejected, len(items), is_batch


def _reject(index: int, field: str, problem: str) -> Rejected:
    return Rejected(index=index, errors=[{"field": field, "problem": problem}])


def _apply_rules(event: EventIn, now: datetime, horizon: datetime) -> tuple[str, str] | None:
    """Complete one validated event in place with the server's defaults, or name the rule it
    breaks as (field, problem): a future timestamp, revenue with nobody to credit.

    ``ts`` stays an aware datetime, dumped as RFC 3339 with its offset, which both stores turn
    into UTC when they load the line. Keys left out are NULL in the store."""
    ts = event.get("ts")
    client_ts = ts is not None
    if ts is None:
        event["ts"] = now
    elif ts > horizon:
        return "ts", f"is in the future (more than {MAX_FUTURE_SKEW} ahead of the server clock)"
    revenue = event.get("revenue")
    if revenue is not None:
        if event.get("user_id") is None and event.get("visitor_id") is None and revenue:
            return "user_id", "revenue needs a user_id or visitor_id to belong to"
        event["currency"] = event.get("currency") or DEFAULT_CURRENCY
    elif "currency" in event:
        event["currency"] = None
    if event.get("event_id") is None:
        # Given here, not later, so hooks (campaign conversions) see the stored id. An event
        # that carries its own ``ts`` gets an id derived from its content, so a client that
        # resends it after a timeout stores it once (and a purchase without ``order_id``, whose
        # order id is this id, pays once); without ``ts`` the server's clock makes every try a
        # new event, so a retrying client must send ``event_id``, ``ts`` or an
        # ``Idempotency-Key`` header (README; ``_keyed_ids``).
        event["event_id"] = _content_id(event) if client_ts else new_id("evt")
    if "properties" in event and not event["properties"]:
        del event["properties"]
    return None


def _content_id(event: EventIn) -> str:
    """``evh_`` + 128 bits of BLAKE2b over the event as sent (keys sorted): equal for a resend
    of the same event, different for any other. Per workspace, like every event id."""
    try:
        body = orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # refused with its reason when the line is dumped
        return new_id("evt")
    return "evh_" + hashlib.blake2b(body, digest_size=16).hexdigest()


def _unstorable(exc: orjson.JSONEncodeError) -> str:
    """What to fix when a validated event still cannot be written as a spool line."""
    if "64-bit" in str(exc):
        return "properties hold an integer beyond the 64-bit range; send it as a string"
    if "recursion" in str(exc).lower():
        return f"properties may nest at most {MAX_PROPERTIES_DEPTH} levels deep"
    return f"properties cannot be stored as JSON: {exc}"


def _received_at(now: datetime) -> str:
    return now.replace(tzinfo=None).isoformat(sep=" ")


def serialize(
    workspace_id: str,
    parsed: list[tuple[int, EventIn]],
    now: datetime,
    context: dict[str, Any] | None = None,
) -> tuple[list[EventIn], list[bytes], list[Rejected]]:
    """One spool line per valid event (single events, browser beacons), and the rule-level
    rejections (see ``_apply_rules``; oversized or deep properties).

    The validated dicts are completed in place (workspace, defaults) and dumped as they are.
    """
    now = now.astimezone(UTC)
    received_at = _received_at(now)
    horizon = now + MAX_FUTURE_SKEW
    events: list[EventIn] = []
    lines: list[bytes] = []
    rejected: list[Rejected] = []
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    for index, event in parsed:
        broken = _apply_rules(event, now, horizon)
        if broken is not None:
            rejected.append(_reject(index, *broken))
            continue
        record: dict[str, Any] = event  # type: ignore[assignment]
        record["workspace_id"] = workspace_id
        record["received_at"] = received_at
        if context:
            record.update(context)
        try:
            line = dumps(record, option=newline)
        except orjson.JSONEncodeError as exc:
            rejected.append(_reject(index, "properties", _unstorable(exc)))
            continue
        properties = event.get("properties")
        # The line bounds the properties' size, and it holds exactly two "{" and no "[" when
        # nothing nests (a brace inside a string only costs the exact check below): so the
        # properties are measured and walked alone only when they could break a limit.
        if properties and (
            len(line) > MAX_PROPERTIES_BYTES or line.count(b"{") + line.count(b"[") > 2
        ):
            problem = properties_problem(properties, len(dumps(properties)))
            if problem:
                rejected.append(_reject(index, "properties", problem))
                continue
        events.append(event)
        lines.append(line)
    return events, lines, rejected


def serialize_batch(
    workspace_id: str, parsed: list[tuple[int, EventIn]], now: datetime
) -> tuple[list[EventIn], bytes, list[Rejected]]:
    """The spool lines of a batch's valid events, and the rule-level rejections.

    Same lines as ``serialize`` (one NDJSON record per event, the same completed dicts), but
    made by ONE orjson call over the whole list, split into lines at the items' boundaries:
    one call per event, each allocating its own buffer and bytes object, cost ~2 µs of the
    request thread's GIL time per event, the whole list ~0.4.

    The rules run in one loop here rather than through ``_apply_rules`` per event, and the
    properties' limits are checked on that one dump when nothing in it can break them (see
    ``_items_within_limits``); only otherwise is each event's properties dumped on its own. An event
    without ``ts`` gets ``now`` as the text orjson writes for it: the same bytes in the line
    and the hooks line, without rendering the datetime once per event.
    """
    now = now.astimezone(UTC)
    horizon = now + MAX_FUTURE_SKEW
    stamp = orjson.dumps(now)[1:-1].decode()
    events: list[EventIn] = []
    rejected: list[Rejected] = []
    with_properties = 0
    for index, event in parsed:
        # _apply_rules, unrolled for the common shapes; same checks in the same order.
        ts = event.get("ts")
        if ts is None:
            event["ts"] = stamp  # type: ignore[typeddict-item]
        elif ts > horizon:
            rejected.append(
                _reject(
                    index,
                    "ts",
                    f"is in the future (more than {MAX_FUTURE_SKEW} ahead of the server clock)",
                )
            )
            continue
        if "revenue" in event or "currency" in event:
            revenue = event.get("revenue")
            if revenue is not None:
                if event.get("user_id") is None and event.get("visitor_id") is None and revenue:
                    rejected.append(
                        _reject(
                            index, "user_id", "revenue needs a user_id or visitor_id to belong to"
                        )
                    )
                    continue
                event["currency"] = event.get("currency") or DEFAULT_CURRENCY
            elif "currency" in event:
                event["currency"] = None
        if event.get("event_id") is None:
            event["event_id"] = _content_id(event) if ts is not None else new_id("evt")
        if "properties" in event:
            if event["properties"]:
                with_properties += 1
            else:
                del event["properties"]
        events.append(event)
    if not events:
        return events, b"", rejected
    received_at = _received_at(now)
    try:
        dump = orjson.dumps(events)
    except orjson.JSONEncodeError:
        pass
    else:
        items = _items_within_limits(dump, len(events), with_properties)
        if items is not None:
            return events, _joined_lines(workspace_id, received_at, items), rejected
    # Something may break a limit (or cannot be dumped): each event's properties on its own.
    events, late = _check_properties(parsed, {r.index for r in rejected})
    rejected = sorted(rejected + late, key=lambda r: r.index)
    lines = _event_lines(workspace_id, received_at, events) if events else b""
    return events, lines, rejected


def _items_within_limits(dump: bytes, count: int, with_properties: int) -> list[bytes] | None:
    """The items of ``dump`` (the list of ``count`` completed events, ``with_properties`` of
    them with non-empty properties) when none of their properties can break a limit, else None.

    Each event writes one "{", each non-empty properties one more, the list one "[": a dump
    holding no other "{" or "[" nests nothing anywhere, so no depth exceeds the limit (a
    brace inside a string only costs the exact check). Consecutive items meet at "},{", so
    with exactly ``count - 1`` of them (none inside a string) splitting there gives the items,
    and the properties are dumped inside their item exactly as on their own: when every item
    is within the size limit, so are they. None sends the batch through the exact check."""
    if dump.count(b"{") + dump.count(b"[") != 1 + count + with_properties:
        return None
    # dump[1:-2] drops the list's "[" and the last item's "}]".
    items = dump[1:-2].split(b"},{")
    if len(items) != count or max(map(len, items)) > MAX_PROPERTIES_BYTES:
        return None
    return items


def _joined_lines(workspace_id: str, received_at: str, items: list[bytes]) -> bytes:
    """The spool lines of a batch from its items as ``_items_within_limits`` split them:
    the first still opens with "{", none closes; each gets the server's fields and "}"."""
    server_fields = orjson.dumps({"workspace_id": workspace_id, "received_at": received_at})
    tail = b"," + server_fields[1:]  # ',"workspace_id":…,"received_at":…}'
    return (tail + b"\n{").join(items) + tail + b"\n"


def _check_properties(
    parsed: list[tuple[int, EventIn]], already: set[int]
) -> tuple[list[EventIn], list[Rejected]]:
    """The events (completed already) whose properties are within the limits, each measured
    on its own dump, and the rejections of the others; ``already``: indices rejected before."""
    events: list[EventIn] = []
    rejected: list[Rejected] = []
    dumps = orjson.dumps
    for index, event in parsed:
        if index in already:
            continue
        properties = event.get("properties")
        if properties:
            # A single "{" and no "[" means nothing nests, so depth needs no walk.
            try:
                blob = dumps(properties)
            except orjson.JSONEncodeError as exc:
                rejected.append(_reject(index, "properties", _unstorable(exc)))
                continue
            if len(blob) > MAX_PROPERTIES_BYTES or blob.count(b"{") + blob.count(b"[") > 1:
                problem = properties_problem(properties, len(blob))
                if problem:
                    rejected.append(_reject(index, "properties", problem))
                    continue
        events.append(event)
    return events, rejected


def _event_lines(workspace_id: str, received_at: str, events: list[EventIn]) -> bytes:
    """One NDJSON line per event, each ending with the workspace and receive time.

    orjson writes the list compactly as ``[{…},{…},…]``: consecutive items meet at ``},{``,
    which makes len(events) - 1 occurrences. When the whole dump holds no more than that
    (no such bytes inside a string or in a list of objects in the properties), every
    occurrence is a boundary, and replacing each closing brace there with the server's
    fields turns the list into lines. Otherwise, rarely, each event is dumped on its own.
    """
    server_fields = orjson.dumps({"workspace_id": workspace_id, "received_at": received_at})
    tail = b"," + server_fields[1:]  # ',"workspace_id":…,"received_at":…}'
    dump = orjson.dumps(events)
    if dump.count(b"},{") == len(events) - 1:
        # dump[1:-2] drops the list's "[" and the last item's "}]".
        return dump[1:-2].replace(b"},{", tail + b"\n{") + tail + b"\n"
    lines = []
    for event in events:
        record: dict[str, Any] = event  # type: ignore[assignment]
        record["workspace_id"] = workspace_id
        record["received_at"] = received_at
        lines.append(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
    return b"".join(lines)


IDEMPOTENCY_KEY_MAX = 128


def check_idempotency_key(value: str | None) -> str | None:
    """The ``Idempotency-Key`` header as given, or a 422 that says what a key may be."""
    if value is None:
        return None
    if not 1 <= len(value) <= IDEMPOTENCY_KEY_MAX or not value.isascii() or not value.isprintable():
        raise Invalid(
            f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters",
            code="invalid_idempotency_key",
            details=[{"field": "Idempotency-Key", "problem": "1-128 printable ASCII characters"}],
        )
    return value


def _keyed_ids(parsed: list[tuple[int, EventIn]], key: str) -> None:
    """Events without their own ``event_id`` get one derived from the request's idempotency
    key and their position in the body: a resend of the same body under the same key gives
    the same ids, so it is stored (and a purchase paid) once, whatever the server's clock."""
    prefix = key.encode() + b"\x00"
    for index, event in parsed:
        if event.get("event_id") is None:
            digest = hashlib.blake2b(prefix + str(index).encode(), digest_size=16).hexdigest()
            event["event_id"] = "evk_" + digest


def ingest(
    *,
    workspace_id: str,
    raw: bytes,
    spool: Spool,
    now: datetime,
    hooks: HookQueue | None = None,
    idempotency_key: str | None = None,
) -> Accepted:
    accepted = prepare(workspace_id=workspace_id, raw=raw, now=now, idempotency_key=idempotency_key)
    commit(spool, accepted.line, workspace_id, accepted.events, now, hooks)
    return accepted


def prepare(
    *, workspace_id: str, raw: bytes, now: datetime, idempotency_key: str | None = None
) -> Accepted:
    """Parse, check and complete a request's events, and make their spool lines; nothing is
    written. Raises Invalid or TooLarge when nothing of the request can be accepted. Pure:
    a large batch may run it in another process (events/ingest_pool.py)."""
    parsed, rejected, count, is_batch = _parse_and_validate(raw)
    if idempotency_key is not None:
        _keyed_ids(parsed, idempotency_key)
    if is_batch:
        events, line, late_rejects = serialize_batch(workspace_id, parsed, now)
    else:
        events, lines, late_rejects = serialize(workspace_id, parsed, now)
        line = b"".join(lines)
    if late_rejects:
        rejected = sorted(rejected + late_rejects, key=lambda r: r.index)
    if not events:
        if not is_batch:
            raise Invalid(
                "the event is not valid: "
                + "; ".join(f"{e['field']}: {e['problem']}" for e in rejected[0].errors),
                code="invalid_event",
                details=rejected[0].errors,
            )
        raise Invalid(
            f"none of the {count} events is valid",
            code="invalid_events",
            details=[r.model_dump() for r in rejected],
        )
    # Every accepted event has a str id (validated, or given by _apply_rules).
    ids: list[str] = list(map(itemgetter("event_id"), events))
    # Built without validation (the values are the server's own): validating a 10,000-item
    # id list would cost more than spooling the batch.
    result = IngestResult.model_construct(accepted=len(events), event_ids=ids, rejected=rejected)
    return Accepted(events, result, line)


def commit(
    spool: Spool,
    line: bytes,
    workspace_id: str,
    events: list[EventIn],
    now: datetime,
    hooks: HookQueue | None,
) -> None:
    """Write a request's prepared lines to the spool, and the ones among ``events`` that a
    hooks consumer wants to the hooks spool: both before the answer."""
    # One write for the whole request: durable against a process crash once it returns.
    spool_append(spool, line)
    if hooks is not None:
        # The events a consumer wants (conversions), to the hooks spool, before the answer:
        # the hooks worker applies them after it (events/hooks.py).
        hook_lines = hooks.lines(workspace_id, events, now)
        if hook_lines:
            spool_append(hooks.spool, hook_lines)
    # Events carrying both visitor_id and user_id tie the two together in the event store's
    # identity map when the flusher loads them (same transaction as the events), not here:
    # on the request path that write waited behind the flusher's lock (decision 0026).


def spool_append(spool: Spool, line: bytes) -> None:
    """Append, or refuse the request whole with a 503 when the spool cannot take it (disk
    full): nothing of it was kept, so the client must retry rather than count it as sent."""
    try:
        spool.append_line(line)
    except SpoolWriteError as exc:
        raise Unavailable(
            "events cannot be stored right now (the server's disk is full); nothing was"
            " stored, send them again shortly",
            retry_after=SPOOL_RETRY_AFTER,
        ) from exc
