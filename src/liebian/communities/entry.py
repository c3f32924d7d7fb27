"""The entry decision's hot path: a scan's answers → a tier → a place, in a few statements.

``decide`` is what the entry page's POST runs (and what bench/bench_communities.py measures).
It serves the usual scan — an active community with an open or screening threshold, a holder
seen for the first time — with Core statements compiled once (``kit.precompiled``), about
six to eight per decision:

1. the community's configuration and whether this holder already has a row (one statement;
   the JSON configuration is parsed once per distinct text, not per decision);
2. the place: ``UPDATE community_groups SET members = members + 1 … WHERE id = (the first
   open group of the tier with room) AND status = 'open' AND members < capacity RETURNING …``
   — the same conditional UPDATE as ``repository.claim_place`` (decision 0022), with the
   candidate chosen inside the statement. On SQLite writers are serialized, so it succeeds
   at once when any group has room; on PostgreSQL a concurrent scan may fill the chosen group
   first (READ COMMITTED re-checks ``members < capacity`` on the committed row and the UPDATE
   then changes nothing), and the candidates are tried one by one as ``service.route`` does;
3. the member row, ``INSERT … ON CONFLICT (community, holder) DO NOTHING``;
4. for screening answers of an anonymous visitor: the visitor's contact and alias (insert-or-
   read), and one upsert per answer stored as a contact attribute;
5. the places left in the tier — only while the community's low-places alert is not latched.

Everything else goes to ``service.enter`` (the ORM path, same rules): a holder who already has
a row (re-scan, came back, removed), the invitation / activity / purchase thresholds, screening
answers that tag the contact, no room at all (the refusal and its alert), a visitor alias owned
by someone else. Both paths take places only through conditional UPDATEs and one member row
per (community, holder), so they may run side by side.

On SQLite ``run`` commits through the process's group commit (one writer thread, a savepoint
per decision, one COMMIT per batch: decision 0009); on PostgreSQL each decision has its own
transaction in a worker thread.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import Connection, Table, Text, and_, bindparam, case, cast, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from liebian.app.runtime import Runtime
from liebian.communities import events, routing, service
from liebian.communities.models import Community, CommunityGroup, CommunityMember
from liebian.contacts import attributes as contact_attributes
from liebian.contacts.models import AttributeDef, Contact, ContactAlias, ContactAttribute
from liebian.events import sink as event_sink
from liebian.kit.bus import publish_after_commit
from liebian.kit.clock import utcnow
from liebian.kit.crypto import PiiCipher
from liebian.kit.db import session_scope
from liebian.kit.errors import NotFound
from liebian.kit.group_commit import GroupCommit
from liebian.kit.ids import new_id
from liebian.kit.precompiled import Precompiled

T = TypeVar("T")

_c: Table = Community.__table__  # type: ignore[assignment]
_g: Table = CommunityGroup.__table__  # type: ignore[assignment]
_m: Table = CommunityMember.__table__  # type: ignore[assignment]
_contacts: Table = Contact.__table__  # type: ignore[assignment]
_aliases: Table = ContactAlias.__table__  # type: ignore[assignment]
_attrs: Table = ContactAttribute.__table__  # type: ignore[assignment]
_defs: Table = AttributeDef.__table__  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Placed:
    """What the person is shown: their group, and their own invitation code."""

    community_id: str
    group_id: str
    group_name: str
    platform: str
    qr_image: str | None
    join_url: str | None
    member_id: str
    invite_code: str
    tier: str | None
    new: bool
    lean: bool  # decided on the hot path (False: through service.enter)


# ── statements, compiled once per dialect ──────────────────────────────────────────────────

_CONFIG_JSON = ("tiers", "screening", "routing")
# The community's configuration and whether this holder already has a row, in one statement.
# The JSON columns come as text and are parsed through ``_parsed`` (a cache keyed by the
# text itself: an operator's edit is a new text, so nothing can be stale), not per decision.
_COMMUNITY = Precompiled(
    select(
        _c.c.id, _c.c.workspace_id, _c.c.name, _c.c.status, _c.c.starts_at, _c.c.ends_at,
        _c.c.threshold, *(cast(_c.c[k], Text).label(k) for k in _CONFIG_JSON),
        _c.c.alert_below, _c.c.alerted_at,
        select(_m.c.id)
        .where(_m.c.community_id == _c.c.id, _m.c.holder == bindparam("holder"))
        .scalar_subquery()
        .label("held"),
    ).where(_c.c.id == bindparam("community_id"))
)  # fmt: skip
_PARSED: dict[str, Any] = {}


def _parsed(text: str | None) -> Any:
    """The JSON value of a configuration column's text (shared: callers only read it)."""
    if text is None:
        return None
    value = _PARSED.get(text)
    if value is None:
        if len(_PARSED) >= 1024:  # bounded: configurations are few and small
            _PARSED.clear()
        value = _PARSED[text] = json.loads(text)
    return value


