"""The journey definition: what a trigger, a step and an entry rule look like, checked
without the database (``service.check_definition`` adds what needs it).

A definition is JSON::

    {"trigger": {"type": "event", "event": "signup"},
     "entry": {"mode": "once"},                 # once | every_time | once_per_days (+ days)
     "exit": {<condition>} | null,              # segment language, checked before each step
     "goal_event": "purchase" | null,
     "steps": [{"id": "welcome", "type": "send", ...}, {"id": "d1", "type": "wait", ...}]}

Steps run in list order unless a step names its ``next`` (a step id, or null to end); a
``branch`` has ``then``/``else``, a ``split`` has ``paths`` with percentages, a
``wait_event`` has ``timeout_next``. Each step runs at most once per run (the durable key is
(run, step)), so the steps form a graph without cycles; a publish also refuses a step no path
reaches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from liebian.kit.errors import Invalid

TRIGGERS = (
    "event",
    "segment_entered",
    "segment_exited",
    "tag_added",
    "tag_removed",
    "date_attribute",
    "inactivity",
    "manual",
)
ENTRY_MODES = ("once", "every_time", "once_per_days")
WAITS = ("wait", "wait_event")
FLOW = ("branch", "split")
ACTIONS = (
    "send",
    "add_tag",
    "remove_tag",
    "set_attribute",
    "grant_reward",
    "enrol_journey",
    "enrol_campaign",
    "webhook",
    "task",
)
STEP_TYPES = WAITS + FLOW + ACTIONS
# Steps whose effect is outside the database: done between the claim and the mark.
EXTERNAL = frozenset({"send", "webhook"})
MAX_STEPS = 100
MAX_WAIT = timedelta(days=400)
_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_EVENT = re.compile(r"^[A-Za-z0-9_.$:-]{1,100}$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
END = "__end__"


def bad(path: str, message: str, code: str = "invalid_journey") -> Invalid:
    return Invalid(f"{path}: {message}", code=code, details={"field": path})


def _obj(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad(path, "must be an object")
    return value


def _keys(obj: dict[str, Any], path: str, allowed: set[str]) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        raise bad(f"{path}.{extra[0]}", f"unknown field; allowed: {', '.join(sorted(allowed))}")


def _str(
    obj: dict[str, Any],
    key: str,
    path: str,
    *,
    required: bool = True,
    pattern: re.Pattern[str] | None = None,
    max_len: int = 200,
) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise bad(f"{path}.{key}", "is required")
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise bad(f"{path}.{key}", f"must be a text of 1–{max_len} characters")
    if pattern is not None and not pattern.match(value):
        raise bad(f"{path}.{key}", "has characters that are not allowed")
    return value


def _int(
    obj: dict[str, Any],
    key: str,
    path: str,
    low: int,
    high: int,
    *,
    required: bool = True,
    default: int = 0,
) -> int:
    value = obj.get(key)
    if value is None and not required:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise bad(f"{path}.{key}", f"must be a whole number from {low} to {high}")
    return value


def duration(value: Any, path: str) -> timedelta:
    obj = _obj(value, path)
    _keys(obj, path, {"days", "hours", "minutes", "seconds"})
    if not obj:
        raise bad(path, "give days, hours, minutes or seconds")
    total = timedelta(
        days=_int(obj, "days", path, 0, 400, required=False),
        hours=_int(obj, "hours", path, 0, 10_000, required=False),
        minutes=_int(obj, "minutes", path, 0, 100_000, required=False),
        seconds=_int(obj, "seconds", path, 0, 1_000_000, required=False),
    )
    if total > MAX_WAIT:
        raise bad(path, "a wait may last at most 400 days")
    return total


def check_trigger(value: Any) -> dict[str, Any]:
    path = "trigger"
    obj = _obj(value, path)
    kind = obj.get("type")
    if kind not in TRIGGERS:
        raise bad(f"{path}.type", f"must be one of {', '.join(TRIGGERS)}")
    if kind == "event":
        _keys(obj, path, {"type", "event", "where"})
        _str(obj, "event", path, pattern=_EVENT, max_len=100)
        where = obj.get("where")
        if where is not None:
            where = _obj(where, f"{path}.where")
            for k, v in where.items():
                if not isinstance(v, str | int | float | bool):
                    raise bad(f"{path}.where.{k}", "property filters compare to plain values")
    elif kind in ("segment_entered", "segment_exited"):
        _keys(obj, path, {"type", "segment_id"})
        _str(obj, "segment_id", path, max_len=40)
    elif kind in ("tag_added", "tag_removed"):
        _keys(obj, path, {"type", "tag_id"})
        _str(obj, "tag_id", path, max_len=40)
    elif kind == "date_attribute":
        _keys(obj, path, {"type", "attribute", "offset_days", "at", "yearly"})
        _str(obj, "attribute", path, max_len=64)
        _int(obj, "offset_days", path, -366, 3660, required=False)
        at = _str(obj, "at", path, required=False, pattern=_HHMM, max_len=5)
        del at
        if "yearly" in obj and not isinstance(obj["yearly"], bool):
            raise bad(f"{path}.yearly", "must be true or false")
    elif kind == "inactivity":
        _keys(obj, path, {"type", "event", "days"})
        _str(obj, "event", path, pattern=_EVENT, max_len=100)
        _int(obj, "days", path, 1, 3650)
    elif kind in ("community_joined", "community_left", "screening_answered"):
        _keys(obj, path, {"type", "community_id"})
        _str(obj, "community_id", path, required=False, max_len=40)
    else:
        _keys(obj, path, {"type"})
    return obj


def check_entry(value: Any) -> dict[str, Any]:
    if value is None:
        return {"mode": "once"}
    obj = _obj(value, "entry")
    _keys(obj, "entry", {"mode", "days"})
    if obj.get("mode") not in ENTRY_MODES:
        raise bad("entry.mode", f"must be one of {', '.join(ENTRY_MODES)}")
    if obj["mode"] == "once_per_days":
        _int(obj, "days", "entry", 1, 3650)
    elif "days" in obj:
        raise bad("entry.days", "only once_per_days takes days")
    return obj


@dataclass(frozen=True, slots=True)
class Checked:
    """A structurally valid definition and what the database checks still need."""

    definition: dict[str, Any]
    conditions: list[tuple[str, Any]]  # (path, condition) for segments' check_condition
    templates: list[tuple[str, str]]  # (path, template text)
    tag_ids: list[tuple[str, str]]
    segment_ids: list[tuple[str, str]]
    journey_ids: list[tuple[str, str]]
    campaign_ids: list[tuple[str, str]]
    # Paths of send steps with a campaign_id: their templates may print campaign.<field>.
    campaign_steps: set[str]
    urls: list[tuple[str, str]]
    attributes: list[tuple[str, str]]
    channel_ids: list[tuple[str, str]]


_STEP_FIELDS: dict[str, set[str]] = {
    "wait": {"duration", "until"},
    "wait_event": {"event", "timeout", "timeout_next"},
    "branch": {"condition", "then", "else"},
    "split": {"paths"},
    "send": {"channel_id", "content", "category", "campaign_id"},
    "add_tag": {"tag_ids"},
    "remove_tag": {"tag_ids"},
    "set_attribute": {"values"},
    "grant_reward": {"kind", "amount", "name", "campaign_id", "currency"},
    "enrol_journey": {"journey_id"},
    "enrol_campaign": {"campaign_id"},
    "webhook": {"url", "payload"},
    "task": {"title", "note", "assignee"},
}


def check_definition(value: Any, *, require_reachable: bool = False) -> Checked:
    """Structure of a whole definition; raises a 422 naming the first problem's path."""
    obj = _obj(value, "definition")
    _keys(obj, "definition", {"trigger", "entry", "exit", "goal_event", "steps"})
    trigger = check_trigger(obj.get("trigger"))
    entry = check_entry(obj.get("entry"))
    goal = obj.get("goal_event")
    if goal is not None:
        _str(obj, "goal_event", "definition", pattern=_EVENT, max_len=100)
    steps = obj.get("steps")
    if not isinstance(steps, list) or not steps:
        raise bad("steps", "add at least one step")
    if len(steps) > MAX_STEPS:
        raise bad("steps", f"at most {MAX_STEPS} steps")
    out = Checked(
        definition={
            "trigger": trigger,
            "entry": entry,
            "exit": obj.get("exit"),
            "goal_event": goal,
            "steps": steps,
        },
        conditions=[],
        templates=[],
        tag_ids=[],
        segment_ids=[],
        journey_ids=[],
        campaign_ids=[],
        campaign_steps=set(),
        urls=[],
        attributes=[],
        channel_ids=[],
    )
    if obj.get("exit") is not None:
        out.conditions.append(("exit", obj["exit"]))
    if trigger["type"] in ("segment_entered", "segment_exited"):
        out.segment_ids.append(("trigger.segment_id", trigger["segment_id"]))
    if trigger["type"] in ("tag_added", "tag_removed"):
        out.tag_ids.append(("trigger.tag_id", trigger["tag_id"]))
    if trigger["type"] == "date_attribute":
        out.attributes.append(("trigger.attribute", trigger["attribute"]))
    ids: list[str] = []
    for i, step in enumerate(steps):
        path = f"steps[{i}]"
        s = _obj(step, path)
        sid = _str(s, "id", path, pattern=_ID, max_len=40)
        assert sid is not None
        if sid in ids:
            raise bad(f"{path}.id", f"step id {sid!r} is used twice")
        ids.append(sid)
        kind = s.get("type")
        if kind not in STEP_TYPES:
            raise bad(f"{path}.type", f"must be one of {', '.join(STEP_TYPES)}")
        _keys(s, path, {"id", "type", "next", "label"} | _STEP_FIELDS[kind])
        _check_step(s, kind, path, out)
    graph = edges(steps)
    for sid, targets in graph.items():
        for target in targets:
            if target != END and target not in ids:
                i = ids.index(sid)
                raise bad(f"steps[{i}]", f"goes to step {target!r}, which does not exist")
    _check_acyclic(ids, graph)
    if require_reachable:
        seen = reachable(steps)
        for i, sid in enumerate(ids):
            if sid not in seen:
                raise bad(
                    f"steps[{i}]",
                    f"no path reaches step {sid!r}; link it from another step or remove it",
                    "unreachable_step",
                )
    return out


