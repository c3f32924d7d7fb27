"""Community events kept beside DuckDB's events with their ids as columns, maintained in each
batch's insert transaction (issue 13: group metrics for 1,000 groups over 90 days).

Why: the group metrics (communities/metrics.py) read every community event of the range and
took the community, group and tier out of the ``properties`` JSON of each — plus a substring
test of every event of the workspace — three times per answer (days, summary, money). This
table holds only the community events (``EVENTS`` that name a community), one row each, with
``community_id``, ``group_id`` and ``tier`` as columns ('' when absent, as the queries read
them) and the columns the queries use beside them (event, ts, the person's ids and key).

Exact by construction: a row is the event's own projection, written with it. What rewrites
events rewrites the rows with the same statement shape: a contact merge moves ``user_id`` and
its person key (``move_person``), a PIPL erasure clears the events' properties — so the
erased events stop being community events and their rows are deleted (``erase_person``), and
a change of DuckDB's ``hash()`` recomputes every person key (``ensure`` rebuilds the table
then). tests/communities/test_communities_metrics_table.py compares the metrics read through
this table with the metrics from the events, after merges and erasures too.

Beside it, ``community_days``: the metrics' day rows already counted, per (workspace,
community, scope, key, local day) with scope ``group`` (key: the group id), ``tier`` (key: the
tier) or ``community`` (key ''), the day in the workspace's rollup zone (``rollup_zones``, as
the campaign dashboard's days; default Asia/Shanghai). Its counters are what metrics._days
computes for that day from the table above — events per name and the distinct message
senders (active members) — and it is kept by recomputing, from ``community_events``, every
(workspace, community, day) a write touched: a batch's new rows, a merge's or an erasure's
people, a zone change (``rekey``). Distinct counts stay exact without a set of people: a
touched day is counted again as a whole. The cost at load is the touched days' community
events (one local day of a community for a live batch). Decision 0041.

ClickHouse has neither table: its metrics read the events (``JSONExtractString`` is cheap there).
"""

from __future__ import annotations

import duckdb

from liebian.events.store.campaign_rollup import DEFAULT_ZONE, ZONES
from liebian.events.store.duckdb_derived import ensure_built

TABLE = "community_events"
DAYS = "community_days"
# The events communities write (communities/events.py) that metrics count.
EVENTS = ("community_view", "group_routed", "group_joined", "group_left", "group_message",
          "group_violation", "first_day_task")  # fmt: skip
_DDL = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (workspace_id VARCHAR NOT NULL,"
    " community_id VARCHAR NOT NULL, group_id VARCHAR NOT NULL, tier VARCHAR NOT NULL,"
    " event VARCHAR NOT NULL, ts TIMESTAMP NOT NULL, user_id VARCHAR, visitor_id VARCHAR,"
    " person_key UBIGINT)"
)
# metrics.DayRow's counters after (day, key), in its order.
DAY_COUNTERS = ("views", "routed", "joins", "leaves", "messages", "active_members", "violations")
_DAYS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {DAYS} (workspace_id VARCHAR NOT NULL,"
    " community_id VARCHAR NOT NULL, scope VARCHAR NOT NULL, key VARCHAR NOT NULL,"
    " day DATE NOT NULL, " + ", ".join(f"{c} BIGINT NOT NULL" for c in DAY_COUNTERS) + ")"
)
# The rollup zones' table (campaign_rollup's): created here too, this table is built first.
_ZONES_DDL = (
    f"CREATE TABLE IF NOT EXISTS {ZONES} (workspace_id VARCHAR PRIMARY KEY, tz VARCHAR NOT NULL)"
)
_EVENT_LIST = "(" + ", ".join(f"'{e}'" for e in EVENTS) + ")"
# What a batch's community events have at least (the loader skips the merge when none has).
BATCH_FILTER = f"event IN {_EVENT_LIST}"
# Bumped when a table was added: files whose tables were built before are rebuilt once.
_META_KEY = "community_tables_v2"


