"""The one condition language: JSON in, a typed tree out.

Every node is an object with a ``type``. Groups: ``and`` / ``or`` (``conditions``: a list) and
``not`` (``condition``). Leaves:

- ``attribute``: a built-in contact attribute (``orders_count``, ``last_seen_at``, …) or a custom
  one (``custom.<key>``) compared with ``op`` (eq, neq, lt, lte, gt, gte, between, in, not_in,
  contains, is_set, is_not_set, before, after, within_last_days);
- ``tags``: ``match`` any / all / none of ``tags`` (tag ids);
- ``event``: behaviour over the event store: ``event`` (name), optional ``where`` (the
  analytics filter language over columns and ``properties.<key>``), optional ``window``
  (``{"last_days": N}`` or ``{"from": …, "to": …}``), and a ``measure`` (count, sum_revenue,
  avg_revenue) compared with ``op``/``value`` — or ``did: true|false`` as the short form;
- ``event_time``: ``which`` first/last time the event happened, ``op`` before / after /
  within_last_days;
- ``campaign``: ``campaign_id`` (optional: any campaign) and ``status`` joined /
  invited (at least ``min`` qualified invites) / group_succeeded;
- ``segment``: member (``in``: true, default) or not (``in``: false) of another segment;
- ``channel``: ``which`` first / last touch channel ``in`` a list;
- ``community``: membership in a community (``community_id``, or null: any), optionally one
  ``group_id`` and one ``tier``: ``status`` joined (in a group now) / routed (given a group,
  not confirmed in it) / left (left or removed) / any, optionally ``within_last_days`` of
  that status's time (joined_at, routed_at, left_at; routed_at for any).

``validate`` turns the JSON into the dataclasses below and raises ``ConditionInvalid`` (422)
naming the JSON path of the bad node and what to put there. Nothing here touches a database:
checks against stored data (custom attribute keys, tags, segments, cycles) live in
``references``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

from liebian.kit.errors import Invalid

MAX_DEPTH = 10
MAX_LIST = 1000

AttrType = Literal["string", "number", "datetime", "date", "bool"]

# Built-in attributes: the columns of ``contacts`` a condition may name, with their type.
BUILTIN_ATTRIBUTES: dict[str, AttrType] = {
    "external_id": "string",
    "created_at": "datetime",
    "first_seen_at": "datetime",
    "last_seen_at": "datetime",
    "first_channel": "string",
    "last_channel": "string",
    "source_campaign_id": "string",
    "referrer_contact_id": "string",
    "orders_count": "number",
    "gmv_cents": "number",
    "last_order_at": "datetime",
    "invites_made": "number",
    "invites_qualified": "number",
    "rfm_class": "string",
}
CUSTOM_PREFIX = "custom."
_CUSTOM_KEY = re.compile(r"^[A-Za-z0-9_\-\u4e00-\u9fff]{1,64}$")

# Which ops apply to which attribute type.
OPS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "string": ("eq", "neq", "in", "not_in", "contains", "is_set", "is_not_set"),
    "number": (
        "eq",
        "neq",
        "lt",
        "lte",
        "gt",
        "gte",
        "between",
        "in",
        "not_in",
        "is_set",
        "is_not_set",
    ),
    "datetime": ("before", "after", "between", "within_last_days", "is_set", "is_not_set"),
    "date": ("eq", "neq", "before", "after", "between", "within_last_days", "is_set", "is_not_set"),
    "bool": ("eq", "neq", "is_set", "is_not_set"),
}
ATTRIBUTE_OPS = tuple(dict.fromkeys(op for ops in OPS_BY_TYPE.values() for op in ops))
MEASURES = ("count", "sum_revenue", "avg_revenue")
MEASURE_OPS = ("eq", "neq", "lt", "lte", "gt", "gte", "between")
EVENT_TIME_OPS = ("before", "after", "within_last_days")
CAMPAIGN_STATUSES = ("joined", "invited", "group_succeeded")
COMMUNITY_STATUSES = ("joined", "routed", "left", "any")
# The events communities write when a membership changes (communities/events.py): the keeper
# re-evaluates community conditions for the people in them.
COMMUNITY_EVENTS = ("group_routed", "group_joined", "group_left")
TAG_MATCHES = ("any", "all", "none")
NODE_TYPES = (
    "and",
    "or",
    "not",
    "attribute",
    "tags",
    "event",
    "event_time",
    "campaign",
    "segment",
    "channel",
    "community",
)
_EVENT_NAME = re.compile(r"^[\w.$:\-]{1,64}$")
_PREFIXED_ID = re.compile(r"^[a-z]+_[0-9A-Za-z]{1,40}$")


class ConditionInvalid(Invalid):
    """A condition that cannot be evaluated: ``details.path`` is the JSON path of the node."""

    code = "invalid_condition"

    def __init__(self, path: str, message: str, *, code: str | None = None) -> None:
        super().__init__(f"{path}: {message}", code=code, details={"path": path})
        self.path = path


# -- the typed tree -------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    path: str = field(compare=False, repr=False)


@dataclass(frozen=True)
class And(Node):
    items: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class Or(Node):
    items: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class Not(Node):
    item: Condition = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Attribute(Node):
    attribute: str = ""  # a built-in name, or "custom.<key>"
    op: str = "eq"
    value: Any = None
    type: AttrType = "string"
    # False for a custom attribute whose stored type is not known yet: its op and value were
    # only checked loosely, and ``bind_types`` must check them against the definition.
    typed: bool = True

    @property
    def custom_key(self) -> str | None:
        return (
            self.attribute[len(CUSTOM_PREFIX) :]
            if self.attribute.startswith(CUSTOM_PREFIX)
            else None
        )


@dataclass(frozen=True)
class Tags(Node):
    match: str = "any"
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Window:
    last_days: int | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class Event(Node):
    event: str = ""
    where: dict[str, Any] | None = None
    window: Window | None = None
    measure: str = "count"
    op: str = "gte"
    value: Any = 1  # a number, or [low, high] for between


@dataclass(frozen=True)
class EventTime(Node):
    event: str = ""
    where: dict[str, Any] | None = None
    which: str = "first"
    op: str = "before"
    value: Any = None  # datetime, or days for within_last_days


@dataclass(frozen=True)
class Campaign(Node):
    campaign_id: str | None = None
    status: str = "joined"
    min: int = 1


@dataclass(frozen=True)
class SegmentRef(Node):
    segment_id: str = ""
    member: bool = True


@dataclass(frozen=True)
class Channel(Node):
    which: str = "first"
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Community(Node):
    community_id: str | None = None
    group_id: str | None = None
    tier: str | None = None
    status: str = "joined"
    within_last_days: int | None = None


Condition = (
    And
    | Or
    | Not
    | Attribute
    | Tags
    | Event
    | EventTime
    | Campaign
    | SegmentRef
    | Channel
    | Community
)
STATE_LEAVES = (Attribute, Tags, Campaign, SegmentRef, Channel, Community)
BEHAVIOUR_LEAVES = (Event, EventTime)


def walk(node: Condition) -> Iterator[Condition]:
    yield node
    if isinstance(node, And | Or):
        for item in node.items:
            yield from walk(item)
    elif isinstance(node, Not):
        yield from walk(node.item)


def referenced_segments(node: Condition) -> set[str]:
    return {n.segment_id for n in walk(node) if isinstance(n, SegmentRef)}


def referenced_events(node: Condition) -> set[str]:
    return {n.event for n in walk(node) if isinstance(n, Event | EventTime)}


def watched_events(node: Condition) -> set[str]:
    """The event names whose arrival may change who matches: the behaviour leaves' events,
    and the membership events of communities when a community condition is present."""
    names = referenced_events(node)
    if any(isinstance(n, Community) for n in walk(node)):
        names |= set(COMMUNITY_EVENTS)
    return names


def referenced_communities(node: Condition) -> list[Community]:
    return [n for n in walk(node) if isinstance(n, Community)]


def referenced_tags(node: Condition) -> set[str]:
    return {t for n in walk(node) if isinstance(n, Tags) for t in n.tags}


def custom_keys(node: Condition) -> set[str]:
    return {k for n in walk(node) if isinstance(n, Attribute) and (k := n.custom_key)}


def has_behaviour(node: Condition) -> bool:
    return any(isinstance(n, BEHAVIOUR_LEAVES) for n in walk(node))


# -- validation -----------------------------------------------------------------------------


def validate(data: Any) -> Condition:
    """JSON (already parsed) → typed tree, or ``ConditionInvalid`` naming the path."""
    return _node(data, "$", 1)


def _expect_keys(obj: dict[str, Any], path: str, allowed: set[str]) -> None:
    extra = sorted(set(obj) - allowed - {"type"})
    if extra:
        raise ConditionInvalid(
            f"{path}.{extra[0]}",
            f"unknown field {extra[0]!r} for a {obj.get('type')!r} condition; allowed: "
            + ", ".join(sorted(allowed)),
            code="unknown_field",
        )


def _node(data: Any, path: str, depth: int) -> Condition:
    if depth > MAX_DEPTH:
        raise ConditionInvalid(
            path,
            f"conditions nest deeper than {MAX_DEPTH} levels; flatten the and/or groups",
            code="condition_too_deep",
        )
    if not isinstance(data, dict):
        raise ConditionInvalid(path, "expected an object with a 'type' field")
    kind = data.get("type")
    if kind not in NODE_TYPES:
        raise ConditionInvalid(
            f"{path}.type",
            f"unknown condition type {kind!r}; use one of {', '.join(NODE_TYPES)}",
            code="unknown_condition_type",
        )
    if kind in ("and", "or"):
        _expect_keys(data, path, {"conditions"})
        items = data.get("conditions")
        if not isinstance(items, list) or not items:
            raise ConditionInvalid(f"{path}.conditions", "give a non-empty list of conditions")
        if len(items) > 100:
            raise ConditionInvalid(f"{path}.conditions", "at most 100 conditions per group")
        children = tuple(
            _node(item, f"{path}.conditions[{i}]", depth + 1) for i, item in enumerate(items)
        )
        return And(path, children) if kind == "and" else Or(path, children)
    if kind == "not":
        _expect_keys(data, path, {"condition"})
        if "condition" not in data:
            raise ConditionInvalid(f"{path}.condition", "give the condition to negate")
        return Not(path, _node(data["condition"], f"{path}.condition", depth + 1))
    return _LEAVES[kind](data, path)


def _str(data: dict[str, Any], key: str, path: str, *, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConditionInvalid(f"{path}.{key}", f"{key} must be a non-empty text")
    return value


def _choice(
    data: dict[str, Any],
    key: str,
    path: str,
    options: tuple[str, ...],
    default: str | None = None,
    code: str = "unknown_operator",
) -> str:
    value = data.get(key, default)
    if value not in options:
        raise ConditionInvalid(
            f"{path}.{key}", f"unknown {key} {value!r}; use one of {', '.join(options)}", code=code
        )
    return str(value)


def _number(value: Any, path: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConditionInvalid(path, "expected a number")
    if value != value or value in (float("inf"), float("-inf")):
        raise ConditionInvalid(path, "expected a finite number")
    return value


def _days(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 3650:
        raise ConditionInvalid(path, "expected a whole number of days between 1 and 3650")
    return value


def parse_time(value: Any, path: str) -> datetime:
    """ISO 8601 time; a bare date means its midnight UTC; naive times are UTC."""
    if isinstance(value, str):
        try:
            if len(value) == 10:
                d = date.fromisoformat(value)
                return datetime(d.year, d.month, d.day, tzinfo=UTC)
            ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    raise ConditionInvalid(path, "expected an ISO 8601 time such as 2024-03-01T00:00:00Z")


def _date(value: Any, path: str) -> date:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value[:10]) if len(value) == 10 else date.fromisoformat(value)
        except ValueError:
            pass
    raise ConditionInvalid(path, "expected a date such as 2024-03-01")


def attribute_type(name: str) -> AttrType | None:
    return BUILTIN_ATTRIBUTES.get(name)


def _attribute(data: dict[str, Any], path: str) -> Attribute:
    _expect_keys(data, path, {"attribute", "op", "value", "value_type"})
    name = _str(data, "attribute", path)
    assert name is not None
    if name.startswith(CUSTOM_PREFIX):
        key = name[len(CUSTOM_PREFIX) :]
        if not _CUSTOM_KEY.match(key):
            raise ConditionInvalid(
                f"{path}.attribute",
                "custom.<key>: the key is 1–64 letters, digits, _ or -",
                code="unknown_attribute",
            )
        # The stored definition decides the type (bind_types); value_type lets a condition be
        # checked fully before it is bound (the builder sends it).
        if "value_type" not in data:
            op = data.get("op")
            if op not in ATTRIBUTE_OPS:
                raise ConditionInvalid(
                    f"{path}.op",
                    f"unknown operator {op!r}; use one of {', '.join(ATTRIBUTE_OPS)}",
                    code="unknown_operator",
                )
            return Attribute(path, name, str(op), data.get("value"), "string", typed=False)
        typ: AttrType = data["value_type"]
        if typ not in OPS_BY_TYPE:
            raise ConditionInvalid(f"{path}.value_type", "use string, number, date or bool")
    else:
        builtin = BUILTIN_ATTRIBUTES.get(name)
        if builtin is None:
            raise ConditionInvalid(
                f"{path}.attribute",
                f"unknown attribute {name!r}; use one of {', '.join(BUILTIN_ATTRIBUTES)}"
                " or custom.<key>",
                code="unknown_attribute",
            )
        typ = builtin
    return _bind_attribute(Attribute(path, name, str(data.get("op")), data.get("value"), typ), data)


def _bind_attribute(node: Attribute, data: dict[str, Any] | None = None) -> Attribute:
    """Check op and value against the attribute's type; returns the node with a parsed value."""
    path, typ, op = node.path, node.type, node.op
    ops = OPS_BY_TYPE[typ]
    if op not in ops:
        raise ConditionInvalid(
            f"{path}.op",
            f"operator {op!r} does not apply to {typ} attribute {node.attribute!r}; use one of "
            + ", ".join(ops),
            code="unknown_operator",
        )
    raw = node.value
    vpath = f"{path}.value"
    value: Any
    if op in ("is_set", "is_not_set"):
        value = None
    elif op == "within_last_days":
        value = _days(raw, vpath)
    elif op in ("in", "not_in"):
        if not isinstance(raw, list) or not raw or len(raw) > MAX_LIST:
            raise ConditionInvalid(vpath, f"give a list of 1–{MAX_LIST} values")
        value = tuple(_scalar(typ, v, f"{vpath}[{i}]") for i, v in enumerate(raw))
    elif op == "between":
        if not isinstance(raw, list) or len(raw) != 2:
            raise ConditionInvalid(vpath, "between needs [low, high]")
        low, high = (_scalar(typ, v, f"{vpath}[{i}]") for i, v in enumerate(raw))
        if low > high:
            raise ConditionInvalid(vpath, "between needs low ≤ high")
        value = (low, high)
    elif op == "contains":
        if not isinstance(raw, str) or not raw:
            raise ConditionInvalid(vpath, "contains needs a non-empty text")
        value = raw
    else:
        value = _scalar(typ, raw, vpath)
    return Attribute(path, node.attribute, op, value, typ)