def _check_step(s: dict[str, Any], kind: str, path: str, out: Checked) -> None:
    if "next" in s and s["next"] is not None and not isinstance(s["next"], str):
        raise bad(f"{path}.next", "must be a step id or null (end)")
    if "label" in s:
        _str(s, "label", path, max_len=100, required=False)
    if kind == "wait":
        if ("duration" in s) == ("until" in s):
            raise bad(path, "a wait needs either duration or until")
        if "duration" in s:
            duration(s["duration"], f"{path}.duration")
        else:
            until_spec(s["until"], f"{path}.until")
    elif kind == "wait_event":
        _str(s, "event", path, pattern=_EVENT, max_len=100)
        duration(s.get("timeout"), f"{path}.timeout")
    elif kind == "branch":
        if "condition" not in s:
            raise bad(f"{path}.condition", "is required (a segment-language condition)")
        out.conditions.append((f"{path}.condition", s["condition"]))
    elif kind == "split":
        paths = s.get("paths")
        if not isinstance(paths, list) or not 2 <= len(paths) <= 10:
            raise bad(f"{path}.paths", "give 2–10 paths")
        total = 0
        for j, p in enumerate(paths):
            pp = _obj(p, f"{path}.paths[{j}]")
            _keys(pp, f"{path}.paths[{j}]", {"percent", "next", "name"})
            total += _int(pp, "percent", f"{path}.paths[{j}]", 1, 99)
        if total != 100:
            raise bad(f"{path}.paths", f"percentages add up to {total}, not 100")
    elif kind == "send":
        cid = _str(s, "channel_id", path, max_len=40)
        assert cid is not None
        out.channel_ids.append((f"{path}.channel_id", cid))
        if "campaign_id" in s:
            camp = _str(s, "campaign_id", path, max_len=40)
            assert camp is not None
            out.campaign_ids.append((f"{path}.campaign_id", camp))
            out.campaign_steps.add(path)
        content = _obj(s.get("content"), f"{path}.content")
        if not content:
            raise bad(f"{path}.content", 'give the message, e.g. {"text": "…"}')
        for key, text in content.items():
            if isinstance(text, str):
                out.templates.append((f"{path}.content.{key}", text))
        if s.get("category", "marketing") not in ("marketing", "transactional"):
            raise bad(f"{path}.category", "must be marketing or transactional")
    elif kind in ("add_tag", "remove_tag"):
        tags = s.get("tag_ids")
        if not isinstance(tags, list) or not tags or not all(isinstance(t, str) for t in tags):
            raise bad(f"{path}.tag_ids", "give one or more tag ids")
        out.tag_ids.extend((f"{path}.tag_ids[{j}]", t) for j, t in enumerate(tags))
    elif kind == "set_attribute":
        values = _obj(s.get("values"), f"{path}.values")
        if not values:
            raise bad(f"{path}.values", "give at least one attribute")
        out.attributes.extend((f"{path}.values.{k}", k) for k in values)
    elif kind == "grant_reward":
        from liebian.rewards.service import KINDS, MAX_AMOUNT

        if s.get("kind") not in KINDS:
            raise bad(f"{path}.kind", f"must be one of {', '.join(KINDS)}")
        _int(s, "amount", path, 1, MAX_AMOUNT)
        _str(s, "name", path, required=False, max_len=64)
    elif kind == "enrol_journey":
        jid = _str(s, "journey_id", path, max_len=40)
        assert jid is not None
        out.journey_ids.append((f"{path}.journey_id", jid))
    elif kind == "enrol_campaign":
        cid = _str(s, "campaign_id", path, max_len=40)
        assert cid is not None
        out.campaign_ids.append((f"{path}.campaign_id", cid))
    elif kind == "webhook":
        url = _str(s, "url", path, max_len=2000)
        assert url is not None
        out.urls.append((f"{path}.url", url))
        if "payload" in s:
            _obj(s["payload"], f"{path}.payload")
    elif kind == "task":
        title = _str(s, "title", path, max_len=200)
        assert title is not None
        out.templates.append((f"{path}.title", title))
        if s.get("note") is not None:
            _str(s, "note", path, max_len=2000)
            out.templates.append((f"{path}.note", s["note"]))


