"""Funnels with ClickHouse ``windowFunnel`` semantics (default mode) on both engines.

A person reaches step k when events of steps 1..k occur in order (equal timestamps count as
in order, as windowFunnel sorts by (time, step)) with the k-th at most ``window_seconds``
after the first. Step 1 must fall in [from, to); later steps may run up to the window past
``to`` so people who started late are not cut short. One event may satisfy several steps.

Engine-side formulation (used on DuckDB, and on ClickHouse for the times): one entry per
(event, step it matches); walking a person's entries in (time, step) order, ``f_k`` is the
latest step-1 start of a valid chain ending at a step-k entry. ``f_1`` is the entry's own
time; ``f_k`` = running max of ``f_{k-1}`` over earlier entries if within the window. The
latest start is always the best one (it leaves the most window), so a person reaches step k
iff some ``f_k`` exists — exactly windowFunnel's greedy state. Time to convert to step k is
measured on the person's first entry that completes step k: its time minus its ``f_k``.
On ClickHouse the level itself comes from windowFunnel, and the conformance suite checks
that both agree.
"""

from __future__ import annotations

from datetime import timedelta

from liebian.analytics.common import none_if_empty, ratio, require_events
from liebian.analytics.filters import breakdown_expr, where_sql
from liebian.analytics.schemas import (
    FunnelBreakdown,
    FunnelQuery,
    FunnelResult,
    FunnelStepResult,
)
from liebian.analytics.sql import Sql
from liebian.events.store.base import EventStore


