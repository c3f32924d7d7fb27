"""Funnels with ClickHouse ``windowFunnel`` semantics (default mode) on both engines.

A person reaches step k when events of steps 1..k occur in order (equal timestamps count as
in order, as windowFunnel sorts by (time, step)) with the k-th at most ``window_seconds``
after the first. Step 1 must fall in [from, to); later steps may run up to the window past
``to`` so people who started late are not cut short. One event may satisfy several steps.

Engine-side formulation (one pass per step, no per-person sort of all entries): walking a
person's entries in (time, step) order, windowFunnel keeps for each step k the start ``f_k``
of the latest chain that reached it: a step-1 entry sets ``f_1`` to its own time, a step-k
entry copies the current ``f_{k-1}`` if it is within the window. ``f_{k-1}`` never
decreases, so for a step-k entry at time t the current ``f_{k-1}`` is the ``f`` of the
latest *valid* step-(k-1) entry at or before t — an ASOF join on (person, time):

    v_1 = step-1 entries with f = their time
    v_k = step-k entries ASOF-joined to the latest v_{k-1} at or before them, kept when
          t <= f + window; f carried over

A person reaches step k iff v_k has a row of theirs. Time to convert to step k is measured
on the person's first v_k entry: its time minus its f. The ASOF joins sort each step's
entries once (O(n log n), no quadratic blow-up for people with many events), on a 64-bit
hash of the person so nothing joins on text; the alias join is skipped when the workspace
has no aliases. That is DuckDB's formulation. ClickHouse runs the same walk literally, per
person in one GROUP BY: the reached step from its own windowFunnel and the times to convert
from an ``arrayFold`` over the person's sorted entries (its ASOF joins cost five times more
CPU). The conformance suite and random batches check that both engines agree.

First-touch channel: the channel of the person's earliest event that has one; events in
the same millisecond are ordered by channel name (DuckDB: the minimum of one BIGINT packing
time and channel rank, cheaper than an arg_min). DuckDB keeps each person's earliest touch in
a table updated at ingest (events/store/duckdb_first_touch.py); ClickHouse computes it here.
"""

from __future__ import annotations

from collections.abc import Callable
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
    aliases = sql.has_aliases(workspace_id)
    mat = sql.materialized()

    conds = []
    for i, step in enumerate(q.steps):
        cond = f"e.event = {sql.p(step.event)} AND ({where_sql(sql, step.where)})"
        if i == 0:
            cond += f" AND e.ts < {sql.p(q.to)}"
        conds.append(cond)
    first_touch = q.breakdown == "channel"
    # Breakdown by a column of the person's first step-1 entry (ties by event_id).
    column_bd = q.breakdown is not None and not first_touch

    cols = [f"{sql.person_key(aliases)} AS person", f"{sql.ms('e.ts')} AS ms"]
    if column_bd:
        assert q.breakdown is not None
        cols += ["e.event_id AS eid", f"{breakdown_expr(sql, q.breakdown)} AS bd"]
    cols += [f"({c}) AS c{i + 1}" for i, c in enumerate(conds)]
    # DuckDB: each step reads its own rows straight from the table (a single equality on the
    # event name filters inside the scan) instead of filtering one materialized union
    # (~15% less CPU over 10M events). ClickHouse keeps the union: windowFunnel reads it.
    direct = not sql.ch and not column_bd
    window_end = sql.p(q.to + timedelta(seconds=q.window_seconds)) if direct else ""
    from_p = sql.p(q.from_) if direct else ""

    def step_rows(k: int) -> str:
        if not direct:
            return f"SELECT person, ms FROM base WHERE c{k}"
        sel = f"{sql.person_key(aliases)} AS person, {sql.ms('e.ts')} AS ms"
        where = f"{conds[k - 1]} AND e.ts >= {from_p} AND e.ts < {window_end}"
        return sql.events_with_person(workspace_id, sel, where, aliases=aliases)

    if direct:
        # Step 1 is read twice (the step-2 join and the per-person aggregate) but scanned twice
        # rather than materialized: equal CPU with two threads and a roomy pool, and ~20% less
        # in the serving process's 96 MB pool, which 3.5M materialized rows push into spilling.
        ctes = [f"s1 AS NOT MATERIALIZED ({step_rows(1)})"]
    else:
        span = (
            f"{sql.in_list('e.event', list(dict.fromkeys(events)))} AND e.ts >= {sql.p(q.from_)}"
            f" AND e.ts < {sql.p(q.to + timedelta(seconds=q.window_seconds))}"
        )
        ctes = [
            f"base AS {mat}({sql.events_with_person(workspace_id, ', '.join(cols), span, aliases=aliases)})"
        ]
        if not sql.ch:
            ctes.append(
                "s1 AS (SELECT person, ms"
                + (", eid, bd" if column_bd else "")
                + " FROM base WHERE c1)"
            )
    if sql.ch:
        ctes.append(_clickhouse_people(sql, n, w, column_bd))
        people = "pw"
    else:
        ctes += _duckdb_people(sql, n, w, step_rows, column_bd)
        people = "pp"
    dcols = "".join(f", p.d{k} AS d{k}" for k in range(2, n + 1))
    if first_touch:
        ctes += _first_touch(sql, store, workspace_id, aliases)
        ctes.append(
            "pb AS (SELECT p.person AS person, p.level AS level"
            + dcols
            + f", coalesce(ft.ch, '') AS bd FROM {people} p LEFT JOIN ft ON ft.person = p.person)"
        )
        people = "pb"

    aggs = ", ".join(
        [sql.count_if(f"level >= {k}") for k in range(1, n + 1)]
        + [sql.median(f"d{k}") for k in range(2, n + 1)]
    )
    if q.breakdown is None:
        body = f"SELECT 0 AS grp, '' AS bd, {aggs} FROM {people}"
    else:
        # The total and the groups in one pass (ClickHouse would compute a CTE read by two
        # sides of a UNION twice).
        body = (
            f"SELECT 1 - grouping(bd) AS grp, bd, {aggs} FROM {people}"
            " GROUP BY GROUPING SETS ((), (bd))"
        )
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