def until_spec(value: Any, path: str) -> tuple[time, tuple[int, ...]]:
    obj = _obj(value, path)
    _keys(obj, path, {"time", "weekdays"})
    hhmm = _str(obj, "time", path, pattern=_HHMM, max_len=5)
    assert hhmm is not None
    days = obj.get("weekdays", [1, 2, 3, 4, 5, 6, 7])
    if (
        not isinstance(days, list)
        or not days
        or not all(isinstance(d, int) and 1 <= d <= 7 for d in days)
    ):
        raise bad(f"{path}.weekdays", "give ISO weekdays 1 (Monday) … 7 (Sunday)")
    h, m = hhmm.split(":")
    return time(int(h), int(m)), tuple(sorted(set(days)))


def next_of(step: dict[str, Any], following: str | None) -> str:
    """Where a step goes by default: its ``next`` when given (null = end), else the next in
    the list."""
    if "next" in step:
        return step["next"] if step["next"] is not None else END
    return following if following is not None else END


def edges(steps: list[dict[str, Any]]) -> dict[str, list[str]]:
    graph: dict[str, list[str]] = {}
    for i, step in enumerate(steps):
        following = steps[i + 1]["id"] if i + 1 < len(steps) else None
        default = next_of(step, following)
        kind = step.get("type")
        if kind == "branch":
            targets = [_target(step, "then", following), _target(step, "else", following)]
        elif kind == "split":
            targets = [
                p["next"] if p.get("next") is not None else (END if "next" in p else default)
                for p in step.get("paths", [])
            ]
        elif kind == "wait_event":
            targets = [default, _target(step, "timeout_next", following)]
        else:
            targets = [default]
        graph[step["id"]] = targets
    return graph


