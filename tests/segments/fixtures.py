"""A small random-but-seeded population, loaded into the OLTP database and an event store,
and a brute-force Python oracle of the condition language over the same data.

The oracle is written from the language's definition (docs/segments.md), not from the SQL:
it walks every contact and every event in plain Python.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from liebian.events.store import Alias, EventRow, EventStore
from liebian.segments import conditions as c

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
CHANNELS = ["wx_group", "moments", "douyin", ""]
EVENTS = ["visit", "purchase", "click"]
TAGS = [
    "tag_01AAAAAAAAAAAAAAAAAAAAAAAA",
    "tag_01BBBBBBBBBBBBBBBBBBBBBBBB",
    "tag_01CCCCCCCCCCCCCCCCCCCCCCCC",
]
CAMPAIGN = "cmp_01CAMPAIGNAAAAAAAAAAAAAAAA"
REF_SEGMENT = "seg_01REFERENCEDAAAAAAAAAAAAA"
COMMUNITY = "cmy_01COMMUNITYAAAAAAAAAAAAAA"
GROUPS = {"cgp_01GROUPAAAAAAAAAAAAAAAAAA": "a", "cgp_01GROUPBBBBBBBBBBBBBBBBBB": "b"}
MEMBER_STATUSES = ["routed", "joined", "joined", "left", "removed"]
CUSTOM_TYPES = {"city": "string", "age": "number", "vip": "bool", "birthday": "date"}


@dataclass
class Person:
    id: str
    ext: str
    attrs: dict[str, Any]
    custom: dict[str, Any]
    tags: set[str]
    live: bool = True


@dataclass
class World:
    ws: str
    people: list[Person] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)  # visitor → user
    participants: set[str] = field(default_factory=set)  # contact ids in CAMPAIGN
    invites: dict[str, int] = field(default_factory=dict)  # approved, valid, per referrer
    group_success: set[str] = field(default_factory=set)
    segment_rows: list[tuple[str, str]] = field(default_factory=list)  # (contact, source)
    # community_members rows: contact id (None: a visitor's scan), group, tier, status, and
    # routed_at / joined_at / left_at
    community: list[dict[str, Any]] = field(default_factory=list)


def _ts(rng: random.Random, days: int = 60) -> datetime:
    return NOW - timedelta(seconds=rng.randrange(days * 86400))


def build_world(ws: str, seed: int = 7, n: int = 14) -> World:
    rng = random.Random(seed)
    w = World(ws)
    for i in range(n):
        cid = f"ctc_01P{i:024d}"
        attrs = {
            "external_id": f"u{i}",
            "orders_count": rng.randrange(5),
            "gmv_cents": rng.choice([0, 990, 5000, 12000]),
            "last_seen_at": rng.choice([None, _ts(rng), _ts(rng, 10)]),
            "first_channel": rng.choice(["wx_group", "moments", "douyin", None]),
            "last_channel": rng.choice(["wx_group", "moments", None]),
            "rfm_class": rng.choice(["champion", "at_risk", None]),
        }
        custom: dict[str, Any] = {}
        if rng.random() < 0.6:
            custom["city"] = rng.choice(["上海", "北京", "Shanghai"])
        if rng.random() < 0.6:
            custom["age"] = float(rng.randrange(18, 50))
        if rng.random() < 0.5:
            custom["vip"] = rng.random() < 0.5
        if rng.random() < 0.5:
            custom["birthday"] = (NOW - timedelta(days=rng.randrange(40))).date()
        tags = {t for t in TAGS if rng.random() < 0.45}
        w.people.append(Person(cid, f"u{i}", attrs, custom, tags, live=i != n - 1))
        if rng.random() < 0.5:
            w.participants.add(cid)
        if rng.random() < 0.5:
            w.invites[cid] = rng.randrange(1, 4)
        if rng.random() < 0.3:
            w.group_success.add(cid)
        if rng.random() < 0.4:
            w.segment_rows.append((cid, "computed"))
        if rng.random() < 0.6:
            group = rng.choice(sorted(GROUPS))
            # every status occurs (a random pick missed "removed" with this seed)
            status = MEMBER_STATUSES[len(w.community) % len(MEMBER_STATUSES)]
            routed = _ts(rng, 30).replace(microsecond=0)
            joined = routed + timedelta(hours=1) if status != "routed" else None
            left = (
                joined + timedelta(days=rng.randrange(3)) + timedelta(hours=2)
                if joined is not None and status in ("left", "removed")
                else None
            )
            w.community.append(
                {
                    "contact_id": cid,
                    "group_id": group,
                    "tier": GROUPS[group],
                    "status": status,
                    "routed_at": routed,
                    "joined_at": joined,
                    "left_at": left,
                }
            )
    w.participants |= set(w.invites) | w.group_success
    # a visitor's scan (no contact yet) never matches, even under "not"
    w.community.append(
        {
            "contact_id": None,
            "group_id": sorted(GROUPS)[0],
            "tier": "a",
            "status": "joined",
            "routed_at": NOW - timedelta(days=1),
            "joined_at": NOW - timedelta(days=1),
            "left_at": None,
        }
    )
    w.segment_rows.append((w.people[0].id, "manual_add"))
    w.segment_rows.append((w.people[1].id, "manual_remove"))
    if (w.people[1].id, "computed") not in w.segment_rows:
        w.segment_rows.append((w.people[1].id, "computed"))
    k = 0
    for p in [*w.people, Person("none", "ghost", {}, {}, set())]:
        for _ in range(rng.randrange(7)):
            k += 1
            name = rng.choice(EVENTS)
            revenue = rng.choice([None, 0, 1990, 5000]) if name == "purchase" else None
            user: str | None = p.ext
            visitor = f"vis-{p.ext}"
            if p.ext == "u2" and rng.random() < 0.5:
                user = None  # before sign-up: counted through the alias
                visitor = "anon-u2"
            w.events.append(
                EventRow(
                    workspace_id=ws,
                    event_id=f"e{k}",
                    event=name,
                    ts=_ts(rng).replace(microsecond=0),
                    user_id=user,
                    visitor_id=visitor,
                    channel=rng.choice(CHANNELS) or None,
                    revenue=revenue,
                    properties={"plan": rng.choice(["pro", "basic"]), "amount": rng.randrange(300)},
                )
            )
    ext_of = {p.id: p.ext for p in w.people}
    for n, row in enumerate(w.community):
        if row["contact_id"] is None or row["joined_at"] is None:
            continue
        w.events.append(
            EventRow(
                workspace_id=ws,
                event_id=f"cm{n}",
                event="group_joined",
                ts=row["joined_at"],
                user_id=ext_of[row["contact_id"]],
                properties={
                    "community_id": COMMUNITY,
                    "group_id": row["group_id"],
                    "tier": row["tier"],
                },
            )
        )
    # an anonymous visitor nobody identified: never a contact
    w.events.append(
        EventRow(workspace_id=ws, event_id="anon1", event="visit", ts=NOW, visitor_id="stranger")
    )
    w.aliases["anon-u2"] = "u2"
    return w


def load(world: World, session: Session, store: EventStore) -> None:
    from liebian.campaigns.models import Campaign, Group, GroupMember, Participant, Referral
    from liebian.contacts.models import AttributeDef, Contact, ContactAttribute, ContactTag, Tag
    from liebian.segments.models import Segment, SegmentMember

    ws = world.ws
    for i, tag in enumerate(TAGS):
        session.add(Tag(id=tag, workspace_id=ws, name=f"标签{i}", kind="manual"))
    for key, typ in CUSTOM_TYPES.items():
        session.add(AttributeDef(workspace_id=ws, key=key, type=typ, label=key))
    session.add(Campaign(id=CAMPAIGN, workspace_id=ws, type="invite", name="c", config={}))
    session.add(Segment(id=REF_SEGMENT, workspace_id=ws, name="ref", kind="static"))
    session.flush()
    for p in world.people:
        session.add(
            Contact(
                id=p.id,
                workspace_id=ws,
                external_id=p.ext,
                erased_at=None if p.live else NOW,
                **{k: v for k, v in p.attrs.items() if k != "external_id"},
            )
        )
    session.flush()
    for p in world.people:
        for tag in p.tags:
            session.add(ContactTag(workspace_id=ws, contact_id=p.id, tag_id=tag, source="manual"))
        for key, value in p.custom.items():
            col = {
                "string": "value_str",
                "number": "value_num",
                "bool": "value_bool",
                "date": "value_date",
            }[CUSTOM_TYPES[key]]
            session.add(ContactAttribute(workspace_id=ws, contact_id=p.id, key=key, **{col: value}))
    joined = sorted(world.participants | set(world.invites) | world.group_success)
    for n, cid in enumerate(joined, start=1):
        session.add(
            Participant(
                id=f"par_{n:026d}",
                workspace_id=ws,
                campaign_id=CAMPAIGN,
                contact_id=cid,
                invite_code=f"{ws[-6:]}{n:06d}",
            )
        )
    session.flush()
    parts = {
        cid: f"par_{i + 1:026d}"
        for i, cid in enumerate(
            sorted(world.participants | set(world.invites) | world.group_success)
        )
    }
    r = 0
    other = next(iter(parts.values()))
    for cid, count in world.invites.items():
        for j in range(count + 1):
            r += 1
            # the last one is invalidated (the invitee left): it must not count
            session.add(
                Referral(
                    id=f"ref_{r:026d}",
                    workspace_id=ws,
                    campaign_id=CAMPAIGN,
                    referrer_participant_id=parts[cid],
                    referee_participant_id=other,
                    referrer_contact_id=cid,
                    referee_contact_id=cid,
                    seq=r,
                    status="approved",
                    invalidated_at=NOW if j == count else None,
                )
            )
    for g, cid in enumerate(sorted(world.group_success)):
        gid = f"grp_{g:026d}"
        session.add(
            Group(
                id=gid,
                workspace_id=ws,
                campaign_id=CAMPAIGN,
                leader_contact_id=cid,
                size=2,
                price=100,
                status="success",
                expires_at=NOW,
            )
        )
        session.flush()
        session.add(
            GroupMember(
                id=f"gmb_{g:026d}",
                group_id=gid,
                workspace_id=ws,
                contact_id=cid,
                seat=1,
                is_leader=True,
                price=100,
                order_status="paid",
            )
        )
    from liebian.communities.models import Community, CommunityGroup, CommunityMember

    session.add(
        Community(
            id=COMMUNITY,
            workspace_id=ws,
            name="宝妈社群",
            kind="welfare",
            tiers=[{"key": "a", "name": "0-1岁"}, {"key": "b", "name": "1-3岁"}],
        )
    )
    session.flush()
    for gid, tier in GROUPS.items():
        session.add(
            CommunityGroup(
                id=gid,
                workspace_id=ws,
                community_id=COMMUNITY,
                name=f"群{tier}",
                platform="wechat",
                capacity=200,
                tier=tier,
            )
        )
    session.flush()
    for n, row in enumerate(world.community):
        session.add(
            CommunityMember(
                id=f"cmb_{n:026d}",
                workspace_id=ws,
                community_id=COMMUNITY,
                holder=row["contact_id"] or f"v:visitor{n}",
                invite_code=f"{ws[-4:]}{n:08d}",
                **row,
            )
        )
    for cid, source in world.segment_rows:
        session.add(
            SegmentMember(
                segment_id=REF_SEGMENT, contact_id=cid, workspace_id=ws, source=source, since=NOW
            )
        )
    session.flush()
    store.insert(world.events)
    store.add_aliases([Alias(ws, v, u, NOW) for v, u in world.aliases.items()])


# -- the oracle ----------------------------------------------------------------------------


def _attr_ok(value: Any, op: str, arg: Any, typ: str) -> bool:
    if op == "is_set":
        return value is not None
    if op == "is_not_set":
        return value is None
    if op == "neq":
        return value is None or value != arg
    if op == "not_in":
        return value is None or value not in arg
    if value is None:
        return False
    if op == "eq":
        return bool(value == arg)
    if op == "in":
        return value in arg
    if op in ("lt", "before"):
        return bool(value < arg)
    if op == "lte":
        return bool(value <= arg)
    if op in ("gt", "after"):
        return bool(value > arg)
    if op == "gte":
        return bool(value >= arg)
    if op == "between":
        return bool(arg[0] <= value <= arg[1])
    if op == "within_last_days":
        since = NOW - timedelta(days=arg)
        return bool(value >= (since.date() if typ == "date" else since))
    if op == "contains":
        return str(arg).lower() in str(value).lower()
    raise AssertionError(op)


def _filter_ok(e: EventRow, where: dict[str, Any] | None) -> bool:
    for fld, spec in (where or {}).items():
        op, arg = next(iter(spec.items())) if isinstance(spec, dict) else ("eq", spec)
        if fld.startswith("properties."):
            props = e.properties if isinstance(e.properties, dict) else {}
            v = props.get(fld.split(".", 1)[1])
            if isinstance(arg, str):
                v = v if isinstance(v, str) else None
            else:
                v = v if isinstance(v, int | float) and not isinstance(v, bool) else None
            if v is None:
                if op != "neq":
                    return False
                continue
        else:
            v = getattr(e, fld) or ""
        if not {"eq": v == arg, "neq": v != arg, "gte": v >= arg, "lt": v < arg}[op]:
            return False
    return True


def oracle(world: World, node: c.Condition, segment_members: set[str] | None = None) -> set[str]:
    members = segment_members
    if members is None:
        rows = world.segment_rows
        members = {cid for cid, s in rows if s in ("computed", "manual_add")} - {
            cid for cid, s in rows if s == "manual_remove"
        }
    by_person: dict[str, list[EventRow]] = {}
    for e in world.events:
        person = world.aliases.get(e.visitor_id or "") or e.user_id
        if person:
            by_person.setdefault(person, []).append(e)
    return {p.id for p in world.people if p.live and _holds(world, p, node, by_person, members)}


def _holds(
    w: World, p: Person, node: c.Condition, ev: dict[str, list[EventRow]], members: set[str]
) -> bool:
    if isinstance(node, c.And):
        return all(_holds(w, p, n, ev, members) for n in node.items)
    if isinstance(node, c.Or):
        return any(_holds(w, p, n, ev, members) for n in node.items)
    if isinstance(node, c.Not):
        return not _holds(w, p, node.item, ev, members)
    if isinstance(node, c.Attribute):
        key = node.custom_key
        value = p.custom.get(key) if key else p.attrs.get(node.attribute)
        return _attr_ok(value, node.op, node.value, node.type)
    if isinstance(node, c.Tags):
        hits = len(p.tags & set(node.tags))
        return {"any": hits > 0, "all": hits == len(node.tags), "none": hits == 0}[node.match]
    if isinstance(node, c.Channel):
        value = p.attrs["first_channel" if node.which == "first" else "last_channel"]
        return value in node.values
    if isinstance(node, c.SegmentRef):
        return (p.id in members) == node.member
    if isinstance(node, c.Community):
        states = {
            "joined": ("joined",),
            "routed": ("routed",),
            "left": ("left", "removed"),
            "any": ("routed", "joined", "left", "removed"),
        }[node.status]
        at = {"joined": "joined_at", "routed": "routed_at", "left": "left_at", "any": "routed_at"}
        for row in w.community:
            if row["contact_id"] != p.id or row["status"] not in states:
                continue
            if node.group_id and row["group_id"] != node.group_id:
                continue
            if node.tier and row["tier"] != node.tier:
                continue
            if node.within_last_days is not None and row[at[node.status]] < NOW - timedelta(
                days=node.within_last_days
            ):
                continue
            return True  # one community in the fixture: community_id null or COMMUNITY
        return False
    if isinstance(node, c.Campaign):
        if node.status == "joined":
            return p.id in w.participants
        if node.status == "invited":
            return w.invites.get(p.id, 0) >= node.min
        return node.min <= 1 and p.id in w.group_success
    matching = [e for e in ev.get(p.ext, []) if e.event == node.event and _filter_ok(e, node.where)]
    if isinstance(node, c.EventTime):
        if not matching:
            return False
        m = min(e.ts for e in matching) if node.which == "first" else max(e.ts for e in matching)
        if node.op == "before":
            return m < node.value
        if node.op == "after":
            return m > node.value
        return m >= NOW - timedelta(days=node.value)
    win = node.window
    if win is not None:
        if win.last_days is not None:
            matching = [e for e in matching if e.ts >= NOW - timedelta(days=win.last_days)]
        if win.start is not None:
            matching = [e for e in matching if e.ts >= win.start]
        if win.end is not None:
            matching = [e for e in matching if e.ts < win.end]
    revenues = [e.revenue or 0 for e in matching]
    if node.measure == "count":
        m: float = len(matching)
    elif node.measure == "sum_revenue":
        m = sum(revenues)
    else:
        if not revenues:
            return False
        m = sum(revenues) / len(revenues)
    from liebian.segments.compilers import compare_py

    return compare_py(m, node.op, node.value)


# -- random conditions ---------------------------------------------------------------------


def random_leaf(rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(
        [
            "attr",
            "attr",
            "custom",
            "tags",
            "event",
            "event",
            "event_time",
            "campaign",
            "segment",
            "channel",
            "community",
        ]
    )
    if kind == "attr":
        return rng.choice(
            [
                {
                    "type": "attribute",
                    "attribute": "orders_count",
                    "op": rng.choice(["eq", "neq", "lt", "gte", "gt", "lte"]),
                    "value": rng.randrange(5),
                },
                {
                    "type": "attribute",
                    "attribute": "orders_count",
                    "op": "between",
                    "value": [1, 3],
                },
                {"type": "attribute", "attribute": "gmv_cents", "op": "in", "value": [990, 5000]},
                {
                    "type": "attribute",
                    "attribute": "first_channel",
                    "op": rng.choice(["eq", "neq", "is_set", "is_not_set"]),
                    "value": "wx_group",
                },
                {
                    "type": "attribute",
                    "attribute": "rfm_class",
                    "op": "not_in",
                    "value": ["champion"],
                },
                {
                    "type": "attribute",
                    "attribute": "last_seen_at",
                    "op": rng.choice(["within_last_days", "is_not_set"]),
                    "value": 7,
                },
                {
                    "type": "attribute",
                    "attribute": "last_seen_at",
                    "op": rng.choice(["before", "after"]),
                    "value": "2024-05-10T00:00:00Z",
                },
                {"type": "attribute", "attribute": "external_id", "op": "contains", "value": "U1"},
            ]
        )
    if kind == "custom":
        return rng.choice(
            [
                {
                    "type": "attribute",
                    "attribute": "custom.city",
                    "op": rng.choice(["eq", "neq", "is_set"]),
                    "value": "上海",
                },
                {
                    "type": "attribute",
                    "attribute": "custom.city",
                    "op": "contains",
                    "value": "shang",
                },
                {
                    "type": "attribute",
                    "attribute": "custom.age",
                    "op": rng.choice(["gt", "lte", "neq"]),
                    "value": 30,
                },
                {
                    "type": "attribute",
                    "attribute": "custom.vip",
                    "op": rng.choice(["eq", "neq"]),
                    "value": True,
                },
                {
                    "type": "attribute",
                    "attribute": "custom.birthday",
                    "op": "within_last_days",
                    "value": 10,
                },
                {
                    "type": "attribute",
                    "attribute": "custom.birthday",
                    "op": "before",
                    "value": "2024-05-15",
                },
            ]
        )
    if kind == "tags":
        return {
            "type": "tags",
            "match": rng.choice(["any", "all", "none"]),
            "tags": rng.sample(TAGS, rng.randrange(1, 3)),
        }
    if kind == "event":
        leaf: dict[str, Any] = {"type": "event", "event": rng.choice(EVENTS)}
        if rng.random() < 0.3:
            leaf["where"] = rng.choice(
                [
                    {"channel": "wx_group"},
                    {"properties.plan": "pro"},
                    {"properties.amount": {"gte": 150}},
                    {"channel": {"neq": "douyin"}},
                ]
            )
        if rng.random() < 0.6:
            leaf["window"] = rng.choice(
                [
                    {"last_days": rng.choice([7, 14, 30])},
                    {"from": "2024-05-01T00:00:00Z", "to": "2024-05-20T00:00:00Z"},
                    {"from": "2024-05-10"},
                ]
            )
        r = rng.random()
        if r < 0.3:
            leaf["did"] = rng.random() < 0.5
        elif r < 0.7:
            leaf.update(
                measure="count",
                op=rng.choice(["gte", "lte", "eq", "lt", "gt"]),
                value=rng.randrange(4),
            )
        elif r < 0.8:
            leaf.update(measure="count", op="between", value=[1, 2])
        else:
            leaf.update(
                measure=rng.choice(["sum_revenue", "avg_revenue"]),
                op=rng.choice(["gte", "lte", "lt"]),
                value=rng.choice([0, 1990, 4000]),
            )
        return leaf
    if kind == "event_time":
        op = rng.choice(["before", "after", "within_last_days"])
        return {
            "type": "event_time",
            "event": rng.choice(EVENTS),
            "which": rng.choice(["first", "last"]),
            "op": op,
            "value": 10 if op == "within_last_days" else "2024-05-05T06:00:00Z",
        }
    if kind == "campaign":
        status = rng.choice(["joined", "invited", "group_succeeded"])
        out: dict[str, Any] = {
            "type": "campaign",
            "status": status,
            "campaign_id": rng.choice([CAMPAIGN, None]),
        }
        if status == "invited":
            out["min"] = rng.randrange(1, 4)
        return out
    if kind == "segment":
        return {"type": "segment", "segment_id": REF_SEGMENT, "in": rng.random() < 0.7}
    if kind == "community":
        leaf = {"type": "community", "community_id": rng.choice([COMMUNITY, None])}
        if rng.random() < 0.7:
            leaf["status"] = rng.choice(["joined", "routed", "left", "any"])
        if leaf["community_id"] and rng.random() < 0.3:
            leaf["tier"] = rng.choice(["a", "b"])
        if leaf["community_id"] and rng.random() < 0.2:
            leaf["group_id"] = rng.choice(sorted(GROUPS))
        if rng.random() < 0.4:
            leaf["within_last_days"] = rng.choice([3, 10, 20])
        return leaf
    return {
        "type": "channel",
        "which": rng.choice(["first", "last"]),
        "in": rng.sample(["wx_group", "moments", "douyin"], 2),
    }


def random_condition(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    r = rng.random()
    if depth >= 3 or r < 0.4:
        return random_leaf(rng)
    if r < 0.5:
        return {"type": "not", "condition": random_condition(rng, depth + 1)}
    return {
        "type": rng.choice(["and", "or"]),
        "conditions": [random_condition(rng, depth + 1) for _ in range(rng.randrange(1, 4))],
    }


def custom_types() -> dict[str, str]:
    return dict(CUSTOM_TYPES)


__all__ = [
    "COMMUNITY",
    "GROUPS",
    "NOW",
    "World",
    "build_world",
    "date",
    "load",
    "oracle",
    "random_condition",
]