_OPEN = and_(_g.c.status == "open", _g.c.members < _g.c.capacity)
_RETURNED = (_g.c.id, _g.c.name, _g.c.platform, _g.c.tier, _g.c.qr_image, _g.c.join_url)
_TAKE = {
    "members": _g.c.members + 1,
    "status": case((_g.c.members + 1 >= _g.c.capacity, "full"), else_=_g.c.status),
    "updated_at": bindparam("now", type_=_g.c.updated_at.type),
}


def _first_open(tiered: bool) -> Any:
    inner = _g.alias("candidate")
    stmt = select(inner.c.id).where(
        inner.c.community_id == bindparam("community_id"),
        inner.c.status == "open",
        inner.c.members < inner.c.capacity,
    )
    if tiered:
        stmt = stmt.where(inner.c.tier == bindparam("tier")).order_by(inner.c.id)
    else:  # no tier decided: untiered groups first, then any (as repository.candidates)
        stmt = stmt.order_by(inner.c.tier.is_not(None), inner.c.id)
    return stmt.limit(1).scalar_subquery()


# The first open group of the tier with room, taken in one statement.
_TAKE_FIRST = {
    tiered: Precompiled(
        update(_g).where(_g.c.id == _first_open(tiered), _OPEN).values(_TAKE).returning(*_RETURNED)
    )
    for tiered in (True, False)
}
# A named group (after a concurrent scan filled the first choice: PostgreSQL).
_TAKE_GROUP = Precompiled(
    update(_g).where(_g.c.id == bindparam("group_id"), _OPEN).values(_TAKE).returning(*_RETURNED)
)
_CANDIDATES = {
    True: Precompiled(
        select(_g.c.id)
        .where(
            _g.c.community_id == bindparam("community_id"),
            _OPEN,
            _g.c.tier == bindparam("tier"),
        )
        .order_by(_g.c.id)
    ),
    False: Precompiled(
        select(_g.c.id)
        .where(_g.c.community_id == bindparam("community_id"), _OPEN)
        .order_by(_g.c.tier.is_not(None), _g.c.id)
    ),
}
_PLACES_LEFT = {
    tiered: Precompiled(
        select(func.coalesce(func.sum(_g.c.capacity - _g.c.members), 0)).where(
            _g.c.community_id == bindparam("community_id"),
            _g.c.status == "open",
            *((_g.c.tier == bindparam("tier"),) if tiered else ()),
        )
    )
    for tiered in (True, False)
}
_MEMBER_COLUMNS = (
    "id", "workspace_id", "community_id", "group_id", "holder", "contact_id", "status", "scene",
    "tier", "tier_source", "answers", "invite_code", "inviter_member_id", "muted_until",
    "routed_at", "joined_at", "left_at",
)  # fmt: skip
_CONTACT_BY_EXTERNAL = Precompiled(
    select(_contacts.c.id, _contacts.c.merged_into_id).where(
        _contacts.c.workspace_id == bindparam("workspace_id"),
        _contacts.c.external_id == bindparam("external_id"),
    )
)
_ATTRIBUTE_TYPES = Precompiled(
    select(_defs.c.key, _defs.c.type).where(_defs.c.workspace_id == bindparam("workspace_id"))
)
_VALUE_COLUMNS = ("value_str", "value_num", "value_date", "value_bool")


