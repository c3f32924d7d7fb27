"""LTV by acquisition channel and cohort; CAC and ROI from spend passed in.

A person's cohort is the local day/week/month of their first event ever; their channel is
their first-touch channel (earliest event with a channel). LTV = revenue of the cohort's
people (``revenue_event`` events, within ``horizon_days`` of their first event if given)
divided by the cohort's size, in minor units.
"""

from __future__ import annotations

from collections import defaultdict

from liebian.analytics.common import none_if_empty
from liebian.analytics.schemas import (
    CacQuery,
    CacResult,
    CacRow,
    LtvQuery,
    LtvResult,
    LtvRow,
)
from liebian.analytics.sql import Sql, check_tz
from liebian.events.store.base import EventStore


def _people_sql(sql: Sql, workspace_id: str) -> str:
    """Per person: first event time and first-touch channel."""
    key = f"({sql.ms('e.ts')}, e.event_id)"
    ch = sql.arg_min_if("e.channel", key, f"{sql.col('channel')} <> ''")
    sel = f"{sql.person()} AS person, min(e.ts) AS t0, {ch} AS ch"
    return f"{sql.events_with_person(workspace_id, sel)} GROUP BY person"


def _revenue_rows(
    sql: Sql,
    workspace_id: str,
    revenue_event: str,
    cohort_expr: str,
    q_from: object,
    q_to: object,
    horizon_ms: int | None,
) -> str:
    rev_sel = f"{sql.person()} AS person, {sql.ms('e.ts')} AS ms, {sql.col('revenue')} AS rev"
    rev_where = f"e.event = {sql.p(revenue_event)}"
    horizon = f" AND r.ms <= {sql.ms('p.t0')} + {sql.p(horizon_ms)}" if horizon_ms else ""
    return (
        f"WITH people AS ({_people_sql(sql, workspace_id)}),"
        f" revs AS ({sql.events_with_person(workspace_id, rev_sel, rev_where)}),"
        f" cohort AS (SELECT person, t0, coalesce(ch, '') AS ch, {cohort_expr} AS cohort"
        f" FROM people p WHERE p.t0 >= {sql.p(q_from)} AND p.t0 < {sql.p(q_to)}),"
        " rev_by_person AS (SELECT p.person AS person, sum(r.rev) AS rev FROM cohort p"
        " INNER JOIN revs r ON r.person = p.person"
        f" WHERE r.ms >= {sql.ms('p.t0')}{horizon} GROUP BY p.person)"
        " SELECT c.cohort, c.ch, count(*) AS users, sum(coalesce(rp.rev, 0)) AS revenue"
        " FROM cohort c LEFT JOIN rev_by_person rp ON rp.person = c.person"
        " GROUP BY c.cohort, c.ch"
    )


def ltv(store: EventStore, workspace_id: str, q: LtvQuery) -> LtvResult:
    tz = check_tz(q.tz)
    sql = Sql(store)
    day = sql.local_date("p.t0", tz)
    if q.cohort_period == "week":
        day = sql.week_start(day)
    elif q.cohort_period == "month":
        day = f"toStartOfMonth({day})" if sql.ch else f"CAST(date_trunc('month', {day}) AS DATE)"
    horizon = q.horizon_days * 86_400_000 if q.horizon_days else None
    text = _revenue_rows(
        sql, workspace_id, q.revenue_event, sql.date_str(day), q.from_, q.to, horizon
    )
    rows = sql.run(text)
    out = [
        LtvRow(
            cohort=str(c),
            channel=none_if_empty(str(ch)),
            users=int(u),
            revenue=int(r or 0),
            ltv=round(int(r or 0) / int(u), 2),
        )
        for c, ch, u, r in rows
    ]
    out.sort(key=lambda r: (r.cohort, r.channel or ""))
    return LtvResult(rows=out)


def cac(store: EventStore, workspace_id: str, q: CacQuery) -> CacResult:
    """CAC = spend / new people acquired by the channel in [from, to); ROI = (revenue of
    those people in the same range - spend) / spend."""
    sql = Sql(store)
    text = _revenue_rows(sql, workspace_id, q.revenue_event, "''", q.from_, q.to, None)
    # Revenue counts only inside the range, like the spend it is compared with.
    text = text.replace(
        " GROUP BY p.person)", f" AND r.ms < {sql.ms(sql.p(q.to))} GROUP BY p.person)", 1
    )
    per_channel: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for _cohort, ch, users, revenue in sql.run(text):
        per_channel[str(ch)][0] += int(users)
        per_channel[str(ch)][1] += int(revenue or 0)
    spend: dict[str, int] = defaultdict(int)
    for s in q.spend:
        spend[s.channel] += s.amount
    rows = []
    for ch in sorted(set(per_channel) | set(spend)):
        users, revenue = per_channel.get(ch, [0, 0])
        cost = spend.get(ch, 0)
        rows.append(
            CacRow(
                channel=none_if_empty(ch),
                spend=cost,
                new_users=users,
                revenue=revenue,
                cac=round(cost / users, 2) if cost and users else None,
                roi=round((revenue - cost) / cost, 6) if cost else None,
            )
        )
    return CacResult(rows=rows)
