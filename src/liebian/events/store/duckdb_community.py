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

ClickHouse has no such table: its metrics read the events (``JSONExtractString`` is cheap there).
"""

from __future__ import annotations

import duckdb

from liebian.events.store.duckdb_derived import ensure_built

TABLE = "community_events"
# The events communities write (communities/events.py) that metrics count.
EVENTS = ("community_view", "group_routed", "group_joined", "group_left", "group_message",
          "group_violation", "first_day_task")  # fmt: skip
_DDL = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (workspace_id VARCHAR NOT NULL,"
    " community_id VARCHAR NOT NULL, group_id VARCHAR NOT NULL, tier VARCHAR NOT NULL,"
    " event VARCHAR NOT NULL, ts TIMESTAMP NOT NULL, user_id VARCHAR, visitor_id VARCHAR,"
    " person_key UBIGINT)"
)
_EVENT_LIST = "(" + ", ".join(f"'{e}'" for e in EVENTS) + ")"
_META_KEY = "community_events_hash"


def _rows(source: str, person_key: str) -> str:
    """``source``'s community events as rows of the table (ordered by time, so that a range
    read skips row groups by their min/max)."""
    return (
        "SELECT workspace_id, json_extract_string(properties, '$.community_id'),"
        " coalesce(json_extract_string(properties, '$.group_id'), ''),"
        " coalesce(json_extract_string(properties, '$.tier'), ''),"
        f" event, ts, user_id, visitor_id, {person_key} FROM {source}"
        f" WHERE event IN {_EVENT_LIST} AND properties LIKE '%\"community_id\"%'"
        " AND json_extract_string(properties, '$.community_id') IS NOT NULL ORDER BY ts"
    )


def merge_batch(con: duckdb.DuckDBPyConnection, source: str, person_key_sql: str) -> None:
    """Add the batch's new community events, inside the caller's transaction. ``source`` has
    the event columns; ``person_key_sql`` computes events.person_key from them."""
    con.execute(f"INSERT INTO {TABLE} {_rows(source, person_key_sql)}")


def move_person(con: duckdb.DuckDBPyConnection, params: dict[str, str]) -> None:
    """The events' merge statement (user ``$f`` becomes ``$t`` in workspace ``$ws``)."""
    con.execute(
        f"UPDATE {TABLE} SET user_id = $t, person_key = hash($t::VARCHAR)"
        " WHERE workspace_id = $ws AND user_id = $f",
        params,
    )


def erase(con: duckdb.DuckDBPyConnection, erased_where: str, params: dict[str, object]) -> None:
    """The erased events lose their properties, hence their community: their rows go."""
    con.execute(f"DELETE FROM {TABLE} WHERE workspace_id = $ws AND ({erased_where})", params)


def rebuild(con: duckdb.DuckDBPyConnection) -> None:
    """Recompute the whole table from ``events`` (inside the caller's transaction)."""
    con.execute(f"DROP TABLE IF EXISTS {TABLE}")
    con.execute(_DDL)
    con.execute(f"INSERT INTO {TABLE} {_rows('events', 'person_key')}")


def ensure(con: duckdb.DuckDBPyConnection, person_hash_probe: str) -> None:
    """Build the table once in files from before it existed, or after the person keys were
    recomputed under a new hash(); one transaction."""
    ensure_built(con, _META_KEY, person_hash_probe, lambda: rebuild(con))