def _insert_ignore(table: Table, columns: tuple[str, ...], conflict: list[str]) -> dict[str, Any]:
    out = {}
    for name, dialect in (("sqlite", sqlite), ("postgresql", postgresql)):
        stmt = dialect.insert(table).values(
            {c: bindparam(c, type_=table.c[c].type) for c in columns}
        )
        pk = next(iter(table.primary_key.columns))
        out[name] = Precompiled(stmt.on_conflict_do_nothing(index_elements=conflict).returning(pk))
    return out


def _upsert_attribute() -> dict[str, Any]:
    columns = ("workspace_id", "contact_id", "key", *_VALUE_COLUMNS)
    out = {}
    for name, dialect in (("sqlite", sqlite), ("postgresql", postgresql)):
        stmt = dialect.insert(_attrs).values(
            {c: bindparam(c, type_=_attrs.c[c].type) for c in columns}
        )
        out[name] = Precompiled(
            stmt.on_conflict_do_update(
                index_elements=["contact_id", "key"],
                set_={c: stmt.excluded[c] for c in _VALUE_COLUMNS},
            )
        )
    return out


_INSERT_MEMBER = _insert_ignore(_m, _MEMBER_COLUMNS, ["community_id", "holder"])
_INSERT_CONTACT = _insert_ignore(
    _contacts,
    ("id", "workspace_id", "external_id", "visitor_id", "orders_count", "gmv_cents",
     "invites_made", "created_at", "updated_at"),
    ["workspace_id", "external_id"],
)  # fmt: skip
_INSERT_ALIAS = _insert_ignore(
    _aliases,
    ("workspace_id", "kind", "value", "contact_id", "created_at"),
    ["workspace_id", "kind", "value"],
)
_UPSERT_ATTRIBUTE = _upsert_attribute()


# ── the decision ───────────────────────────────────────────────────────────────────────────


class _Fallback(Exception):
    """Not the usual scan: ``service.enter`` decides it."""


def decide(
    session: Session,
    cipher: PiiCipher | None,
    community_id: str,
    who: service.Entrant,
    raw_answers: Mapping[str, Any],
    invite_code: str | None,
    today: date,
) -> Placed:
    """The entry decision of one scan (``service.EntryRefused`` / ``Invalid`` when refused).

    On the hot path nothing is written before the answers are checked and a place is taken;
    when it hands over to ``service.enter`` it has written nothing either (a place it took is
    given back in the same transaction first)."""
    session.flush()
    conn = session.connection()
    row = _COMMUNITY.execute(conn, {"community_id": community_id, "holder": who.holder}).first()
    if row is None:
        raise NotFound("no such community", code="community_not_found")
    row = row._replace(**{k: _parsed(getattr(row, k)) for k in _CONFIG_JSON})
    try:
        return _lean(session, conn, row, who, raw_answers, today)
    except _Fallback:
        pass
    community = session.get(Community, community_id)
    assert community is not None
    routed = service.enter(session, cipher, community, who, raw_answers, invite_code, today)
    group, member = routed.group, routed.member
    return Placed(
        community.id, group.id, group.name, group.platform, group.qr_image, group.join_url,
        member.id, member.invite_code, member.tier, routed.new, lean=False,
    )  # fmt: skip