def _scalar(typ: str, raw: Any, path: str) -> Any:
    if typ == "number":
        return _number(raw, path)
    if typ == "bool":
        if not isinstance(raw, bool):
            raise ConditionInvalid(path, "expected true or false")
        return raw
    if typ == "datetime":
        return parse_time(raw, path)
    if typ == "date":
        return _date(raw, path)
    if not isinstance(raw, str):
        raise ConditionInvalid(path, "expected a text value")
    return raw


def rebind_custom(node: Attribute, typ: AttrType) -> Attribute:
    """The same custom-attribute node checked against its stored type."""
    raw = node.value if not node.typed else _raw(node.value)
    return _bind_attribute(Attribute(node.path, node.attribute, node.op, raw, typ))


def bind_types(node: Condition, types: dict[str, str]) -> Condition:
    """Give every custom attribute its stored type (``types``: key → type), checking op and
    value against it; an undefined key is refused with its path."""
    if isinstance(node, And | Or):
        return type(node)(node.path, tuple(bind_types(n, types) for n in node.items))
    if isinstance(node, Not):
        return Not(node.path, bind_types(node.item, types))
    if isinstance(node, Attribute) and (key := node.custom_key) is not None:
        typ = types.get(key)
        if typ is None:
            raise ConditionInvalid(
                f"{node.path}.attribute",
                f"no custom attribute {key!r} in this workspace; define it first"
                " (attribute definitions) or pick a defined one",
                code="unknown_attribute",
            )
        return rebind_custom(node, typ)  # type: ignore[arg-type]
    return node