def funnel(store: EventStore, workspace_id: str, q: FunnelQuery) -> FunnelResult:
    events = [s.event for s in q.steps]
    require_events(store, workspace_id, events)
    sql = Sql(store)
    n = len(q.steps)
    window_ms = q.window_seconds * 1000
    w = sql.p(window_ms)

    conds = []
    for i, step in enumerate(q.steps):
        cond = f"e.event = {sql.p(step.event)} AND ({where_sql(sql, step.where)})"
        if i == 0:
            cond += f" AND e.ts < {sql.p(q.to)}"
        conds.append(cond)
    first_touch = q.breakdown == "channel"
    bd = "''" if q.breakdown is None or first_touch else breakdown_expr(sql, q.breakdown)

    select = ", ".join(
        [f"{sql.person()} AS person", f"{sql.ms('e.ts')} AS ms", "e.event_id AS eid", f"{bd} AS bd"]
        + [f"({c}) AS c{i + 1}" for i, c in enumerate(conds)]
    )
    span = (
        f"{sql.in_list('e.event', list(dict.fromkeys(events)))} AND e.ts >= {sql.p(q.from_)}"
        f" AND e.ts < {sql.p(q.to + timedelta(seconds=q.window_seconds))}"
    )
    ctes = [f"base AS ({sql.events_with_person(workspace_id, select, span)})"]
    ctes.append(
        "entries AS ("
        + " UNION ALL ".join(
            f"SELECT person, ms, eid, bd, {k} AS step FROM base WHERE c{k}" for k in range(1, n + 1)
        )
        + ")"
    )
    ctes.append(
        "l1 AS (SELECT person, ms, eid, bd, step, CASE WHEN step = 1 THEN ms END AS f1"
        " FROM entries)"
    )
    for k in range(2, n + 1):
        prev = ", ".join(f"f{j}" for j in range(1, k))
        ctes.append(
            f"l{k} AS (SELECT person, ms, eid, bd, step, {prev}, CASE WHEN step = {k} AND m IS NOT"
            f" NULL AND ms <= m + {w} THEN m END AS f{k} FROM (SELECT person, ms, eid, bd, step,"
            f" {prev}, max(f{k - 1}) OVER (PARTITION BY person ORDER BY ms, step ROWS BETWEEN"
            f" UNBOUNDED PRECEDING AND 1 PRECEDING) AS m FROM l{k - 1}) t)"
        )
    level = (
        "CASE "
        + " ".join(f"WHEN count(f{k}) > 0 THEN {k}" for k in range(n, 1, -1))
        + " ELSE 1 END"
    )
    durations = ", ".join(
        f"{sql.arg_min_if(f'ms - f{k}', 'ms', f'f{k} IS NOT NULL')} AS d{k}"
        for k in range(2, n + 1)
    )
    person_bd = "''" if first_touch else sql.arg_min_if("bd", "(ms, eid)", "step = 1")
    ctes.append(
        f"pp AS (SELECT person, {level} AS level, {durations}, {person_bd} AS bd"
        f" FROM l{n} GROUP BY person HAVING count(f1) > 0)"
    )
    people = "pp"
    if sql.ch:
        # The reached step straight from ClickHouse's own windowFunnel.
        wf_conds = ", ".join(f"c{k}" for k in range(1, n + 1))
        ctes.append(
            f"wf AS (SELECT person, windowFunnel({w})(toUInt64(ms), {wf_conds}) AS wf_level"
            " FROM base GROUP BY person)"
        )
        ctes.append(
            "pw AS (SELECT pp.person AS person, wf.wf_level AS level, "
            + ", ".join(f"pp.d{k} AS d{k}" for k in range(2, n + 1))
            + ", pp.bd AS bd FROM pp INNER JOIN wf ON wf.person = pp.person)"
        )
        people = "pw"
    if first_touch:
        # First-touch channel: the channel of the person's earliest event that has one.
        ft_key = f"({sql.ms('e.ts')}, e.event_id)"
        ft_select = f"{sql.person()} AS person, {sql.arg_min('e.channel', ft_key)} AS ch"
        ft_where = f"{sql.col('channel')} <> ''"
        ctes.append(
            f"ft AS ({sql.events_with_person(workspace_id, ft_select, ft_where)} GROUP BY person)"
        )
        ctes.append(
            "pb AS (SELECT p.person AS person, p.level AS level, "
            + ", ".join(f"p.d{k} AS d{k}" for k in range(2, n + 1))
            + f", coalesce(ft.ch, '') AS bd FROM {people} p LEFT JOIN ft ON ft.person = p.person)"
        )
        people = "pb"

    aggs = ", ".join(
        [sql.count_if(f"level >= {k}") for k in range(1, n + 1)]
        + [sql.median(f"d{k}") for k in range(2, n + 1)]
    )
    body = f"SELECT 0 AS grp, '' AS bd, {aggs} FROM {people}"
    if q.breakdown is not None:
        body += f" UNION ALL SELECT 1 AS grp, bd, {aggs} FROM {people} GROUP BY bd"
    rows = sql.run("WITH " + ", ".join(ctes) + " " + body)

    def steps_of(row: tuple[object, ...]) -> list[FunnelStepResult]:
        counts = [int(v or 0) for v in row[2 : 2 + n]]  # type: ignore[call-overload]
        medians = [None, *row[2 + n : 2 + 2 * n - 1]]
        out = []
        for k in range(n):
            med = medians[k]
            out.append(
                FunnelStepResult(
                    event=events[k],
                    count=counts[k],
                    conversion_rate=ratio(counts[k], counts[0])
                    if k
                    else (1.0 if counts[0] else 0.0),
                    step_conversion_rate=ratio(counts[k], counts[k - 1])
                    if k
                    else (1.0 if counts[0] else 0.0),
                    median_seconds_to_convert=(
                        None if med is None or counts[k] == 0 else round(float(med) / 1000, 3)  # type: ignore[arg-type]
                    ),
                )
            )
        return out

    total = next((r for r in rows if int(r[0]) == 0), None)
    result = FunnelResult(steps=steps_of(total) if total else steps_of((0, "", *[0] * n)))
    if q.breakdown is not None:
        groups = sorted(
            (r for r in rows if int(r[0]) == 1),
            key=lambda r: (-int(r[2]), str(r[1])),
        )
        result.breakdown = [
            FunnelBreakdown(value=none_if_empty(str(r[1])), steps=steps_of(r)) for r in groups
        ]
    return result
