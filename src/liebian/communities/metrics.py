"""Group metrics from the event store, per group, tier or community, by local day and over a
range: members at the end of each day, joins, leaves, 退群率, entry views and 入群转化率, messages and active members (over the
last 7/14/30 days of the range), violations, and the conversions and GMV of people after they
joined. One SQL text per question for DuckDB and ClickHouse alike (analytics/sql.py); nothing
is aggregated in Python but the day rows' running member count (a sum per key down ≤ 400
days). Current member counts and invitations come from the OLTP tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from operator import itemgetter
from typing import Any, Literal
from zoneinfo import ZoneInfo

import orjson
from pydantic import BaseModel, Field, TypeAdapter

from liebian.analytics.common import ratio
from liebian.analytics.sql import Sql, check_tz, to_utc
from liebian.events.store import duckdb_community
from liebian.events.store.base import EventStore

By = Literal["group", "tier", "community"]
EVENTS = duckdb_community.EVENTS


class DayRow(BaseModel):
    day: str
    key: str
    views: int
    routed: int
    joins: int
    leaves: int
    messages: int
    active_members: int
    violations: int
    members: int = Field(
        description="成员 at the end of the day: joins − leaves of the key's events before the"
        " range, plus this range's joins − leaves up to and including the day (the same events"
        " as joins and leaves; a day with members but no events has a row of zero counts)"
    )


class SummaryRow(BaseModel):
    key: str
    viewers: int
    joins: int
    leaves: int
    leave_rate: float = Field(description="leaves / joins over the range")
    join_rate: float = Field(
        description="入群转化率: people who joined / people who viewed the entry page"
    )
    messages: int
    violations: int
    active_7d: int
    active_14d: int
    active_30d: int
    messages_7d: int
    messages_14d: int
    messages_30d: int
    first_day_done: int = Field(
        default=0, description="people who did a first-day task (首日任务) within 24 h of joining"
    )
    first_day_rate: float = Field(default=0.0, description="first_day_done / people who joined")
    members: int = Field(
        default=0, description="members now: people joined and not left (OLTP, not the range)"
    )
    invitations: int = Field(
        default=0,
        description="people given a place in the range through an invitation code of a member"
        " of this key (the inviter's group or tier; OLTP, not events)",
    )
    conversions: int = Field(description="revenue events of members after their join")
    gmv: int = Field(description="their revenue in 分")


class MetricsOut(BaseModel):
    by: By
    tz: str
    days: list[DayRow]
    summary: list[SummaryRow]


def _table(store: EventStore) -> str | None:
    """The store's table of community events with their ids as columns (``community_events``,
    kept at load: events/store/duckdb_community.py), or None (ClickHouse: from the events)."""
    return getattr(store, "community_table", None)


def _prop(sql: Sql, key: str, table: str | None = None) -> str:
    """A string property we wrote ourselves (always a string when present): its column in the
    community table, else one JSON read per row, without analytics' type check (which parses
    the document twice)."""
    if table is not None:
        return f"e.{key}"
    if sql.ch:
        return f"JSONExtractString(e.properties, {sql.p(key)})"
    return f"coalesce(json_extract_string(e.properties, {sql.p('$.' + key)}), '')"


def _key(sql: Sql, by: By, table: str | None) -> str:
    if by == "community":
        return "''"
    return _prop(sql, "group_id" if by == "group" else "tier", table)


@dataclass
class Metrics:
    """An answer before its day rows become objects: ``days`` are tuples in DayRow's field
    order (≈91,000 for 1,000 groups over 90 days). ``model()`` gives the validated MetricsOut;
    ``json()`` the same document as bytes without a model per day row (the endpoint's)."""

    by: By
    tz: str
    days: list[tuple[Any, ...]]
    summary: list[SummaryRow]

    def model(self) -> MetricsOut:
        days = _DAY_ROWS.validate_python(
            [dict(zip(_DAY_FIELDS, r, strict=True)) for r in self.days]
        )
        return MetricsOut(by=self.by, tz=self.tz, days=days, summary=self.summary)

    def json(self) -> bytes:
        return orjson.dumps({
            "by": self.by, "tz": self.tz,
            "days": [dict(zip(_DAY_FIELDS, r, strict=True)) for r in self.days],
            "summary": [r.model_dump(mode="json") for r in self.summary],
        })  # fmt: skip


def group_metrics(
    store: EventStore,
    workspace_id: str,
    community_id: str,
    start: datetime,
    end: datetime,
    by: By = "group",
    tz: str = "Asia/Shanghai",
) -> MetricsOut:
    return compute(store, workspace_id, community_id, start, end, by, tz).model()


def compute(
    store: EventStore,
    workspace_id: str,
    community_id: str,
    start: datetime,
    end: datetime,
    by: By = "group",
    tz: str = "Asia/Shanghai",
) -> Metrics:
    tz = check_tz(tz)
    start, end = to_utc(start), to_utc(end)
    days = _kept_days(store, workspace_id, community_id, start, end, by, tz)
    if days is None:
        days = _days(store, workspace_id, community_id, start, end, by, tz)
    before = _members_before(store, workspace_id, community_id, start, by)
    days = _with_members(days, before, start, end, tz)
    summary = _summary(store, workspace_id, community_id, start, end, by)
    return Metrics(by, tz, days, summary)


def _scope(
    sql: Sql,
    community_id: str,
    start: datetime | None,
    end: datetime,
    table: str | None,
    events: tuple[str, ...] = EVENTS,
) -> str:
    """The community's events in [start, end) (from the beginning when start is None),
    of ``events`` (all the community's by default)."""
    since = [f"e.ts >= {sql.p(start)}"] if start is not None else []
    if table is not None:  # only the community events, their ids as columns
        return " AND ".join([
            f"e.community_id = {sql.p(community_id)}", *since, f"e.ts < {sql.p(end)}",
            *([sql.in_list("e.event", list(events))] if events != EVENTS else []),
        ])  # fmt: skip
    return " AND ".join([
        *since, f"e.ts < {sql.p(end)}", sql.in_list("e.event", list(events)),
        # A cheap substring test first: most events of a workspace are not this community's.
        f"e.properties LIKE {sql.p('%' + community_id + '%')}",
        f"{_prop(sql, 'community_id')} = {sql.p(community_id)}",
    ])  # fmt: skip


def _members_before(
    store: EventStore, ws: str, community_id: str, start: datetime, by: By
) -> dict[str, int]:
    """Per key, joins − leaves of the community's events before ``start``: its members when
    the range begins, counted as the day rows count joins and leaves (events, not people)."""
    sql = Sql(store)
    table = _table(store)
    inner = sql.events_with_person(
        ws, f"{_key(sql, by, table)} AS k, e.event AS ev",
        _scope(sql, community_id, None, start, table, ("group_joined", "group_left")),
        aliases=False, source=table or "",
    )  # fmt: skip
    rows = sql.run(
        "SELECT k, sum(CASE WHEN ev = 'group_joined' THEN 1 ELSE -1 END)"
        f" FROM ({inner}) t GROUP BY k"
    )
    return {str(r[0]): int(r[1]) for r in rows if int(r[1]) != 0}


def _with_members(
    days: list[tuple[Any, ...]], before: dict[str, int], start: datetime, end: datetime, tz: str
) -> list[tuple[Any, ...]]:
    """The day rows (sorted by day, key) each with the key's members at the end of its day
    appended: ``before`` plus the running joins − leaves. A key with members on a local day
    of the range without a row of its own gets a row of zero counts for that day, so every
    day of the range shows each key's members."""
    zone = ZoneInfo(tz)
    day, last = start.astimezone(zone).date(), (end - _TICK).astimezone(zone).date()
    labels = []  # every local day of the range
    while day <= last:
        labels.append(day.isoformat())
        day += timedelta(days=1)
    members = dict(before)
    held = {k for k, n in members.items() if n}  # the keys with members so far
    zeros = (0,) * (len(_DAY_FIELDS) - 3)
    out: list[tuple[Any, ...]] = []

    def close(label: str, first: int, seen: set[str]) -> None:
        """The day's rows are out[first:]: add a zero-count row for each key with members
        and no row that day, in key order."""
        missing = held.difference(seen)
        if missing:
            out[first:] = sorted(
                [*out[first:], *((label, k, *zeros, members[k]) for k in missing)],
                key=itemgetter(1),
            )

    append = out.append
    at = 0  # labels[at:] are the days not yet closed
    cur, first = "", 0
    seen: set[str] = set()
    for r in days:  # one pass (≈91,000 rows for 1,000 groups × 90 days): keep it lean
        if r[0] != cur:
            if cur:
                close(cur, first, seen)
            while at < len(labels) and labels[at] < r[0]:
                if labels[at] != cur:  # a day without rows
                    close(labels[at], len(out), set())
                at += 1
            if at < len(labels) and labels[at] == r[0]:
                at += 1
            cur, first, seen = r[0], len(out), set()
        k = r[1]
        m = members.get(k, 0) + r[4] - r[5]
        members[k] = m
        seen.add(k)
        if m:
            held.add(k)
        else:
            held.discard(k)
        append((*r, m))
    if cur:
        close(cur, first, seen)
    for label in labels[at:]:
        if label != cur:
            close(label, len(out), set())
    return out


def _local_day(sql: Sql, tz: str, start: datetime, end: datetime) -> str:
    """The local date of ``e.ts``. A zone with one UTC offset over the whole range (Asia/
    Shanghai always) is a fixed shift — several times cheaper on DuckDB than its ``timezone()``
    per row; otherwise, and on ClickHouse (``toDate(ts, tz)`` is cheap there), the zone."""
    if not sql.ch:
        zone = ZoneInfo(tz)
        offsets = {
            (start + timedelta(hours=h)).astimezone(zone).utcoffset()
            for h in range(0, int((end - start).total_seconds() // 3600) + 1, 1)
        }
        if len(offsets) == 1:
            offset = next(iter(offsets))
            seconds = int(offset.total_seconds()) if offset is not None else 0
            return f"CAST(e.ts + to_seconds({sql.p(seconds)}) AS DATE)"
    return sql.local_date("e.ts", tz)


def _days(
    store: EventStore, ws: str, community_id: str, start: datetime, end: datetime, by: By, tz: str
) -> list[tuple[Any, ...]]:
    """One statement for every (day, key): events are first counted per (day, key, event,
    sender) — a message's sender kept, other events' people folded to one — so the distinct
    senders of a day are a count of rows, not a DISTINCT per (day, key) over every event."""
    sql = Sql(store)
    table = _table(store)
    msg = "ev = 'group_message'"
    select = (
        f"{_local_day(sql, tz, start, end)} AS day, {_key(sql, by, table)} AS k, e.event AS ev, "
        f"CASE WHEN e.event = 'group_message' THEN {sql.person_key(False)} ELSE 0 END AS who"
    )
    inner = sql.events_with_person(
        ws, select, _scope(sql, community_id, start, end, table), aliases=False,
        source=table or "",
    )  # fmt: skip
    counted = f"SELECT day, k, ev, who, count(*) AS n FROM ({inner}) t GROUP BY day, k, ev, who"
    sums = ", ".join(
        [sql.sum_if("n", f"ev = '{ev}'") for ev in ("community_view", "group_routed",
                                                    "group_joined", "group_left")]
        + [sql.sum_if("n", msg), sql.count_if(msg), sql.sum_if("n", "ev = 'group_violation'")]
    )  # fmt: skip
    return sql.run(
        f"SELECT {sql.date_str('day')}, k, {sums} FROM ({counted}) c GROUP BY day, k"
        " ORDER BY day, k"
    )


_DAY_FIELDS = tuple(DayRow.model_fields)
# ≈90,000 rows for 1,000 groups × 90 days: validated as one list by pydantic's core (a Python
# loop of model constructors cost more than the query).
_DAY_ROWS = TypeAdapter(list[DayRow])


def _day_start(day: date, zone: ZoneInfo) -> datetime | None:
    """The first instant (UTC) of the local ``day``, or None where local midnight is not that
    (a zone whose clocks change at midnight): the caller then counts from the events."""
    at = datetime.combine(day, time(0), zone).astimezone(UTC)
    if at.astimezone(zone).date() != day or (at - _TICK).astimezone(zone).date() >= day:
        return None
    return at


_TICK = timedelta(microseconds=1)


def _kept_days(
    store: EventStore, ws: str, community_id: str, start: datetime, end: datetime, by: By, tz: str
) -> list[tuple[Any, ...]] | None:
    """The day rows from the counts the load keeps per (local day, key) in the workspace's
    rollup zone (``community_days``, events/store/duckdb_community.py) — whole local days
    only; a first or last day the range covers in part is counted from the events as
    ``_days`` does. None when the store keeps no such table or keeps it in another zone."""
    table: str | None = getattr(store, "community_days_table", None)
    if table is None or store.rollup_zone(ws) != tz:
        return None
    zone = ZoneInfo(tz)
    first, last = start.astimezone(zone).date(), end.astimezone(zone).date()
    head_end = _day_start(first, zone)
    if head_end is None or head_end != start:  # the first day is partial (or odd)
        head_end = _day_start(first + timedelta(days=1), zone)
    tail_start = _day_start(last, zone)
    if head_end is None or tail_start is None or head_end >= tail_start:
        return None  # no whole day in the range (or a zone with odd midnights)
    sql = Sql(store)
    kept = sql.run(
        f"SELECT strftime(day, '%Y-%m-%d'), key, {', '.join(duckdb_community.DAY_COUNTERS)}"
        f" FROM {table} WHERE workspace_id = {sql.p(ws)}"
        f" AND community_id = {sql.p(community_id)} AND scope = {sql.p(by)}"
        f" AND day >= {sql.p(head_end.astimezone(zone).date())}"
        f" AND day < {sql.p(last)} ORDER BY day, key"
    )
    head = _days(store, ws, community_id, start, head_end, by, tz) if start < head_end else []
    tail = _days(store, ws, community_id, tail_start, end, by, tz) if tail_start < end else []
    return head + kept + tail


def _summary(
    store: EventStore, ws: str, community_id: str, start: datetime, end: datetime, by: By
) -> list[SummaryRow]:
    """One statement for every key over the range: events counted per (key, event, person)
    first (with the counts inside the last 7/14/30 days), so each distinct count is a count
    of rows. Only the distinct counts need the person: viewers, joiners, first-day tasks and
    the senders of the last 30 days; other events (older messages, leaves, violations) are
    folded into one row per (key, event) — a range's messages are mostly older than 30 days."""
    sql = Sql(store)
    table = _table(store)
    windows = {n: sql.p(end - timedelta(days=n)) for n in (7, 14, 30)}
    person = (
        "CASE WHEN e.event IN ('community_view', 'group_joined', 'first_day_task')"
        f" OR (e.event = 'group_message' AND e.ts >= {windows[30]})"
        f" THEN {sql.person_key(False)} ELSE 0 END"
    )
    # The event as a small number (others, e.g. group_routed, 0: counted nowhere here): the
    # outer GROUP BY then sums CASEs over integers — FILTERed aggregates comparing the name
    # on each of ~500,000 rows cost more than the inner GROUP BY.
    code = " ".join(f"WHEN '{ev}' THEN {i}" for ev, i in _SUMMARY_CODES.items())
    select = (
        f"{_key(sql, by, table)} AS k, CASE e.event {code} ELSE 0 END AS ev, e.ts AS ts,"
        f" {person} AS who"
    )
    inner = sql.events_with_person(
        ws, select, _scope(sql, community_id, start, end, table), aliases=False,
        source=table or "",
    )  # fmt: skip
    per_person = ", ".join(f"{sql.count_if(f'ts >= {w}')} AS n{n}" for n, w in windows.items())
    counted = f"SELECT k, ev, who, count(*) AS n, {per_person} FROM ({inner}) t GROUP BY k, ev, who"
    view, joined, left, msg, violation, first_day = (f"ev = {i}" for i in _SUMMARY_CODES.values())

    def c(cond: str) -> str:
        return f"sum(CASE WHEN {cond} THEN 1 ELSE 0 END)"

    def s(expr: str, cond: str) -> str:
        return f"sum(CASE WHEN {cond} THEN {expr} ELSE 0 END)"

    active = ", ".join(f"{c(f'{msg} AND n{n} > 0')}, {s(f'n{n}', msg)}" for n in windows)
    counts = ", ".join([
        c(view), c(joined), s("n", joined), s("n", left), s("n", msg), s("n", violation),
        c(first_day),
    ])  # fmt: skip
    rows = sql.run(f"SELECT k, {counts}, {active} FROM ({counted}) c GROUP BY k ORDER BY k")
    # 入群转化率 is per community: the entry page belongs to no group.
    viewers_total = sum(int(r[1]) for r in rows)
    money = _money(store, ws, community_id, start, end, by)
    out = []
    for r in rows:
        key = str(r[0])
        if by != "community" and key == "":
            continue  # the entry page views (no group): counted in join_rate's denominator
        joined_people, joins, leaves = int(r[2]), int(r[3]), int(r[4])
        conv, gmv = money.get(key, (0, 0))
        out.append(SummaryRow(
            key=key, viewers=int(r[1]) if by == "community" else viewers_total, joins=joins,
            leaves=leaves, leave_rate=ratio(leaves, joins),
            join_rate=ratio(joined_people, viewers_total), messages=int(r[5]),
            violations=int(r[6]), first_day_done=int(r[7]),
            first_day_rate=ratio(int(r[7]), joined_people), active_7d=int(r[8]),
            messages_7d=int(r[9]), active_14d=int(r[10]), messages_14d=int(r[11]),
            active_30d=int(r[12]), messages_30d=int(r[13]), conversions=conv, gmv=gmv,
        ))  # fmt: skip
    return out


_SUMMARY_CODES = {"community_view": 1, "group_joined": 2, "group_left": 3, "group_message": 4,
                  "group_violation": 5, "first_day_task": 6}  # fmt: skip


def _money(
    store: EventStore, ws: str, community_id: str, start: datetime, end: datetime, by: By
) -> dict[str, tuple[int, int]]:
    """Revenue events of each key's members after their first join in the range."""
    sql = Sql(store)
    table = _table(store)
    ws_p = sql.p(ws)
    person = sql.person(False)
    joined = (
        f"SELECT {_key(sql, by, table)} AS k, {person} AS person, min(e.ts) AS jt"
        f" FROM {table or sql.events} e"
        f" WHERE e.workspace_id = {ws_p} AND e.event = 'group_joined'"
        f" AND {_scope(sql, community_id, start, end, table)} GROUP BY k, person"
    )
    rows = sql.run(
        f"SELECT j.k, count(*), sum(e.revenue) FROM {sql.events} e"
        f" JOIN ({joined}) j ON j.person = {person}"
        f" WHERE e.workspace_id = {ws_p} AND e.revenue > 0 AND e.ts >= j.jt"
        f" AND e.ts < {sql.p(end)} GROUP BY j.k"
    )
    return {str(r[0]): (int(r[1]), int(r[2] or 0)) for r in rows}