def needs_types(node: Condition) -> bool:
    return any(isinstance(n, Attribute) and not n.typed for n in walk(node))


def _raw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_raw(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _tags(data: dict[str, Any], path: str) -> Tags:
    _expect_keys(data, path, {"match", "tags"})
    match = _choice(data, "match", path, TAG_MATCHES, "any")
    tags = data.get("tags")
    if not isinstance(tags, list) or not tags or len(tags) > 100:
        raise ConditionInvalid(f"{path}.tags", "give a list of 1–100 tag ids (tag_…)")
    for i, tag in enumerate(tags):
        if not isinstance(tag, str) or not _PREFIXED_ID.match(tag):
            raise ConditionInvalid(f"{path}.tags[{i}]", "expected a tag id such as tag_01J…")
    return Tags(path, match, tuple(dict.fromkeys(tags)))


def _event_name(data: dict[str, Any], path: str) -> str:
    name = data.get("event")
    if not isinstance(name, str) or not _EVENT_NAME.match(name):
        raise ConditionInvalid(
            f"{path}.event", "give the event name, such as purchase or click", code="unknown_event"
        )
    return name


def _where(data: dict[str, Any], path: str) -> dict[str, Any] | None:
    where = data.get("where")
    if where is None:
        return None
    if not isinstance(where, dict):
        raise ConditionInvalid(f"{path}.where", "expected an object of filters")
    from liebian.analytics.filters import _normalize  # the analytics filter language

    try:
        _normalize(where)
    except Invalid as exc:
        raise ConditionInvalid(f"{path}.where", exc.message, code="invalid_filter") from exc
    return where


def _window(data: dict[str, Any], path: str) -> Window | None:
    raw = data.get("window")
    if raw is None:
        return None
    wpath = f"{path}.window"
    if not isinstance(raw, dict):
        raise ConditionInvalid(wpath, 'use {"last_days": N} or {"from": …, "to": …}')
    extra = set(raw) - {"last_days", "from", "to"}
    if extra:
        raise ConditionInvalid(f"{wpath}.{sorted(extra)[0]}", "a window has last_days, or from/to")
    if "last_days" in raw:
        if "from" in raw or "to" in raw:
            raise ConditionInvalid(wpath, "give last_days or from/to, not both")
        return Window(last_days=_days(raw["last_days"], f"{wpath}.last_days"))
    start = parse_time(raw["from"], f"{wpath}.from") if raw.get("from") is not None else None
    end = parse_time(raw["to"], f"{wpath}.to") if raw.get("to") is not None else None
    if start is None and end is None:
        raise ConditionInvalid(wpath, 'use {"last_days": N} or {"from": …, "to": …}')
    if start and end and start >= end:
        raise ConditionInvalid(wpath, "from must be before to")
    return Window(start=start, end=end)


def _event(data: dict[str, Any], path: str) -> Event:
    _expect_keys(data, path, {"event", "where", "window", "did", "measure", "op", "value"})
    name = _event_name(data, path)
    where = _where(data, path)
    window = _window(data, path)
    if "did" in data:
        did = data["did"]
        if not isinstance(did, bool):
            raise ConditionInvalid(f"{path}.did", "did is true (did it) or false (did not)")
        if any(k in data for k in ("measure", "op", "value")):
            raise ConditionInvalid(f"{path}.did", "give did, or measure/op/value, not both")
        return Event(path, name, where, window, "count", "gte" if did else "eq", 1 if did else 0)
    measure = _choice(data, "measure", path, MEASURES, "count")
    op = _choice(data, "op", path, MEASURE_OPS, "gte")
    raw = data.get("value", 1 if measure == "count" else None)
    vpath = f"{path}.value"
    value: Any
    if op == "between":
        if not isinstance(raw, list) or len(raw) != 2:
            raise ConditionInvalid(vpath, "between needs [low, high]")
        value = (_number(raw[0], f"{vpath}[0]"), _number(raw[1], f"{vpath}[1]"))
        if value[0] > value[1]:
            raise ConditionInvalid(vpath, "between needs low ≤ high")
    else:
        value = _number(raw, vpath)
    if measure == "count":
        for v in value if isinstance(value, tuple) else (value,):
            if v < 0 or int(v) != v:
                raise ConditionInvalid(vpath, "a count is a whole number ≥ 0")
    return Event(path, name, where, window, measure, op, value)


def _event_time(data: dict[str, Any], path: str) -> EventTime:
    _expect_keys(data, path, {"event", "where", "which", "op", "value"})
    name = _event_name(data, path)
    where = _where(data, path)
    which = _choice(data, "which", path, ("first", "last"), "first")
    op = _choice(data, "op", path, EVENT_TIME_OPS)
    vpath = f"{path}.value"
    value: Any
    value = (
        _days(data.get("value"), vpath)
        if op == "within_last_days"
        else parse_time(data.get("value"), vpath)
    )
    return EventTime(path, name, where, which, op, value)


def _campaign(data: dict[str, Any], path: str) -> Campaign:
    _expect_keys(data, path, {"campaign_id", "status", "min"})
    cid = data.get("campaign_id")
    if cid is not None and (not isinstance(cid, str) or not _PREFIXED_ID.match(cid)):
        raise ConditionInvalid(f"{path}.campaign_id", "expected a campaign id (cmp_…) or null")
    status = _choice(data, "status", path, CAMPAIGN_STATUSES, "joined")
    minimum = data.get("min", 1)
    if isinstance(minimum, bool) or not isinstance(minimum, int) or not 1 <= minimum <= 100_000:
        raise ConditionInvalid(f"{path}.min", "min is a whole number ≥ 1")
    return Campaign(path, cid, status, minimum)


def _segment(data: dict[str, Any], path: str) -> SegmentRef:
    _expect_keys(data, path, {"segment_id", "in"})
    sid = data.get("segment_id")
    if not isinstance(sid, str) or not sid.startswith("seg_"):
        raise ConditionInvalid(f"{path}.segment_id", "expected a segment id (seg_…)")
    member = data.get("in", True)
    if not isinstance(member, bool):
        raise ConditionInvalid(f"{path}.in", "in is true (member) or false (not a member)")
    return SegmentRef(path, sid, member)


def _channel(data: dict[str, Any], path: str) -> Channel:
    _expect_keys(data, path, {"which", "in"})
    which = _choice(data, "which", path, ("first", "last"), "first")
    values = data.get("in")
    if (
        not isinstance(values, list)
        or not values
        or len(values) > MAX_LIST
        or not all(isinstance(v, str) and v for v in values)
    ):
        raise ConditionInvalid(f"{path}.in", "give a list of channel names")
    return Channel(path, which, tuple(dict.fromkeys(values)))


def _community(data: dict[str, Any], path: str) -> Community:
    _expect_keys(data, path, {"community_id", "group_id", "tier", "status", "within_last_days"})
    cid = data.get("community_id")
    if cid is not None and (not isinstance(cid, str) or not _PREFIXED_ID.match(cid)):
        raise ConditionInvalid(
            f"{path}.community_id", "expected a community id (cmy_…), or null for any community"
        )
    gid = data.get("group_id")
    if gid is not None and (not isinstance(gid, str) or not _PREFIXED_ID.match(gid)):
        raise ConditionInvalid(f"{path}.group_id", "expected a group id (cgp_…) or leave it out")
    tier = data.get("tier")
    if tier is not None and (not isinstance(tier, str) or not tier.strip() or len(tier) > 32):
        raise ConditionInvalid(f"{path}.tier", "expected a tier key of the community")
    if (gid is not None or tier is not None) and cid is None:
        field_name = "group_id" if gid is not None else "tier"
        raise ConditionInvalid(
            f"{path}.community_id",
            f"{field_name} belongs to one community: give its community_id too",
        )
    status = _choice(data, "status", path, COMMUNITY_STATUSES, "joined")
    days = data.get("within_last_days")
    if days is not None:
        days = _days(days, f"{path}.within_last_days")
    return Community(path, cid, gid, tier, status, days)


_LEAVES: dict[str, Any] = {
    "attribute": _attribute,
    "tags": _tags,
    "event": _event,
    "event_time": _event_time,
    "campaign": _campaign,
    "segment": _segment,
    "channel": _channel,
    "community": _community,
}