def _rows(source: str, person_key: str) -> str:
    """``source``'s community events as rows of the table (ordered by time, so that a range
    read skips row groups by their min/max)."""
    return (
        "SELECT workspace_id, json_extract_string(properties, '$.community_id') AS community_id,"
        " coalesce(json_extract_string(properties, '$.group_id'), '') AS group_id,"
        " coalesce(json_extract_string(properties, '$.tier'), '') AS tier,"
        f" event, ts, user_id, visitor_id, {person_key} AS person_key FROM {source}"
        f" WHERE {BATCH_FILTER} AND properties LIKE '%\"community_id\"%'"
        " AND json_extract_string(properties, '$.community_id') IS NOT NULL ORDER BY ts"
    )


def _local_ts(alias: str) -> str:
    """``alias.ts`` as the local time in its workspace's rollup zone (``z`` joined)."""
    return f"timezone(coalesce(z.tz, '{DEFAULT_ZONE}'), {alias}.ts AT TIME ZONE 'UTC')"


def _touch(
    con: duckdb.DuckDBPyConnection, source: str, where: str = "", params: object = None
) -> None:
    """Collect into ``_cd`` the (workspace, community, local day) of ``source``'s rows (columns
    of ``community_events``) matching ``where``, with UTC bounds around each day: its local
    midnights as seen from the rows' own offsets, an hour wider each side (a DST change)."""
    local = _local_ts("c")
    day = f"CAST({local} AS DATE)"
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _cd AS SELECT c.workspace_id AS ws, c.community_id AS cmy,"
        f" {day} AS day, min(c.ts - ({local} - CAST({day} AS TIMESTAMP))) - INTERVAL 1 HOUR AS lo,"
        f" max(c.ts + (CAST({day} AS TIMESTAMP) + INTERVAL 1 DAY - {local})) + INTERVAL 1 HOUR"
        f" AS hi FROM {source} c LEFT JOIN {ZONES} z ON z.workspace_id = c.workspace_id"
        f"{' WHERE ' + where if where else ''} GROUP BY ALL",
        params,
    )


def _recount(con: duckdb.DuckDBPyConnection) -> None:
    """Replace the day rows of every (workspace, community, day) in ``_cd`` by their counts
    from ``community_events`` (inside the caller's transaction); drops ``_cd``. The counts are
    metrics._days' own: events per name, and the distinct senders of messages as the count of
    (day, key, sender) rows (a person's other events folded into one row)."""
    bounds = con.execute("SELECT min(lo), max(hi), count(*) FROM _cd").fetchone()
    if bounds is None or not bounds[2]:
        con.execute("DROP TABLE _cd")
        return
    con.execute(
        f"DELETE FROM {DAYS} d USING _cd t WHERE d.workspace_id = t.ws"
        " AND d.community_id = t.cmy AND d.day = t.day"
    )
    # The touched days' rows: constant bounds on ts let DuckDB skip row groups (the table is
    # in time order), then each row's local day once, kept if touched.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _cx AS SELECT x.* FROM (SELECT c.workspace_id AS ws,"
        f" c.community_id AS cmy, CAST({_local_ts('c')} AS DATE) AS day, c.group_id AS g,"
        " c.tier AS t, c.event AS ev,"
        " CASE WHEN c.event = 'group_message' THEN c.person_key ELSE 0 END AS who"
        f" FROM {TABLE} c LEFT JOIN {ZONES} z ON z.workspace_id = c.workspace_id"
        " WHERE c.ts >= $lo AND c.ts < $hi) x WHERE EXISTS (SELECT 1 FROM _cd t"
        " WHERE t.ws = x.ws AND t.cmy = x.cmy AND t.day = x.day)",
        {"lo": bounds[0], "hi": bounds[1]},
    )
    scoped = " UNION ALL ".join(
        f"SELECT ws, cmy, '{scope}' AS scope, {key} AS key, day, ev, who FROM _cx"
        for scope, key in (("group", "g"), ("tier", "t"), ("community", "''"))
    )
    msg = "ev = 'group_message'"
    sums = ", ".join(
        [f"coalesce(sum(n) FILTER (WHERE ev = '{ev}'), 0)" for ev in
         ("community_view", "group_routed", "group_joined", "group_left")]
        + [f"coalesce(sum(n) FILTER (WHERE {msg}), 0)", f"count_if({msg})",
           "coalesce(sum(n) FILTER (WHERE ev = 'group_violation'), 0)"]
    )  # fmt: skip
    con.execute(
        f"INSERT INTO {DAYS} SELECT ws, cmy, scope, key, day, {sums} FROM ("
        "SELECT ws, cmy, scope, key, day, ev, who, count(*) AS n FROM"
        f" ({scoped}) s GROUP BY ALL) c GROUP BY ws, cmy, scope, key, day"
        " ORDER BY ws, cmy, scope, day, key"
    )
    con.execute("DROP TABLE _cx")
    con.execute("DROP TABLE _cd")


