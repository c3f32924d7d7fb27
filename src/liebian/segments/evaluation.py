"""Evaluate a condition: who matches, as a set of contact ids.

Plan: every maximal subtree made of state leaves only becomes one SQL query over
``contacts``; every behaviour leaf becomes one query in the event engine. Their answers are
combined as sets of external ids, each held either as the matching people (positive) or as
the people who do NOT match (complement): "no visit in the last 14 days" is the complement of
the visitors, so a million non-visitors are never listed. ``and`` intersects the positive
parts and subtracts the complements; only a complement left at the root is resolved against
the workspace's contacts (or the candidates of an incremental run).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from liebian.events.store.base import EventStore
from liebian.kit.clock import utcnow
from liebian.segments import conditions as c
from liebian.segments.compilers import (
    StateTables,
    combined_query,
    engine_query,
    run_engine,
    state_clause,
    workspace_has_aliases,
)

# Up to this many candidates are named in the engine's SQL; more scan the whole event kind.
_ENGINE_IN_LIMIT = 2000
_CHUNK = 500
# Ids named in one IN list of the OLTP queries (SQLite allows 32,766 variables).
_IN_CHUNK = 5000


def state_tables() -> StateTables:
    import liebian.models_registry  # noqa: F401  (every table in Base.metadata)
    from liebian.kit.db import Base

    t = Base.metadata.tables
    return StateTables(
        contacts=t["contacts"],
        contact_tags=t["contact_tags"],
        contact_attributes=t["contact_attributes"],
        participants=t["participants"],
        referrals=t["referrals"],
        group_members=t["campaign_group_members"],
        groups=t["campaign_groups"],
        segment_members=t["segment_members"],
        attribute_defs=t["attribute_defs"],
        community_members=t["community_members"],
    )


@dataclass
class Part:
    ext: set[str]
    negated: bool = False  # True: everyone except ``ext``


@dataclass
class _Run:
    session: Session
    store: EventStore | None
    ws: str
    now: datetime
    tables: StateTables
    candidates: dict[str, str] | None  # ext → id when restricted
    ids: dict[str, str] = field(default_factory=dict)  # ext → contact id, learned on the way
    aliases: bool | None = None
    stats: dict[str, int] = field(default_factory=dict)
    # Engine answers shared by the evaluations of one incremental pass (the same leaf in
    # several segments is asked once).
    cache: dict[Any, Part] | None = None

    def has_aliases(self) -> bool:
        if self.aliases is None:
            assert self.store is not None
            self.aliases = workspace_has_aliases(self.store, self.ws)
        return self.aliases


def live(contacts: Any, workspace_id: str) -> Any:
    """The workspace's contacts a segment may hold: not merged into another, not erased."""
    return and_(
        contacts.c.workspace_id == workspace_id,
        contacts.c.merged_into_id.is_(None),
        contacts.c.erased_at.is_(None),
    )


def _pure_state(node: c.Condition) -> bool:
    return not c.has_behaviour(node)


def _state(run: _Run, node: c.Condition, within: set[str] | None = None) -> Part:
    """One SQL query for a subtree of state leaves. ``within`` (external ids) limits it to
    people already known to be the only candidates (an ``and``'s behaviour parts)."""
    contacts = run.tables.contacts
    few = within is not None or run.candidates is not None
    stmt = select(contacts.c.id, contacts.c.external_id).where(
        live(contacts, run.ws), state_clause(run.tables, node, run.now, run.ws, few=few)
    )
    out: set[str] = set()
    if within is not None:
        if run.candidates is not None:
            within = {e for e in within if e in run.candidates}
        wanted = sorted(within)
        for i in range(0, len(wanted), _IN_CHUNK):
            rows = run.session.execute(
                stmt.where(contacts.c.external_id.in_(wanted[i : i + _IN_CHUNK]))
            )
            for cid, ext in rows:
                out.add(ext)
                run.ids[ext] = cid
    elif run.candidates is not None:
        ids = list(run.candidates.values())
        for i in range(0, len(ids), _IN_CHUNK):
            rows = run.session.execute(stmt.where(contacts.c.id.in_(ids[i : i + _IN_CHUNK])))
            out.update(ext for _cid, ext in rows)
    else:
        for cid, ext in run.session.execute(stmt):
            out.add(ext)
            run.ids[ext] = cid
    run.stats["state_queries"] = run.stats.get("state_queries", 0) + 1
    return Part(out)


def _behaviour(run: _Run, node: c.Event | c.EventTime) -> Part:
    if run.store is None:
        raise RuntimeError("a behaviour condition needs the event store")
    persons: list[str] | None = None
    if run.candidates is not None and len(run.candidates) <= _ENGINE_IN_LIMIT:
        persons = list(run.candidates)
    key = (run.ws, repr(node), tuple(persons) if persons is not None else None, run.now)
    if run.cache is not None and key in run.cache:
        hit = run.cache[key]
        return Part(set(hit.ext), hit.negated)
    query = engine_query(run.store, run.ws, node, run.now, persons, aliases=run.has_aliases())
    found = run_engine(run.store, query)
    run.stats["engine_queries"] = run.stats.get("engine_queries", 0) + 1
    part = Part(found, negated=query.complement)
    if run.cache is not None:
        run.cache[key] = Part(set(found), query.complement)
    return part