def _lean(
    session: Session,
    conn: Connection,
    c: Any,
    who: service.Entrant,
    raw_answers: Mapping[str, Any],
    today: date,
) -> Placed:
    now = utcnow()
    if c.threshold not in ("open", "screening"):
        raise _Fallback
    service.check_open(c, now)  # reads status/starts_at/ends_at only
    answers: dict[str, Any] = {}
    tier: str | None = None
    source: str | None = None
    if c.screening and (c.threshold == "screening" or raw_answers):
        answers = routing.check_answers(c.screening, raw_answers)
        tier, source = routing.decide_tier(c.tiers, c.routing, answers, today)
        if any(q.get("tags") for q in c.screening):
            raise _Fallback  # tagging goes through contacts.tags (its log, its mirror)
    if c.held is not None:
        raise _Fallback  # a re-scan, a return, or someone removed: the full rules
    group = _take(conn, c.id, tier, now)
    if group is None:
        raise _Fallback  # no room anywhere: the refusal and its alert
    dialect = conn.dialect.name
    contact_id, external_id = who.contact_id, who.external_id
    if answers and contact_id is None and who.visitor_id:
        contact_id, external_id = _visitor_contact(session, conn, c.workspace_id, who, now)
    member_id, invite_code = new_id("cmb"), service._invite_code()
    joined = group.platform == "wechat"  # a personal WeChat group: showing its QR is the join
    scene = "screening" if answers else "scan"
    stored = {k: (v.isoformat() if isinstance(v, date) else v) for k, v in answers.items()}
    inserted = _INSERT_MEMBER[dialect].execute(
        conn,
        {"id": member_id, "workspace_id": c.workspace_id, "community_id": c.id,
         "group_id": group.id, "holder": who.holder, "contact_id": contact_id,
         "status": "joined" if joined else "routed", "scene": scene, "tier": tier,
         "tier_source": source, "answers": stored, "invite_code": invite_code,
         "inviter_member_id": None, "muted_until": None, "routed_at": now,
         "joined_at": now if joined else None, "left_at": None},
    ).rows  # fmt: skip
    if not inserted:
        # The same holder's concurrent scan recorded a place first: give this one back, and
        # let the full path show that scan's group. (Savepoint-free: nothing else was written
        # unless answers made a visitor contact, which the full path would make too.)
        from liebian.communities import repository

        repository.release_place(session, group.id)
        raise _Fallback
    if answers and contact_id is not None:
        _store_answers(conn, c, contact_id, answers)
    _low_places(session, conn, c, tier, now)
    _announce(session, c, group, who, member_id, contact_id, external_id, scene, tier, now,
              joined, answers)  # fmt: skip
    return Placed(
        c.id, group.id, group.name, group.platform, group.qr_image, group.join_url, member_id,
        invite_code, tier, new=True, lean=True,
    )  # fmt: skip


def _take(conn: Connection, community_id: str, tier: str | None, now: datetime) -> Any:
    params = {"community_id": community_id, "tier": tier, "now": now}
    if tier is None:
        del params["tier"]
    got = _TAKE_FIRST[tier is not None].execute(conn, params).first()
    if got is not None:
        return got
    # Nothing, or a concurrent scan filled the first choice between the choice and the
    # update (PostgreSQL): try each open group in turn, as service.route does.
    lookup = dict(params)
    del lookup["now"]
    for (group_id,) in _CANDIDATES[tier is not None].execute(conn, lookup).rows:
        got = _TAKE_GROUP.execute(conn, {"group_id": group_id, "now": now}).first()
        if got is not None:
            return got
    return None


def _visitor_contact(
    session: Session, conn: Connection, workspace_id: str, who: service.Entrant, now: datetime
) -> tuple[str, str]:
    """The anonymous visitor's contact ``visitor:<lb_vid>`` with the visitor id as an alias
    (what ``service.enter`` makes through contacts.upsert and identity.attach)."""
    assert who.visitor_id is not None
    dialect = conn.dialect.name
    external_id = f"visitor:{who.visitor_id}"
    made = _INSERT_CONTACT[dialect].execute(
        conn,
        {"id": new_id("ctc"), "workspace_id": workspace_id, "external_id": external_id,
         "visitor_id": who.visitor_id[:128], "orders_count": 0, "gmv_cents": 0,
         "invites_made": 0, "created_at": now, "updated_at": now},
    ).first()  # fmt: skip
    found = (
        (made[0], None)
        if made is not None
        else _CONTACT_BY_EXTERNAL.execute(
            conn, {"workspace_id": workspace_id, "external_id": external_id}
        ).one()
    )
    contact_id = found[1] or found[0]  # a merged contact names its survivor
    if not _INSERT_ALIAS[dialect].execute(
        conn,
        {"workspace_id": workspace_id, "kind": "visitor_id", "value": who.visitor_id[:128],
         "contact_id": contact_id, "created_at": now},
    ).rows:  # fmt: skip
        from liebian.contacts import identity

        identity.attach(session, workspace_id, contact_id, "visitor_id", who.visitor_id)
    return contact_id, external_id


