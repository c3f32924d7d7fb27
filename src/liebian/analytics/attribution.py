"""Attribution of conversions and revenue to channel, link or campaign.

Touches are the person's ``touch_events`` (clicks by default; bots never count) carrying a
value of the dimension, at or before the conversion and within ``lookback_days`` of it.
first_touch / last_touch give the whole conversion to the earliest / latest touch; linear
splits it evenly over all touches. A conversion with no touch goes to ``None`` (direct).

Last touch also matches by click id: a conversion carrying a ``click_id`` is credited to
the touch recorded with that click id (within the same lookback, at or before the
conversion), even when it was made under another visitor id that was never aliased
(a server-side purchase after a click on another device). Without such a touch, the
person's latest touch is used as usual.
"""

from __future__ import annotations

from datetime import timedelta

from liebian.analytics.common import none_if_empty, require_events
from liebian.analytics.schemas import AttributionQuery, AttributionResult, AttributionRow
from liebian.analytics.sql import Sql
from liebian.events.store.base import EventStore


def attribution(store: EventStore, workspace_id: str, q: AttributionQuery) -> AttributionResult:
    require_events(store, workspace_id, [q.conversion_event])
    sql = Sql(store)
    lookback_ms = sql.p(q.lookback_days * 86_400_000)
    conv_sel = (
        f"{sql.person()} AS person, e.event_id AS cid, {sql.ms('e.ts')} AS ms,"
        f" {sql.col('revenue')} AS rev, {sql.col('click_id')} AS click"
    )
    conv_where = (
        f"e.event = {sql.p(q.conversion_event)} AND e.ts >= {sql.p(q.from_)}"
        f" AND e.ts < {sql.p(q.to)}"
    )
    dim = sql.col(q.dimension)
    touch_sel = (
        f"{sql.person()} AS person, {sql.ms('e.ts')} AS tms, e.event_id AS tid, {dim} AS val,"
        f" {sql.col('click_id')} AS tclick"
    )
    touch_where = (
        f"{sql.in_list('e.event', q.touch_events)} AND NOT e.is_bot AND {dim} <> ''"
        f" AND e.ts >= {sql.p(q.from_ - timedelta(days=q.lookback_days))}"
        f" AND e.ts < {sql.p(q.to)}"
    )
    if q.model == "first_touch":
        weight = "CASE WHEN rn_first = 1 THEN 1.0 ELSE 0.0 END"
    elif q.model == "last_touch":
        weight = "CASE WHEN rn_last = 1 THEN 1.0 ELSE 0.0 END"
    else:
        weight = "1.0 / n"
    ctes = [
        f"conv AS ({sql.events_with_person(workspace_id, conv_sel, conv_where)})",
        f"touch AS ({sql.events_with_person(workspace_id, touch_sel, touch_where)})",
        "pairs AS (SELECT c.cid AS cid, c.rev AS rev, t.val AS val,"
        " row_number() OVER (PARTITION BY c.cid ORDER BY t.tms, t.tid) AS rn_first,"
        " row_number() OVER (PARTITION BY c.cid ORDER BY t.tms DESC, t.tid DESC) AS rn_last,"
        " count(*) OVER (PARTITION BY c.cid) AS n"
        " FROM conv c INNER JOIN touch t ON t.person = c.person"
        f" WHERE t.tms <= c.ms AND t.tms >= c.ms - {lookback_ms})",
        f"credited AS (SELECT val, {weight} AS w, rev FROM pairs)",
    ]
    matched = ""
    if q.model == "last_touch":
        latest = "argMax(t.val, (t.tms, t.tid))" if sql.ch else "arg_max(t.val, (t.tms, t.tid))"
        ctes.append(
            f"cm AS (SELECT c.cid AS cid, min(c.rev) AS rev, {latest} AS val"
            " FROM conv c INNER JOIN touch t ON t.tclick = c.click"
            f" WHERE c.click <> '' AND t.tms <= c.ms AND t.tms >= c.ms - {lookback_ms}"
            " GROUP BY c.cid)"
        )
        ctes[-2] = (
            f"credited AS (SELECT val, {weight} AS w, rev FROM pairs"
            " WHERE cid NOT IN (SELECT cid FROM cm)"
            " UNION ALL SELECT val, 1.0 AS w, rev FROM cm)"
        )
        # credited must come after cm
        ctes[-2], ctes[-1] = ctes[-1], ctes[-2]
        matched = " AND cid NOT IN (SELECT cid FROM cm)"
    body = (
        # Zero-credit groups are dropped in Python: HAVING before this UNION ALL made DuckDB
        # 2.0 return no rows for the first branch.
        "SELECT val, sum(w) AS conv, sum(w * rev) AS revenue FROM credited GROUP BY val"
        " UNION ALL SELECT '' AS val, count(*) * 1.0 AS conv, sum(rev) * 1.0 AS revenue"
        f" FROM conv WHERE cid NOT IN (SELECT cid FROM pairs){matched}"
    )
    rows = sql.run("WITH " + ", ".join(ctes) + " " + body)
    out = [
        AttributionRow(
            value=none_if_empty(str(v)),
            conversions=round(float(c), 6),
            revenue=round(float(r or 0)),
        )
        for v, c, r in rows
        if float(c or 0) > 0
    ]
    out.sort(key=lambda r: (-r.conversions, r.value or ""))
    return AttributionResult(model=q.model, rows=out)