def _clickhouse_people(sql: Sql, n: int, w: str, column_bd: bool) -> str:
    """``pw``: one row per person with a step-1 entry in ``base``: the reached step from
    ClickHouse's own windowFunnel, and the times to convert from one fold over the person's
    entries sorted by (time, step), in the same GROUP BY.

    The fold carries the module docstring's state: ``f_1..f_n`` (start of the latest chain
    that reached each step, -1 for none) and ``d_2..d_n`` (time to convert, set by the first
    valid step-k entry). Five times less CPU than the ASOF chain over 10M events in chdb.
    """
    f = [f"acc.{k}" for k in range(1, n + 1)]
    d = {k: f"acc.{n + k - 1}" for k in range(2, n + 1)}

    def state(items: list[str]) -> str:
        return f"tuple({', '.join(items)})"

    # One branch per step: the accumulator after an entry (x.1 = time, x.2 = step).
    fold = "acc"
    for k in range(n, 0, -1):
        if k == 1:
            fold = f"if(x.2 = 1, {state(['x.1', *f[1:], *d.values()])}, {fold})"
            continue
        prev = f[k - 2]
        new_f = [prev if j == k - 1 else a for j, a in enumerate(f)]
        new_d = [f"if({a} < 0, x.1 - {prev}, {a})" if j == k else a for j, a in d.items()]
        valid = f"{prev} >= 0 AND x.1 <= {prev} + {w}"
        fold = f"if(x.2 = {k}, if({valid}, {state(new_f + new_d)}, acc), {fold})"
    width = 2 * n - 1
    init = f"CAST(tuple({', '.join(['-1'] * width)}), 'Tuple({', '.join(['Int64'] * width)})')"
    flags = ", ".join(f"c{k}" for k in range(1, n + 1))
    steps = ", ".join(str(k) for k in range(1, n + 1))
    entries = (
        f"arraySort(arrayFlatten(groupArray(arrayMap(k -> (ms, k),"
        f" arrayFilter(k -> [{flags}][k], [{steps}])))))"
    )
    bd = f"{sql.arg_min_if('bd', '(ms, eid)', 'c1')}" if column_bd else "''"
    durs = "".join(
        f", if(level >= {k} AND st.{n + k - 1} >= 0, toNullable(st.{n + k - 1}), NULL) AS d{k}"
        for k in range(2, n + 1)
    )
    return (
        f"pw AS (SELECT person, level{durs}, bd FROM (SELECT person,"
        f" windowFunnel({w})(toUInt64(ms), {flags}) AS level,"
        f" arrayFold((acc, x) -> {fold}, {entries}, {init}) AS st, {bd} AS bd"
        " FROM base GROUP BY person HAVING level >= 1) t)"
    )


