"""Retention matrices: cohorts by a person's first ``start_event`` in [from, to).

A cohort is the local day (or Monday-started week) of that first start event in ``tz``.
``retained[i]`` counts cohort members with a ``return_event`` at or after their start event
whose local day falls in period i of the cohort (period 0 is the cohort's own day/week), for
i = 0..periods inclusive. Return events may fall after ``to``; that is the point.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from liebian.analytics.common import none_if_empty, require_events
from liebian.analytics.filters import where_sql
from liebian.analytics.schemas import Cohort, RetentionBreakdown, RetentionQuery, RetentionResult
from liebian.analytics.sql import Sql, check_tz
from liebian.events.store.base import EventStore


def retention(store: EventStore, workspace_id: str, q: RetentionQuery) -> RetentionResult:
    require_events(store, workspace_id, [q.start_event, q.return_event])
    tz = check_tz(q.tz)
    sql = Sql(store)
    days = 1 if q.period == "day" else 7
    first_sel = f"{sql.person()} AS person, min(e.ts) AS t0"
    first_where = (
        f"e.event = {sql.p(q.start_event)} AND e.ts >= {sql.p(q.from_)} AND e.ts < {sql.p(q.to)}"
        f" AND ({where_sql(sql, q.start_where)})"
    )
    cohort_day = sql.local_date("c.t0", tz)
    if days == 7:
        cohort_day = sql.week_start(cohort_day)
    # Return events can only matter up to the last period of the last cohort (+1 day slack
    # for the zone offset); bounding the scan keeps it cheap on long histories.
    horizon = q.to + timedelta(days=days * (q.periods + 1) + 1)
    ret_sel = f"{sql.person()} AS person, e.ts AS ts"
    ret_where = (
        f"e.event = {sql.p(q.return_event)} AND e.ts >= {sql.p(q.from_)}"
        f" AND e.ts < {sql.p(horizon)} AND ({where_sql(sql, q.return_where)})"
    )
    ctes = [
        f"firsts AS ({sql.events_with_person(workspace_id, first_sel, first_where)}"
        " GROUP BY person)",
        f"cohorts AS (SELECT c.person AS person, c.t0 AS t0, {cohort_day} AS cday FROM firsts c)",
        f"rets AS ({sql.events_with_person(workspace_id, ret_sel, ret_where)})",
    ]
    if q.breakdown == "channel":
        ft_key = f"({sql.ms('e.ts')}, e.event_id)"
        ft_sel = f"{sql.person()} AS person, {sql.arg_min('e.channel', ft_key)} AS ch"
        ft_where = f"{sql.col('channel')} <> ''"
        ctes.append(
            f"ft AS ({sql.events_with_person(workspace_id, ft_sel, ft_where)} GROUP BY person)"
        )
        ctes.append(
            "cb AS (SELECT c.person AS person, c.t0 AS t0, c.cday AS cday,"
            " coalesce(ft.ch, '') AS bd FROM cohorts c LEFT JOIN ft ON ft.person = c.person)"
        )
    else:
        ctes.append("cb AS (SELECT person, t0, cday, '' AS bd FROM cohorts)")
    diff = sql.day_diff("c.cday", sql.local_date("r.ts", tz))
    period_expr = f"CAST(floor({diff} / {days}) AS BIGINT)" if days > 1 else diff
    ctes.append(
        f"hits AS (SELECT DISTINCT c.person AS person, c.cday AS cday, c.bd AS bd,"
        f" {period_expr} AS period FROM cb c INNER JOIN rets r ON r.person = c.person"
        f" WHERE r.ts >= c.t0)"
    )
    periods_p = sql.p(q.periods)
    body = (
        f"SELECT {sql.date_str('cday')} AS cstart, bd, -1 AS period, count(*) AS n FROM cb"
        " GROUP BY cday, bd"
        f" UNION ALL SELECT {sql.date_str('cday')} AS cstart, bd, period, count(*) AS n FROM hits"
        f" WHERE period <= {periods_p} GROUP BY cday, bd, period"
    )
    rows = sql.run("WITH " + ", ".join(ctes) + " " + body)

    # (breakdown, cohort start) -> [size, retained...]; assembled here from a small result.
    table: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * (q.periods + 2))
    for cstart, bd, period, n in rows:
        table[(str(bd), str(cstart))][int(period) + 1] += int(n)

    def cohorts(keys: list[tuple[str, str]]) -> list[Cohort]:
        merged: dict[str, list[int]] = defaultdict(lambda: [0] * (q.periods + 2))
        for key in keys:
            for i, v in enumerate(table[key]):
                merged[key[1]][i] += v
        return [Cohort(start=s, size=v[0], retained=v[1:]) for s, v in sorted(merged.items())]

    result = RetentionResult(cohorts=cohorts(list(table)))
    if q.breakdown is not None:
        values = sorted({k[0] for k in table})
        result.breakdown = [
            RetentionBreakdown(
                value=none_if_empty(v), cohorts=cohorts([k for k in table if k[0] == v])
            )
            for v in values
        ]
    return result