def _eval(run: _Run, node: c.Condition) -> Part:
    if _pure_state(node):
        return _state(run, node)
    if isinstance(node, c.Event | c.EventTime):
        return _behaviour(run, node)
    if isinstance(node, c.Not):
        part = _eval(run, node.item)
        return Part(part.ext, not part.negated)
    assert isinstance(node, c.And | c.Or)
    # The state children of a mixed group go to the database as one query.
    state = [n for n in node.items if _pure_state(n)]
    rest = [n for n in node.items if not _pure_state(n)]
    group: c.Condition | None = None
    if state:
        group = (c.And if isinstance(node, c.And) else c.Or)(node.path, tuple(state))
        group = group if len(state) > 1 else state[0]
    leaves = [n for n in rest if isinstance(n, c.Event | c.EventTime)]
    if isinstance(node, c.And) and len(leaves) > 1 and run.store is not None:
        # an and's behaviour leaves become one engine query (intersect / except inside it)
        persons = None
        if run.candidates is not None and len(run.candidates) <= _ENGINE_IN_LIMIT:
            persons = list(run.candidates)
        combined = combined_query(
            run.store, run.ws, leaves, run.now, persons, aliases=run.has_aliases()
        )
        if combined is not None:
            rest = [n for n in rest if n not in leaves]
            run.stats["engine_queries"] = run.stats.get("engine_queries", 0) + 1
            parts = [Part(run_engine(run.store, combined))]
            parts += [_eval(run, n) for n in rest]
        else:
            parts = [_eval(run, n) for n in rest]
    else:
        parts = [_eval(run, n) for n in rest]
    positives = sorted((p.ext for p in parts if not p.negated), key=len)
    negatives = [p.ext for p in parts if p.negated]
    if isinstance(node, c.And):
        if positives:
            result = set(positives[0]).intersection(*positives[1:])
            for neg in negatives:
                result -= neg
            if group is not None:
                # only people the behaviour parts let through can match: ask the database
                # about those few instead of listing everyone the state part selects
                result &= _state(run, group, within=result).ext
            return Part(result)
        excluded = set().union(*negatives)
        if group is not None:
            return Part(_state(run, group).ext - excluded)
        return Part(excluded, negated=True)
    # or
    if group is not None:
        positives.append(_state(run, group).ext)
    if not negatives:
        return Part(set().union(*positives))
    negatives.sort(key=len)
    excluded = set(negatives[0]).intersection(*negatives[1:])
    for pos in positives:
        excluded -= pos
    return Part(excluded, negated=True)


def _contact_ids(run: _Run, ext: Iterable[str]) -> set[str]:
    """Contact ids of these external ids (people in events without a contact drop out)."""
    if run.candidates is not None:
        return {run.candidates[e] for e in ext if e in run.candidates}
    out: set[str] = set()
    unknown: list[str] = []
    for e in ext:
        cid = run.ids.get(e)
        if cid is None:
            unknown.append(e)
        else:
            out.add(cid)
    contacts = run.tables.contacts
    for i in range(0, len(unknown), _CHUNK):
        rows = run.session.execute(
            select(contacts.c.id).where(
                live(contacts, run.ws),
                contacts.c.external_id.in_(unknown[i : i + _CHUNK]),
            )
        )
        out.update(r[0] for r in rows)
    return out


def _all_but(run: _Run, excluded: set[str]) -> set[str]:
    if run.candidates is not None:
        return {cid for ext, cid in run.candidates.items() if ext not in excluded}
    contacts = run.tables.contacts
    rows = run.session.execute(
        select(contacts.c.id, contacts.c.external_id).where(live(contacts, run.ws))
    )
    return {cid for cid, ext in rows if ext not in excluded}


def evaluate(
    session: Session,
    event_store: EventStore | None,
    workspace_id: str,
    condition: c.Condition | dict[str, Any],
    contact_ids: Iterable[str] | None = None,
    *,
    now: datetime | None = None,
    stats: dict[str, int] | None = None,
    cache: dict[Any, Any] | None = None,
) -> set[str]:
    """The ids of the workspace's contacts that match ``condition`` (restricted to
    ``contact_ids`` when given). A dict is validated first."""
    node = condition if not isinstance(condition, dict) else c.validate(condition)
    tables = state_tables()
    if c.needs_types(node):
        defs = tables.attribute_defs
        types = dict(
            session.execute(
                select(defs.c.key, defs.c.type).where(defs.c.workspace_id == workspace_id)
            ).all()
        )
        node = c.bind_types(node, types)
    candidates: dict[str, str] | None = None
    if contact_ids is not None:
        wanted = list(dict.fromkeys(contact_ids))
        candidates = {}
        contacts = tables.contacts
        for i in range(0, len(wanted), _CHUNK):
            rows = session.execute(
                select(contacts.c.id, contacts.c.external_id).where(
                    live(contacts, workspace_id),
                    contacts.c.id.in_(wanted[i : i + _CHUNK]),
                )
            )
            candidates.update({ext: cid for cid, ext in rows})
        if not candidates:
            return set()
    run = _Run(session, event_store, workspace_id, now or utcnow(), tables, candidates, cache=cache)
    part = _eval(run, node)
    if stats is not None:
        stats.update(run.stats)
    if part.negated:
        return _all_but(run, part.ext)
    return _contact_ids(run, part.ext)