def _target(step: dict[str, Any], key: str, following: str | None) -> str:
    if key in step:
        return step[key] if step[key] is not None else END
    return next_of(step, following)


def _check_acyclic(ids: list[str], graph: dict[str, list[str]]) -> None:
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in graph.get(node, []):
            if target == END:
                continue
            if state.get(target) == 1:
                loop = (
                    " → ".join([*trail[trail.index(target) :], node, target])
                    if target in trail
                    else f"{node} → {target}"
                )
                raise bad(
                    f"steps[{ids.index(node)}]",
                    f"the steps loop back ({loop}); each step runs once per person, so a"
                    " journey cannot return to an earlier step — add the steps again instead",
                    "journey_loop",
                )
            if state.get(target) is None:
                visit(target, [*trail, node])
        state[node] = 2

    for sid in ids:
        if state.get(sid) is None:
            visit(sid, [])


def reachable(steps: list[dict[str, Any]]) -> set[str]:
    graph = edges(steps)
    seen: set[str] = set()
    stack = [steps[0]["id"]]
    while stack:
        sid = stack.pop()
        if sid in seen or sid == END:
            continue
        seen.add(sid)
        stack.extend(graph.get(sid, []))
    return seen


def wait_until(now: datetime, at: time, weekdays: tuple[int, ...], zone: str) -> datetime:
    """The first moment ≥ now that is ``at`` local time on an allowed weekday."""
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    for days in range(0, 8):
        day = (local + timedelta(days=days)).date()
        candidate = datetime.combine(day, at, tzinfo=tz)
        if candidate >= local and candidate.isoweekday() in weekdays:
            return candidate.astimezone(now.tzinfo)
    raise AssertionError("a weekday within 8 days always exists")


def split_pick(run_id: str, step_id: str, paths: list[dict[str, Any]]) -> int:
    """A stable pseudo-random path for a run: the same run always takes the same path."""
    import hashlib

    digest = hashlib.blake2b(f"{run_id}:{step_id}".encode(), digest_size=8).digest()
    point = int.from_bytes(digest, "big") % 100
    acc = 0
    for i, p in enumerate(paths):
        acc += int(p["percent"])
        if point < acc:
            return i
    return len(paths) - 1


def step_map(definition: dict[str, Any]) -> dict[str, tuple[dict[str, Any], str | None]]:
    """step id → (step, the id of the step after it in the list)."""
    steps = definition["steps"]
    return {
        s["id"]: (s, steps[i + 1]["id"] if i + 1 < len(steps) else None)
        for i, s in enumerate(steps)
    }
