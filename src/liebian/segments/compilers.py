"""Compile condition leaves: behaviour to the event engine's SQL, state to the OLTP SQL.

Behaviour (``Event``, ``EventTime``) runs inside DuckDB or ClickHouse and answers a set of
person ids (= contacts.external_id, resolved through the store's aliases as analytics does).
A leaf that people without any matching event satisfy ("did not visit", "bought at most 2
times", "spent ≤ 100 元") is compiled to its opposite and marked ``complement``: the engine
answers the few who fail it, never the million who pass, and the evaluator subtracts.

State (attributes, custom attributes, tags, campaigns, communities, other segments, channel)
becomes one
SQLAlchemy Core boolean clause over ``contacts``. Every leaf clause is two-valued (never
NULL), so ``not`` means set complement on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    false,
    func,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy import (
    Table as SaTable,
)

from liebian.analytics.filters import where_sql
from liebian.analytics.sql import Sql
from liebian.events.store.base import EventStore
from liebian.segments import conditions as c

# -- behaviour → event engine -------------------------------------------------------------


@dataclass(frozen=True)
class EngineQuery:
    sql: str
    params: dict[str, Any]
    # The persons answered are those who do NOT satisfy the leaf (everyone else does).
    complement: bool


def _measure_sql(sql: Sql, measure: str) -> str:
    if measure == "count":
        return "count(*)"
    rev = sql.col("revenue")
    return f"sum({rev})" if measure == "sum_revenue" else f"avg({rev})"


def _compare(sql: Sql, expr: str, op: str, value: Any) -> str:
    if op == "between":
        return f"({expr} >= {sql.p(value[0])} AND {expr} <= {sql.p(value[1])})"
    symbol = {"eq": "=", "neq": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}[op]
    return f"{expr} {symbol} {sql.p(value)}"


def holds_for_zero(leaf: c.Event) -> bool:
    """Whether a person with no matching event satisfies the leaf (count 0, revenue sum 0)."""
    if leaf.measure == "avg_revenue":
        return False  # no events: no average
    return compare_py(0, leaf.op, leaf.value)


def compare_py(m: float, op: str, value: Any) -> bool:
    if op == "between":
        return bool(value[0] <= m <= value[1])
    return {
        "eq": m == value,
        "neq": m != value,
        "lt": m < value,
        "lte": m <= value,
        "gt": m > value,
        "gte": m >= value,
    }[op]


def _person_sql(sql: Sql, aliases: bool) -> str:
    # Only identified persons can be contacts: an anonymous visitor has no external_id.
    if aliases:
        return "coalesce(nullif(a.user_id, ''), nullif(e.user_id, ''))"
    return "nullif(e.user_id, '')"


def engine_query(
    store: EventStore,
    workspace_id: str,
    leaf: c.Event | c.EventTime,
    now: datetime,
    persons: list[str] | None = None,
    *,
    aliases: bool = True,
    sql: Sql | None = None,
) -> EngineQuery:
    """SQL answering the persons (external ids) of ``leaf``, or of its opposite (complement).

    ``persons`` restricts the scan to those people (incremental re-evaluation); ``aliases``
    False when the workspace has none (the join would only cost a probe per event)."""
    sql = sql or Sql(store)
    person = _person_sql(sql, aliases)
    conds = [f"e.event = {sql.p(leaf.event)}"]
    if leaf.where:
        conds.append(where_sql(sql, leaf.where))
    if persons is not None:
        conds.append(sql.in_list(person, list(persons)) if persons else "1 = 0")
    complement = False
    if isinstance(leaf, c.Event):
        window = leaf.window
        if window is not None:
            if window.last_days is not None:
                conds.append(f"e.ts >= {sql.p(now - timedelta(days=window.last_days))}")
            if window.start is not None:
                conds.append(f"e.ts >= {sql.p(window.start)}")
            if window.end is not None:
                conds.append(f"e.ts < {sql.p(window.end)}")
        m = _measure_sql(sql, leaf.measure)
        test = _compare(sql, "m", leaf.op, leaf.value)
        if holds_for_zero(leaf):
            complement = True
            test = f"NOT ({test})"
    else:
        m = "min(e.ts)" if leaf.which == "first" else "max(e.ts)"
        if leaf.op == "before":
            test = f"m < {sql.p(leaf.value)}"
        elif leaf.op == "after":
            test = f"m > {sql.p(leaf.value)}"
        else:
            test = f"m >= {sql.p(now - timedelta(days=leaf.value))}"
    if not aliases and not sql.ch:
        # Without aliases a contact's events are those with its user_id; DuckDB stores their
        # hash (person_key), and grouping on it is cheaper than on the text.
        conds.append("nullif(e.user_id, '') IS NOT NULL")
        inner = sql.events_with_person(
            workspace_id,
            f"any_value(e.user_id) AS person, {m} AS m",
            " AND ".join(conds),
            aliases=False,
        )
        group = "e.person_key"
    else:
        inner = sql.events_with_person(
            workspace_id, f"{person} AS person, {m} AS m", " AND ".join(conds), aliases=aliases
        )
        group = "person"
    text = f"SELECT person FROM ({inner} GROUP BY {group}) t WHERE person IS NOT NULL AND ({test})"
    return EngineQuery(text, dict(sql.params), complement)


def combined_query(
    store: EventStore,
    workspace_id: str,
    leaves: list[c.Event | c.EventTime],
    now: datetime,
    persons: list[str] | None = None,
    *,
    aliases: bool = True,
) -> EngineQuery | None:
    """The behaviour leaves of one ``and`` as one engine query: the people every positive
    leaf selects, EXCEPT those a complemented leaf rules out ("no visit in 14 days" removes
    the visitors inside the engine instead of shipping them to Python). None when no leaf
    is positive (the answer would be a complement)."""
    sql = Sql(store)
    parts = [
        engine_query(store, workspace_id, leaf, now, persons, aliases=aliases, sql=sql)
        for leaf in leaves
    ]
    positives = [q.sql for q in parts if not q.complement]
    negatives = [q.sql for q in parts if q.complement]
    if not positives:
        return None
    wrap = [f"SELECT person FROM ({q}) AS b{i}" for i, q in enumerate(positives + negatives)]
    text = " INTERSECT ".join(wrap[: len(positives)])
    for neg in wrap[len(positives) :]:
        text += " EXCEPT " + neg
    return EngineQuery(text, dict(sql.params), complement=False)


def workspace_has_aliases(store: EventStore, workspace_id: str) -> bool:
    return Sql(store).has_aliases(workspace_id)


def run_engine(store: EventStore, query: EngineQuery) -> set[str]:
    return {row[0] for row in store.query(query.sql, query.params)}


# -- state → OLTP SQL ---------------------------------------------------------------------


@dataclass(frozen=True)
class StateTables:
    """The OLTP tables state leaves read (Core ``Table`` objects, passed in to keep this
    module free of the other domains' imports)."""

    contacts: SaTable
    contact_tags: SaTable
    contact_attributes: SaTable
    participants: SaTable
    referrals: SaTable
    group_members: SaTable
    groups: SaTable
    segment_members: SaTable
    attribute_defs: SaTable
    community_members: SaTable


def _not_null(col: Any, clause: ColumnElement[bool]) -> ColumnElement[bool]:
    return and_(col.is_not(None), clause)


def _compare_col(col: Any, op: str, value: Any, now: datetime, typ: str) -> ColumnElement[bool]:
    """A two-valued comparison: an unset value satisfies only neq / not_in / is_not_set."""
    if op == "is_set":
        return col.is_not(None)
    if op == "is_not_set":
        return col.is_(None)
    if op == "neq":
        return or_(col.is_(None), col != value)
    if op == "not_in":
        return or_(col.is_(None), col.not_in(list(value)))
    clause: ColumnElement[bool]
    if op == "eq":
        clause = col == value
    elif op == "in":
        clause = col.in_(list(value))
    elif op in ("lt", "before"):
        clause = col < value
    elif op == "lte":
        clause = col <= value
    elif op in ("gt", "after"):
        clause = col > value
    elif op == "gte":
        clause = col >= value
    elif op == "between":
        clause = and_(col >= value[0], col <= value[1])
    elif op == "within_last_days":
        since = now - timedelta(days=value)
        clause = col >= (since.date() if typ == "date" else since)
    elif op == "contains":
        clause = func.lower(col).contains(str(value).lower(), autoescape=True)
    else:  # validate() admits no other op
        raise ValueError(op)
    return _not_null(col, clause)


_VALUE_COLUMN = {
    "string": "value_str",
    "number": "value_num",
    "date": "value_date",
    "datetime": "value_date",
    "bool": "value_bool",
}


def state_clause(
    t: StateTables, node: c.Condition, now: datetime, ws: str, *, few: bool = False
) -> ColumnElement[bool]:
    """The boolean clause over ``t.contacts`` for a subtree of state leaves only. Subqueries
    name the workspace so they use the (workspace_id, …) indexes.

    ``few``: the query is limited to a few listed contacts, so tags, custom attributes and
    segment membership are probed per contact (EXISTS on their primary keys) instead of
    listing everyone who has the tag (SQLite materializes an IN subquery whole)."""
    contacts = t.contacts
    if isinstance(node, c.And):
        return and_(true(), *(state_clause(t, n, now, ws, few=few) for n in node.items))
    if isinstance(node, c.Or):
        return or_(false(), *(state_clause(t, n, now, ws, few=few) for n in node.items))
    if isinstance(node, c.Not):
        return not_(state_clause(t, node.item, now, ws, few=few))
    if isinstance(node, c.Attribute):
        key = node.custom_key
        if key is None:
            return _compare_col(contacts.c[node.attribute], node.op, node.value, now, node.type)
        ca = t.contact_attributes
        col = ca.c[_VALUE_COLUMN[node.type]]
        keyed = select(ca.c.contact_id).where(ca.c.workspace_id == ws, ca.c.key == key)
        if few:
            keyed = keyed.where(ca.c.contact_id == contacts.c.id)
        if node.op in ("neq", "not_in", "is_not_set"):
            # "unset" counts as different: the contact has no row whose value matches.
            positive = {"neq": "eq", "not_in": "in", "is_not_set": "is_set"}[node.op]
            matched = keyed.where(_compare_col(col, positive, node.value, now, node.type))
            return contacts.c.id.not_in(matched)
        return contacts.c.id.in_(
            keyed.where(_compare_col(col, node.op, node.value, now, node.type))
        )
    if isinstance(node, c.Tags):
        ct = t.contact_tags
        tagged = select(ct.c.contact_id).where(
            ct.c.workspace_id == ws, ct.c.tag_id.in_(list(node.tags))
        )
        if few:
            own = tagged.where(ct.c.contact_id == contacts.c.id)
            if node.match == "any":
                return own.exists()
            if node.match == "none":
                return ~own.exists()
            return own.with_only_columns(func.count()).scalar_subquery() == len(node.tags)
        if node.match == "any":
            return contacts.c.id.in_(tagged)
        if node.match == "none":
            return contacts.c.id.not_in(tagged)
        all_of = tagged.group_by(ct.c.contact_id).having(func.count() == len(node.tags))
        return contacts.c.id.in_(all_of)
    if isinstance(node, c.Campaign):
        return contacts.c.id.in_(_campaign_select(t, node, ws))
    if isinstance(node, c.SegmentRef):
        sm = t.segment_members
        removed = select(sm.c.contact_id).where(
            sm.c.segment_id == node.segment_id, sm.c.source == "manual_remove"
        )
        present = select(sm.c.contact_id).where(
            sm.c.segment_id == node.segment_id, sm.c.source.in_(("computed", "manual_add"))
        )
        if few:
            removed = removed.where(sm.c.contact_id == contacts.c.id)
            present = present.where(sm.c.contact_id == contacts.c.id)
            member = and_(present.exists(), ~removed.exists())
        else:
            member = and_(contacts.c.id.in_(present), contacts.c.id.not_in(removed))
        return member if node.member else not_(member)
    if isinstance(node, c.Community):
        members = _community_select(t, node, now, ws)
        if few:
            return members.where(t.community_members.c.contact_id == contacts.c.id).exists()
        return contacts.c.id.in_(members)
    if isinstance(node, c.Channel):
        col = contacts.c.first_channel if node.which == "first" else contacts.c.last_channel
        return _not_null(col, col.in_(list(node.values)))
    raise TypeError(f"not a state condition: {type(node).__name__}")


_COMMUNITY_STATUS = {
    "joined": (("joined",), "joined_at"),
    "routed": (("routed",), "routed_at"),
    "left": (("left", "removed"), "left_at"),
    "any": (("routed", "joined", "left", "removed"), "routed_at"),
}


def _community_select(t: StateTables, node: c.Community, now: datetime, ws: str) -> Any:
    """The contacts holding a community membership row in the given state. Rows of people not
    yet known as contacts (a visitor's scan) have no contact_id and never match; the
    ``contact_id IS NOT NULL`` keeps ``not`` two-valued."""
    cm = t.community_members
    statuses, time_column = _COMMUNITY_STATUS[node.status]
    stmt = select(cm.c.contact_id).where(
        cm.c.workspace_id == ws, cm.c.contact_id.is_not(None), cm.c.status.in_(statuses)
    )
    if node.community_id:
        stmt = stmt.where(cm.c.community_id == node.community_id)
    if node.group_id:
        stmt = stmt.where(cm.c.group_id == node.group_id)
    if node.tier:
        stmt = stmt.where(cm.c.tier == node.tier)
    if node.within_last_days is not None:
        stmt = stmt.where(cm.c[time_column] >= now - timedelta(days=node.within_last_days))
    return stmt


def _campaign_select(t: StateTables, node: c.Campaign, ws: str) -> Any:
    if node.status == "joined":
        p = t.participants
        stmt = select(p.c.contact_id).where(p.c.workspace_id == ws)
        if node.campaign_id:
            stmt = stmt.where(p.c.campaign_id == node.campaign_id)
        return (
            stmt
            if node.min <= 1
            else stmt.group_by(p.c.contact_id).having(func.count() >= node.min)
        )
    if node.status == "invited":
        r = t.referrals
        stmt = select(r.c.referrer_contact_id).where(
            r.c.workspace_id == ws, r.c.status == "approved", r.c.invalidated_at.is_(None)
        )
        if node.campaign_id:
            stmt = stmt.where(r.c.campaign_id == node.campaign_id)
        return stmt.group_by(r.c.referrer_contact_id).having(func.count() >= node.min)
    gm, g = t.group_members, t.groups
    stmt = (
        select(gm.c.contact_id)
        .join(g, g.c.id == gm.c.group_id)
        .where(g.c.workspace_id == ws, g.c.status == "success")
    )
    if node.campaign_id:
        stmt = stmt.where(g.c.campaign_id == node.campaign_id)
    return stmt.group_by(gm.c.contact_id).having(func.count() >= node.min)


__all__ = [
    "EngineQuery",
    "StateTables",
    "engine_query",
    "holds_for_zero",
    "run_engine",
    "state_clause",
    "workspace_has_aliases",
]