def merge_batch(con: duckdb.DuckDBPyConnection, source: str, person_key_sql: str) -> None:
    """Add the batch's new community events, inside the caller's transaction, and recount the
    days they fall on. ``source`` has the event columns; ``person_key_sql`` computes
    events.person_key from them."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _cb AS {_rows(source, person_key_sql)}")
    con.execute(f"INSERT INTO {TABLE} SELECT * FROM _cb")
    _touch(con, "_cb")
    con.execute("DROP TABLE _cb")
    _recount(con)


def move_person(con: duckdb.DuckDBPyConnection, params: dict[str, str]) -> None:
    """The events' merge statement (user ``$f`` becomes ``$t`` in workspace ``$ws``); the days
    of both people's community events are recounted (two senders may become one)."""
    _touch(con, TABLE, "c.workspace_id = $ws AND c.user_id IN ($f, $t)", params)
    con.execute(
        f"UPDATE {TABLE} SET user_id = $t, person_key = hash($t::VARCHAR)"
        " WHERE workspace_id = $ws AND user_id = $f",
        params,
    )
    _recount(con)


def erase(con: duckdb.DuckDBPyConnection, erased_where: str, params: dict[str, object]) -> None:
    """The erased events lose their properties, hence their community: their rows go, and
    the days they were on are recounted."""
    _touch(con, TABLE, f"c.workspace_id = $ws AND ({erased_where})", params)
    con.execute(f"DELETE FROM {TABLE} WHERE workspace_id = $ws AND ({erased_where})", params)
    _recount(con)


def rebuild(con: duckdb.DuckDBPyConnection) -> None:
    """Recompute the whole table from ``events`` (inside the caller's transaction)."""
    con.execute(f"DROP TABLE IF EXISTS {TABLE}")
    con.execute(_DDL)
    con.execute(f"INSERT INTO {TABLE} {_rows('events', 'person_key')}")
    con.execute(f"DROP TABLE IF EXISTS {DAYS}")
    con.execute(_DAYS_DDL)
    con.execute(_ZONES_DDL)
    _touch(con, TABLE)
    _recount(con)


def rekey(con: duckdb.DuckDBPyConnection, workspace_id: str) -> None:
    """Count the workspace's days again in its (new) rollup zone, inside the caller's
    transaction (the zone change's own)."""
    params = {"ws": workspace_id}
    con.execute(f"DELETE FROM {DAYS} WHERE workspace_id = $ws", params)
    _touch(con, TABLE, "c.workspace_id = $ws", params)
    _recount(con)


def ensure(con: duckdb.DuckDBPyConnection, person_hash_probe: str) -> None:
    """Build the table once in files from before it existed, or after the person keys were
    recomputed under a new hash(); one transaction."""
    ensure_built(con, _META_KEY, person_hash_probe, lambda: rebuild(con))
