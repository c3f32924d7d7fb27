"""Event counts and unique people by local time bucket, and new vs returning people."""

from __future__ import annotations

from liebian.analytics.common import none_if_empty, require_events
from liebian.analytics.filters import breakdown_expr, where_sql
from liebian.analytics.schemas import (
    CountRow,
    CountsQuery,
    CountsResult,
    NewReturningQuery,
    NewReturningResult,
    NewReturningRow,
)
from liebian.analytics.sql import Sql, check_tz
from liebian.events.store.base import EventStore


def counts(store: EventStore, workspace_id: str, q: CountsQuery) -> CountsResult:
    if q.events:
        require_events(store, workspace_id, q.events)
    tz = check_tz(q.tz)
    sql = Sql(store)
    bucket = sql.local_bucket("e.ts", tz, q.interval)
    bd = breakdown_expr(sql, q.breakdown) if q.breakdown else "''"
    conds = [f"e.ts >= {sql.p(q.from_)}", f"e.ts < {sql.p(q.to)}", where_sql(sql, q.where)]
    if q.events:
        conds.append(sql.in_list("e.event", q.events))
    if not q.include_bots:
        conds.append("NOT e.is_bot")
    select = f"{bucket} AS bucket, {bd} AS bd, {sql.person()} AS person"
    inner = sql.events_with_person(workspace_id, select, " AND ".join(conds))
    rows = sql.run(
        f"SELECT bucket, bd, count(*) AS n, {sql.uniq('person')} AS u FROM ({inner}) t"
        " GROUP BY bucket, bd ORDER BY bucket, bd"
    )
    return CountsResult(
        rows=[
            CountRow(
                bucket=str(b),
                value=none_if_empty(str(v)) if q.breakdown else None,
                count=int(n),
                unique_users=int(u),
            )
            for b, v, n, u in rows
        ]
    )


def new_vs_returning(
    store: EventStore, workspace_id: str, q: NewReturningQuery
) -> NewReturningResult:
    """新老用户: a person is new in the bucket holding their first event ever (any event)."""
    if q.events:
        require_events(store, workspace_id, q.events)
    tz = check_tz(q.tz)
    sql = Sql(store)
    first_sel = f"{sql.person()} AS person, min(e.ts) AS t0"
    firsts = f"{sql.events_with_person(workspace_id, first_sel)} GROUP BY person"
    bucket = sql.local_bucket("e.ts", tz, q.interval)
    conds = [f"e.ts >= {sql.p(q.from_)}", f"e.ts < {sql.p(q.to)}", "NOT e.is_bot"]
    if q.events:
        conds.append(sql.in_list("e.event", q.events))
    act_sel = f"DISTINCT {bucket} AS bucket, {sql.person()} AS person"
    active = sql.events_with_person(workspace_id, act_sel, " AND ".join(conds))
    first_bucket = sql.local_bucket("f.t0", tz, q.interval)
    rows = sql.run(
        f"SELECT act.bucket, {sql.count_if(f'{first_bucket} = act.bucket')} AS new_users,"
        f" {sql.count_if(f'{first_bucket} <> act.bucket')} AS returning_users"
        f" FROM ({active}) act INNER JOIN ({firsts}) f ON f.person = act.person"
        " GROUP BY act.bucket ORDER BY act.bucket"
    )
    return NewReturningResult(
        rows=[
            NewReturningRow(bucket=str(b), new_users=int(n), returning_users=int(r))
            for b, n, r in rows
        ]
    )