def _store_answers(conn: Connection, c: Any, contact_id: str, answers: Mapping[str, Any]) -> None:
    stored = {}
    for q in c.screening:
        answer = answers.get(q["key"])
        if answer is not None and q.get("attribute"):
            stored[q["attribute"]] = ",".join(answer) if isinstance(answer, list) else answer
    if not stored:
        return
    types = {
        r.key: r for r in _ATTRIBUTE_TYPES.execute(conn, {"workspace_id": c.workspace_id}).rows
    }
    checked = contact_attributes.validate(types, stored)
    upsert = _UPSERT_ATTRIBUTE[conn.dialect.name]
    for key, columns in checked.items():
        if columns is not None:
            upsert.execute(
                conn,
                {"workspace_id": c.workspace_id, "contact_id": contact_id, "key": key, **columns},
            )


def _low_places(
    session: Session, conn: Connection, c: Any, tier: str | None, now: datetime
) -> None:
    if c.alerted_at is not None:
        return  # latched: this crossing has its alert (an operator adding room re-arms it)
    params = {"community_id": c.id, "tier": tier} if tier is not None else {"community_id": c.id}
    left = int(_PLACES_LEFT[tier is not None].execute(conn, params).scalar() or 0)
    if left < c.alert_below:
        community = session.get(Community, c.id)
        assert community is not None
        service._raise_low(session, community, tier, now, force=False)


def _announce(
    session: Session,
    c: Any,
    group: Any,
    who: service.Entrant,
    member_id: str,
    contact_id: str | None,
    external_id: str | None,
    scene: str,
    tier: str | None,
    now: datetime,
    joined: bool,
    answers: Mapping[str, Any],
) -> None:
    """The events and bus topics ``service.route`` / ``mark_joined`` / ``apply_screening``
    publish, after the commit."""
    props = {"community_id": c.id, "group_id": group.id, "tier": tier, "scene": scene,
             "member_id": member_id}  # fmt: skip
    if event_sink.installed(session):
        stamp = f"{now.timestamp():.3f}"
        # One after-commit append for both lines (one spool write, one callback).
        event_sink.emit_after_commit(session, b"".join(
            events.line(
                workspace_id=c.workspace_id, event=event,
                event_id=f"cm:{event}:{member_id}:{stamp}", user_id=external_id,
                visitor_id=who.visitor_id, platform=who.platform, properties=props,
            )
            for event in (("group_routed", "group_joined") if joined else ("group_routed",))
        ))  # fmt: skip
    if joined:
        publish_after_commit(
            session,
            service.MEMBER_JOINED,
            {"workspace_id": c.workspace_id, "community_id": c.id, "group_id": group.id,
             "contact_id": contact_id, "member_id": member_id, "tier": tier, "scene": scene},
        )  # fmt: skip
    if answers and contact_id is not None:
        if any(q.get("attribute") for q in c.screening):
            publish_after_commit(
                session,
                contact_attributes.ATTRIBUTES_CHANGED,
                {"workspace_id": c.workspace_id, "contact_ids": [contact_id]},
            )
        publish_after_commit(
            session,
            service.SCREENING_ANSWERED,
            {"workspace_id": c.workspace_id, "community_id": c.id, "contact_id": contact_id,
             "group_id": group.id,
             "answers": {k: (v.isoformat() if isinstance(v, date) else v)
                         for k, v in answers.items()}},
        )  # fmt: skip


# ── committing ─────────────────────────────────────────────────────────────────────────────


async def run(runtime: Runtime, work: Callable[[Session], T]) -> T:
    """``work(session)`` committed, from the event loop: the group commit on SQLite, a
    transaction of its own in a worker thread on PostgreSQL."""
    committer = group_commit(runtime)
    if committer is not None:
        return await committer.run(work)
    return await anyio.to_thread.run_sync(_own_transaction, runtime, work)


def _own_transaction(runtime: Runtime, work: Callable[[Session], T]) -> T:
    with session_scope(runtime.sessions) as session:
        return work(session)


_SETUP = threading.Lock()


def group_commit(runtime: Runtime) -> GroupCommit | None:
    if runtime.engine.dialect.name != "sqlite":
        return None
    committer = runtime.extras.get("communities.group_commit")
    if committer is None:
        with _SETUP:  # one writer per runtime (per database file and process)
            committer = runtime.extras.setdefault(
                "communities.group_commit",
                GroupCommit(runtime.sessions, name="liebian-community-entry"),
            )
    return committer
