"""Group metrics from the event store, per group, tier or community, by local day and over a
range: joins, leaves, 退群率, entry views and 入群转化率, messages and active members (over the
last 7/14/30 days of the range), violations, and the conversions and GMV of people after they
joined. One SQL text per question for DuckDB and ClickHouse alike (analytics/sql.py); nothing
is aggregated in Python. Current member counts and invitations come from the OLTP tables.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from liebian.analytics.common import ratio
from liebian.analytics.sql import Sql, check_tz, to_utc
from liebian.events.store.base import EventStore

By = Literal["group", "tier", "community"]
EVENTS = ("community_view", "group_routed", "group_joined", "group_left", "group_message",
          "group_violation")  # fmt: skip


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
    conversions: int = Field(description="revenue events of members after their join")
    gmv: int = Field(description="their revenue in 分")


class MetricsOut(BaseModel):
    by: By
    tz: str
    days: list[DayRow]
    summary: list[SummaryRow]


def _prop(sql: Sql, key: str) -> str:
    """A string property we wrote ourselves (always a string when present): one JSON read per
    row, without analytics' type check (which parses the document twice)."""
    if sql.ch:
        return f"JSONExtractString(e.properties, {sql.p(key)})"
    return f"coalesce(json_extract_string(e.properties, {sql.p('$.' + key)}), '')"


def _key(sql: Sql, by: By) -> str:
    if by == "community":
        return "''"
    return _prop(sql, "group_id" if by == "group" else "tier")


def group_metrics(
    store: EventStore,
    workspace_id: str,
    community_id: str,
    start: datetime,
    end: datetime,
    by: By = "group",
    tz: str = "Asia/Shanghai",
) -> MetricsOut:
    tz = check_tz(tz)
    start, end = to_utc(start), to_utc(end)
    days = _days(store, workspace_id, community_id, start, end, by, tz)
    summary = _summary(store, workspace_id, community_id, start, end, by)
    return MetricsOut(by=by, tz=tz, days=days, summary=summary)


def _scope(sql: Sql, community_id: str, start: datetime, end: datetime) -> str:
    return " AND ".join([
        f"e.ts >= {sql.p(start)}", f"e.ts < {sql.p(end)}", sql.in_list("e.event", list(EVENTS)),
        # A cheap substring test first: most events of a workspace are not this community's.
        f"e.properties LIKE {sql.p('%' + community_id + '%')}",
        f"{_prop(sql, 'community_id')} = {sql.p(community_id)}",
    ])  # fmt: skip


def _days(
    store: EventStore, ws: str, community_id: str, start: datetime, end: datetime, by: By, tz: str
) -> list[DayRow]:
    sql = Sql(store)
    select = (
        f"{sql.date_str(sql.local_date('e.ts', tz))} AS day, {_key(sql, by)} AS k, e.event AS ev,"
        f" {sql.person(False)} AS person"
    )
    inner = sql.events_with_person(ws, select, _scope(sql, community_id, start, end), aliases=False)
    c = sql.count_if
    counts = ", ".join(
        [c(f"ev = '{ev}'") for ev in ("community_view", "group_routed", "group_joined",
                                      "group_left", "group_message")]
        + [sql.uniq_if("person", "ev = 'group_message'"), c("ev = 'group_violation'")]
    )  # fmt: skip
    rows = sql.run(f"SELECT day, k, {counts} FROM ({inner}) t GROUP BY day, k ORDER BY day, k")
    return [
        DayRow(day=str(r[0]), key=str(r[1]), views=int(r[2]), routed=int(r[3]), joins=int(r[4]),
               leaves=int(r[5]), messages=int(r[6]), active_members=int(r[7]),
               violations=int(r[8]))
        for r in rows
    ]  # fmt: skip


def _summary(
    store: EventStore, ws: str, community_id: str, start: datetime, end: datetime, by: By
) -> list[SummaryRow]:
    sql = Sql(store)
    select = f"{_key(sql, by)} AS k, e.event AS ev, e.ts AS ts, {sql.person(False)} AS person"
    inner = sql.events_with_person(ws, select, _scope(sql, community_id, start, end), aliases=False)
    windows = {n: sql.p(end - timedelta(days=n)) for n in (7, 14, 30)}
    msg = "ev = 'group_message'"
    c = sql.count_if
    active = ", ".join(
        f"{sql.uniq_if('person', f'{msg} AND ts >= {w}')}, {c(f'{msg} AND ts >= {w}')}"
        for w in windows.values()
    )
    counts = ", ".join([
        sql.uniq_if("person", "ev = 'community_view'"), sql.uniq_if("person", "ev = 'group_joined'"),
        c("ev = 'group_joined'"), c("ev = 'group_left'"), c(msg), c("ev = 'group_violation'"),
    ])  # fmt: skip
    rows = sql.run(f"SELECT k, {counts}, {active} FROM ({inner}) t GROUP BY k ORDER BY k")
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
            violations=int(r[6]), active_7d=int(r[7]), messages_7d=int(r[8]),
            active_14d=int(r[9]), messages_14d=int(r[10]), active_30d=int(r[11]),
            messages_30d=int(r[12]), conversions=conv, gmv=gmv,
        ))  # fmt: skip
    return out


def _money(
    store: EventStore, ws: str, community_id: str, start: datetime, end: datetime, by: By
) -> dict[str, tuple[int, int]]:
    """Revenue events of each key's members after their first join in the range."""
    sql = Sql(store)
    ws_p = sql.p(ws)
    person = sql.person(False)
    joined = (
        f"SELECT {_key(sql, by)} AS k, {person} AS person, min(e.ts) AS jt FROM {sql.events} e"
        f" WHERE e.workspace_id = {ws_p} AND e.event = 'group_joined'"
        f" AND e.ts >= {sql.p(start)} AND e.ts < {sql.p(end)}"
        f" AND e.properties LIKE {sql.p('%' + community_id + '%')}"
        f" AND {_prop(sql, 'community_id')} = {sql.p(community_id)} GROUP BY k, person"
    )
    rows = sql.run(
        f"SELECT j.k, count(*), sum(e.revenue) FROM {sql.events} e"
        f" JOIN ({joined}) j ON j.person = {person}"
        f" WHERE e.workspace_id = {ws_p} AND e.revenue > 0 AND e.ts >= j.jt"
        f" AND e.ts < {sql.p(end)} GROUP BY j.k"
    )
    return {str(r[0]): (int(r[1]), int(r[2] or 0)) for r in rows}
