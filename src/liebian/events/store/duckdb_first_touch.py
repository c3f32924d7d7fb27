"""First touch kept beside DuckDB's events: the earliest event carrying a channel, per
(workspace, visitor, pre-alias person key), maintained in each batch's insert transaction.

Why: a funnel broken down by first-touch channel otherwise scans every event that has a
channel (3M of 10M in the benchmark) and aggregates them into a million groups per query,
about a quarter of the query's CPU; this table has one row per person instead.

Why the visitor is part of the key: the person of an event is
``coalesce(alias(visitor_id).user_id, user_id, visitor_id)``, so two events with the same
pre-alias key (``events.person_key``) but different visitors can belong to different people
once one visitor is aliased. Keyed by (visitor_id, person_key), a row always belongs to
exactly one person, whatever aliases exist now or arrive later, and a query takes the min
over a person's rows.

The earliest touch is the smallest (epoch ms, channel): events in the same millisecond go to
the smaller channel name, as in the query over raw events. Late events (an earlier
timestamp arriving in a later batch) simply win the comparison, so batch order never matters.
Nothing deletes events, so the min never has to be recomputed outside ``rebuild``.
"""

from __future__ import annotations

import duckdb

from liebian.events.store.duckdb_derived import ensure_built

TABLE = "first_touch"
_DDL = (
    f"CREATE TABLE {TABLE} (workspace_id VARCHAR NOT NULL, visitor_id VARCHAR,"
    " person_key UBIGINT NOT NULL, k UBIGINT NOT NULL, ms BIGINT NOT NULL,"
    " channel VARCHAR NOT NULL)"
)
# The row's key (workspace, visitor, person key) as one 64-bit hash, so that merging a batch
# joins on one integer column instead of two strings and an integer (~0.03 s of CPU per
# 50k-row batch with a million people stored instead of ~0.085 s). Two keys would share a row
# only on a 64-bit collision, the same odds the person key itself accepts (~3e-8 for a
# million keys).
_ROW_KEY = "hash(workspace_id, visitor_id, person_key)"
# store_meta records the person-key probe (see duckdb_store) the table was built under: the
# stored keys are recomputed when DuckDB's hash() changes, and this table with them.
_META_KEY = "first_touch_hash"


# The events a batch's merge reads (the loader skips the merge when none has it).
BATCH_FILTER = "channel <> ''"


def _earliest(source: str, person_key: str) -> str:
    """Earliest (ms, channel) per (workspace, visitor, person key) among ``source``'s rows,
    as rows of the table."""
    return (
        f"SELECT workspace_id, visitor_id, person_key, {_ROW_KEY} AS k, ms, channel FROM"
        f" (SELECT workspace_id, visitor_id, {person_key} AS person_key,"
        " min(epoch_ms(ts)) AS ms, arg_min(channel, (epoch_ms(ts), channel)) AS channel"
        f" FROM {source} WHERE {BATCH_FILTER} GROUP BY ALL) t"
    )


def merge_batch(con: duckdb.DuckDBPyConnection, source: str, person_key_sql: str) -> None:
    """Fold the newly inserted rows of a batch into the table, inside the caller's transaction.
    ``source`` has the event columns; ``person_key_sql`` computes events.person_key from them."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _ft AS {_earliest(source, person_key_sql)}")
    # Keys of the batch already stored: an inner join hashes the small batch and streams the
    # stored rows past it (an anti-join would build a hash table of the whole table).
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _ft_known AS SELECT b.k, f.rowid AS rid, b.ms, b.channel,"
        " b.ms < f.ms OR (b.ms = f.ms AND b.channel < f.channel) AS earlier"
        f" FROM _ft b INNER JOIN {TABLE} f ON f.k = b.k"
    )
    con.execute(
        f"UPDATE {TABLE} SET ms = b.ms, channel = b.channel FROM _ft_known b"
        f" WHERE {TABLE}.rowid = b.rid AND b.earlier"
    )
    con.execute(
        f"INSERT INTO {TABLE} SELECT * FROM _ft b"
        " WHERE NOT EXISTS (SELECT 1 FROM _ft_known f WHERE f.k = b.k)"
    )
    con.execute("DROP TABLE _ft")
    con.execute("DROP TABLE _ft_known")


def refill_person(con: duckdb.DuckDBPyConnection, workspace_id: str, user_id: str) -> None:
    """Insert the rows of the events whose user id is ``user_id`` (after their person key was
    rewritten by a merge or an erasure, whose caller deleted the person's old rows)."""
    source = "(SELECT * FROM events WHERE workspace_id = $ws AND user_id = $uid)"
    con.execute(
        f"INSERT INTO {TABLE} {_earliest(source, 'person_key')}",
        {"ws": workspace_id, "uid": user_id},
    )


def rebuild(con: duckdb.DuckDBPyConnection) -> None:
    """Recompute the whole table from ``events`` (inside the caller's transaction)."""
    con.execute(f"DROP TABLE IF EXISTS {TABLE}")
    con.execute(_DDL)
    con.execute(f"INSERT INTO {TABLE} {_earliest('events', 'person_key')}")


def ensure(con: duckdb.DuckDBPyConnection, person_hash_probe: str) -> None:
    """Build the table once in files from before it existed, or after the person keys were
    recomputed under a new hash(); one transaction."""
    ensure_built(con, _META_KEY, person_hash_probe, lambda: rebuild(con))