def _duckdb_people(
    sql: Sql, n: int, w: str, step_rows: Callable[[int], str], column_bd: bool
) -> list[str]:
    """CTEs up to ``pp``: one row per person with a step-1 entry, the step reached and the
    times to convert, by the ASOF chain of the module docstring. ``step_rows(k)`` selects
    (person, ms) of step k's entries; ``s1`` holds step 1's."""
    ctes = ["v1 AS (SELECT person, ms, ms AS f FROM s1)"]
    for k in range(2, n + 1):
        # The latest valid step-(k-1) entry at or before each step-k entry (ties: the earlier
        # step sorts first, so ">=" is right); kept when within the window of its start.
        mat = "MATERIALIZED " if k < n else ""  # v_k is read by v_(k+1) and p_k
        ctes.append(
            f"v{k} AS {mat}(SELECT s.person AS person, s.ms AS ms, p.f AS f"
            f" FROM ({step_rows(k)}) s"
            f" ASOF JOIN v{k - 1} p ON p.person = s.person AND s.ms >= p.ms"
            f" WHERE s.ms <= p.f + {w})"
        )
    p1_bd = f", {sql.arg_min('bd', '(ms, eid)')} AS bd" if column_bd else ""
    ctes.append(f"p1 AS (SELECT person{p1_bd} FROM s1 GROUP BY person)")
    for k in range(2, n + 1):
        ctes.append(
            f"p{k} AS (SELECT person, 1 AS r, {sql.arg_min('ms - f', 'ms')} AS d"
            f" FROM v{k} GROUP BY person)"
        )
    # A person without a p_k row did not reach step k (the LEFT JOIN leaves r NULL).
    reached = {k: f"coalesce(p{k}.r, 0) = 1" for k in range(2, n + 1)}
    level = (
        "CASE " + " ".join(f"WHEN {reached[k]} THEN {k}" for k in range(n, 1, -1)) + " ELSE 1 END"
        if n > 1
        else "1"
    )
    durs = "".join(f", CASE WHEN {reached[k]} THEN p{k}.d END AS d{k}" for k in range(2, n + 1))
    joins = "".join(f" LEFT JOIN p{k} ON p{k}.person = p1.person" for k in range(2, n + 1))
    ctes.append(
        f"pp AS (SELECT p1.person AS person, {level} AS level{durs}, "
        + ("p1.bd" if column_bd else "''")
        + f" AS bd FROM p1{joins})"
    )
    return ctes


def _first_touch(sql: Sql, store: EventStore, workspace_id: str, aliases: bool) -> list[str]:
    """CTEs up to ``ft``: each person's first-touch channel, the channel of their earliest
    event that has one (same millisecond: the smaller name)."""
    ctes = []
    ft_table = store.first_touch_table
    if ft_table:
        # Kept at ingest, one row per (visitor, pre-alias person): a person's rows are few,
        # so this reads ~1M rows instead of every event with a channel (~25% of the
        # query's CPU over 10M events).
        ftr = sql.events_with_person(
            workspace_id,
            f"{sql.person_key(aliases)} AS person, e.ms AS ms, e.channel AS ch",
            aliases=aliases,
            source=ft_table,
        )
        channels = ft_table
    else:
        ftr = sql.events_with_person(
            workspace_id,
            f"{sql.person_key(aliases)} AS person, {sql.ms('e.ts')} AS ms, e.channel AS ch",
            f"{sql.col('channel')} <> ''",
            aliases=aliases,
        )
        channels = sql.events
    ctes.append(f"ftr AS ({ftr})")
    if sql.ch:
        ctes.append("ft AS (SELECT person, argMin(ch, (ms, ch)) AS ch FROM ftr GROUP BY person)")
    else:
        # The earliest (ms, channel rank) as one BIGINT, ms * 2^20 + rank (epoch ms stay
        # below 2^42, ranks below 2^20): a plain min() instead of arg_min over a wide key.
        ctes.append(
            "chr AS (SELECT ch, row_number() OVER (ORDER BY ch) AS r FROM (SELECT DISTINCT"
            f" e.channel AS ch FROM {channels} e WHERE e.workspace_id = {sql.p(workspace_id)}"
            " AND e.channel <> '') t)"
        )
        ctes.append(
            "ftk AS (SELECT f.person AS person, min(f.ms * 1048576 + c.r) AS k"
            " FROM ftr f INNER JOIN chr c ON c.ch = f.ch GROUP BY f.person)"
        )
        ctes.append(
            "ft AS (SELECT ftk.person AS person, chr.ch AS ch"
            " FROM ftk INNER JOIN chr ON chr.r = ftk.k % 1048576)"
        )
    return ctes
