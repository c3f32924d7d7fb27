"""The campaign dashboard's counters, kept by the event load (issue 12, decision 0033).

A dashboard answer is, per campaign, in total, per channel and per local day: distinct people
who saw the page (page_view), joined (campaign_join), shared (share) and clicked an invite
(invite_click); counts of shares, invites and qualified invites; GMV (revenue of every event
but reward_issued/reward_reversed). Bots are left out; the person is the pre-alias
``coalesce(nullif(user_id, ''), visitor_id)``. Computing that from the events costs a GROUP BY
of every event of the campaign per request (~14 s of CPU at 10M events), so the load keeps:

- ``campaign_rollup``: one row of counters per (workspace, campaign, scope, key), scope ``''``
  (key ``''``: the totals), ``'channel'`` (key: the channel, ``''`` when none) or ``'day'``
  (key: the local date ``YYYY-MM-DD`` in the workspace's rollup zone);
- ``campaign_people``: the set behind the distinct counts, one 64-bit hash per (workspace,
  campaign, scope, key, event, person) ever counted. A batch's tuples are looked up in it
  (the small batch hashed, the set streamed past it); only the tuples not found add a person
  to the counters. The dashboard never reads it.
- ``rollup_zones``: a workspace's zone for the ``day`` scope when it is not the store's default
  (Asia/Shanghai, the workspaces' default). A dashboard asked for another zone computes from
  the events as before; ``set_zone`` re-keys a workspace's days.

DuckDB keeps them in the batch's insert transaction (a replayed segment is skipped before this,
repeated event ids never reach it). ClickHouse has no transactions: the rollup is written right
after the batch's new events (from the same staged rows), so a crash between the two leaves
that batch out of the rollup until ``rebuild`` (the event_id dedupe makes the replay insert
nothing). Merges and erasures rewrite people: the campaigns they touch are recomputed from the
events (``rebuild`` with campaign ids). Two tuples share a hash with probability ~n²/2⁶⁵
(~5e-6 for 14M tuples), which would undercount one person by one.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from liebian.events.store.duckdb_derived import ensure_built

ROLLUP = "campaign_rollup"
PEOPLE = "campaign_people"
ZONES = "rollup_zones"
DEFAULT_ZONE = "Asia/Shanghai"

# The dashboard's counters, in its order (dashboard._COUNTS).
COUNTERS = ("seen", "participants", "sharers", "shares", "friend_clicks", "friend_joins",
            "friend_conversions", "gmv")  # fmt: skip
_PEOPLE_OF = {"seen": "page_view", "participants": "campaign_join", "sharers": "share",
              "friend_clicks": "invite_click"}  # fmt: skip
_COUNT_OF = {"shares": "share", "friend_joins": "invite", "friend_conversions": "invite_qualified"}
_PEOPLE_EVENTS = "('page_view', 'campaign_join', 'share', 'invite_click')"
_MONEY_EVENTS = "('reward_issued', 'reward_reversed')"
_META_KEY = "campaign_rollup_hash"
_ZONE_RE = re.compile(r"^[A-Za-z0-9_+\-/]+$")


def _aggregates() -> str:
    """Counters from delta rows (ws, cid, scope, key, ev, n, rev, np): ``np`` marks a person
    new to the set, ``n`` an event."""
    parts = []
    for name in COUNTERS:
        if name in _PEOPLE_OF:
            parts.append(f"sum(if(ev = '{_PEOPLE_OF[name]}', np, 0)) AS {name}")
        elif name in _COUNT_OF:
            parts.append(f"sum(if(ev = '{_COUNT_OF[name]}', n, 0)) AS {name}")
        else:
            parts.append("sum(rev) AS gmv")
    # Every event of the key, bots left out: never 0 on a row, so ClickHouse's
    # SummingMergeTree keeps rows whose other counters are all 0 (it drops all-zero rows).
    parts.append("sum(n) AS events")
    return ", ".join(parts)


def _scoped(base: str, person: str) -> str:
    """The batch's rows once per scope (totals, channel, day)."""
    return " UNION ALL ".join(
        f"SELECT ws, cid, '{scope}' AS scope, {key} AS key, ev, {person} AS person, rev FROM {base}"
        for scope, key in (("", "''"), ("channel", "ch"), ("day", "day"))
    )


def check_zone(tz: str) -> str:
    ZoneInfo(tz)  # raises on an unknown zone
    if not _ZONE_RE.match(tz):
        raise ValueError(f"bad time zone {tz!r}")
    return tz


# ── DuckDB ───────────────────────────────────────────────────────────────────────────────

_DUCK_COUNTER_COLS = ", ".join(f"{c} BIGINT NOT NULL" for c in COUNTERS)
_DUCK_DDL = (
    f"CREATE TABLE IF NOT EXISTS {ROLLUP} (workspace_id VARCHAR NOT NULL,"
    f" campaign_id VARCHAR NOT NULL, scope VARCHAR NOT NULL, key VARCHAR NOT NULL,"
    f" {_DUCK_COUNTER_COLS}, events BIGINT NOT NULL, PRIMARY KEY (workspace_id, campaign_id, scope, key))",
    f"CREATE TABLE IF NOT EXISTS {PEOPLE} (workspace_id VARCHAR NOT NULL,"
    " campaign_id VARCHAR NOT NULL, k UBIGINT NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS {ZONES} (workspace_id VARCHAR PRIMARY KEY, tz VARCHAR NOT NULL)",
)


# The events a merge counts (the loader skips the merge when a batch has none).
DUCK_BATCH_FILTER = "coalesce(campaign_id, '') <> '' AND NOT is_bot"


def duck_merge(con: Any, source: str, person_key_sql: str, *, where: str = "") -> None:
    """Fold ``source``'s events (new to the store) into the rollup, in the caller's
    transaction. ``person_key_sql`` computes events.person_key from the source's columns."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _rb AS SELECT s.workspace_id AS ws, s.campaign_id AS cid,"
        " s.event AS ev, CASE WHEN nullif(s.user_id, '') IS NULL AND s.visitor_id IS NULL"
        f" THEN NULL ELSE {person_key_sql} END AS pk, coalesce(s.channel, '') AS ch,"
        f" strftime(CAST(timezone(coalesce(z.tz, '{DEFAULT_ZONE}'), s.ts AT TIME ZONE 'UTC')"
        " AS DATE), '%Y-%m-%d') AS day,"
        f" CASE WHEN s.event IN {_MONEY_EVENTS} THEN 0 ELSE coalesce(s.revenue, 0) END AS rev"
        f" FROM {source} s LEFT JOIN {ZONES} z ON z.workspace_id = s.workspace_id"
        f" WHERE coalesce(s.campaign_id, '') <> '' AND NOT s.is_bot{where}"
    )
    if not (con.execute("SELECT count(*) FROM _rb").fetchone() or (0,))[0]:
        con.execute("DROP TABLE _rb")
        return
    con.execute(f"CREATE OR REPLACE TEMP TABLE _rs AS {_scoped('_rb', 'pk')}")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _rp AS SELECT DISTINCT ws, cid, scope, key, ev,"
        " hash(ws, cid, scope, key, ev, person) AS k FROM _rs"
        f" WHERE person IS NOT NULL AND ev IN {_PEOPLE_EVENTS}"
    )
    # Tuples already counted: an inner join hashes the small batch and streams the stored set
    # past it (NOT EXISTS against the set would build a hash table of the whole set).
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _rk AS SELECT DISTINCT b.k FROM _rp b"
        f" INNER JOIN {PEOPLE} p ON p.k = b.k"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _rn AS SELECT * FROM _rp b"
        " WHERE NOT EXISTS (SELECT 1 FROM _rk x WHERE x.k = b.k)"
    )
    con.execute(f"INSERT INTO {PEOPLE} SELECT ws, cid, k FROM _rn")
    updates = ", ".join(f"{c} = {ROLLUP}.{c} + excluded.{c}" for c in (*COUNTERS, "events"))
    con.execute(
        f"INSERT INTO {ROLLUP} SELECT ws, cid, scope, key, {_aggregates()} FROM ("
        "SELECT ws, cid, scope, key, ev, 1 AS n, rev, 0 AS np FROM _rs UNION ALL"
        " SELECT ws, cid, scope, key, ev, 0, 0, 1 FROM _rn) d GROUP BY ws, cid, scope, key"
        f" ON CONFLICT (workspace_id, campaign_id, scope, key) DO UPDATE SET {updates}"
    )
    for t in ("_rb", "_rs", "_rp", "_rk", "_rn"):
        con.execute(f"DROP TABLE {t}")


def duck_rebuild(con: Any, campaigns: Sequence[tuple[str, str]] | None = None) -> None:
    """Recompute the rollup from ``events`` (inside the caller's transaction): all of it, or
    only the given (workspace, campaign) pairs."""
    if campaigns is None:
        con.execute(f"DELETE FROM {ROLLUP}")
        con.execute(f"DELETE FROM {PEOPLE}")
        duck_merge(con, "events", "s.person_key")
        return
    if not campaigns:
        return
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _rc AS SELECT unnest($w::VARCHAR[]) AS ws,"
        " unnest($c::VARCHAR[]) AS cid",
        {"w": [w for w, _ in campaigns], "c": [c for _, c in campaigns]},
    )
    for table in (ROLLUP, PEOPLE):
        con.execute(
            f"DELETE FROM {table} WHERE EXISTS (SELECT 1 FROM _rc"
            f" WHERE _rc.ws = {table}.workspace_id AND _rc.cid = {table}.campaign_id)"
        )
    duck_merge(
        con,
        "events",
        "s.person_key",
        where=" AND EXISTS (SELECT 1 FROM _rc WHERE _rc.ws = s.workspace_id"
        " AND _rc.cid = s.campaign_id)",
    )
    con.execute("DROP TABLE _rc")


def duck_campaigns_of(
    con: Any, workspace_id: str, where: str, params: dict[str, Any]
) -> list[tuple[str, str]]:
    """(workspace, campaign) pairs of the workspace's events matching ``where``."""
    rows = con.execute(
        "SELECT DISTINCT workspace_id, campaign_id FROM events WHERE workspace_id = $ws"
        f" AND coalesce(campaign_id, '') <> '' AND ({where})",
        params,
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def duck_ensure(con: Any, person_hash_probe: str) -> None:
    """Create the tables; fill them from ``events`` once in files from before they existed,
    or after the person keys were recomputed under a new hash(). One transaction."""

    def build() -> None:
        for ddl in _DUCK_DDL:
            con.execute(ddl)
        duck_rebuild(con)

    ensure_built(con, _META_KEY, person_hash_probe, build)


def duck_set_zone(
    con: Any, workspace_id: str, tz: str, also: Callable[[], None] | None = None
) -> None:
    """Key the workspace's ``day`` counters in ``tz`` from now on (re-keys its stored days);
    ``also`` re-keys other tables kept in the zone, in the same transaction."""
    check_zone(tz)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            f"INSERT OR REPLACE INTO {ZONES} VALUES ($ws, $tz)", {"ws": workspace_id, "tz": tz}
        )
        pairs = con.execute(
            f"SELECT DISTINCT workspace_id, campaign_id FROM {ROLLUP} WHERE workspace_id = $ws",
            {"ws": workspace_id},
        ).fetchall()
        duck_rebuild(con, [(r[0], r[1]) for r in pairs])
        if also is not None:
            also()
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


# ── reading (both engines) ───────────────────────────────────────────────────────────────


def read(
    run: Callable[[str, dict[str, Any]], list[tuple[Any, ...]]],
    table: str,
    workspace_id: str,
    campaign_ids: Sequence[str],
    by: str | None,
    *,
    ch: bool,
) -> list[tuple[str, dict[str, int]]]:
    """Counters per key, ordered by key: ``by`` None (one row), ``channel``, ``day`` or
    ``campaign`` (each campaign's totals)."""
    params: dict[str, Any] = {}

    def p(name: str, value: Any, kind: str) -> str:
        params[name] = value
        if ch:
            return f"{{{name}:{kind}}}"
        return f"${name}::VARCHAR[]" if kind.startswith("Array") else f"${name}"

    scope = {"channel": "channel", "day": "day"}.get(by or "", "")
    key = "campaign_id" if by == "campaign" else "key"
    sums = ", ".join(f"sum({c})" for c in COUNTERS)
    rows = run(
        f"SELECT {key} AS k, {sums} FROM {table}"
        f" WHERE workspace_id = {p('ws', workspace_id, 'String')}"
        f" AND {'has' if ch else 'list_contains'}({p('ids', list(campaign_ids), 'Array(String)')},"
        " campaign_id)"
        f" AND scope = {p('scope', scope, 'String')} GROUP BY k ORDER BY k",
        params,
    )
    return [
        (str(r[0] or ""), dict(zip(COUNTERS, (int(v or 0) for v in r[1:]), strict=True)))
        for r in rows
    ]


# ── ClickHouse ───────────────────────────────────────────────────────────────────────────


def ch_ddl(db: str) -> list[str]:
    counters = ", ".join(f"{c} Int64" for c in COUNTERS)
    return [
        f"CREATE TABLE IF NOT EXISTS {db}.{ROLLUP} (workspace_id String, campaign_id String,"
        f" scope LowCardinality(String), key String, {counters}, events Int64) ENGINE = SummingMergeTree"
        " ORDER BY (workspace_id, campaign_id, scope, key)",
        f"CREATE TABLE IF NOT EXISTS {db}.{PEOPLE} (workspace_id String, campaign_id String,"
        " k UInt64) ENGINE = ReplacingMergeTree ORDER BY (workspace_id, campaign_id, k)",
        f"CREATE TABLE IF NOT EXISTS {db}.{ZONES} (workspace_id String, tz String,"
        " updated DateTime64(6, 'UTC')) ENGINE = ReplacingMergeTree(updated) ORDER BY workspace_id",
    ]


def ch_zones(
    run: Callable[..., list[tuple[Any, ...]]], db: str, source: str, params: dict[str, Any]
) -> dict[str, str]:
    rows = run(
        f"SELECT workspace_id, argMax(tz, updated) FROM {db}.{ZONES}"
        f" WHERE workspace_id IN (SELECT DISTINCT workspace_id FROM {source})"
        " GROUP BY workspace_id",
        params,
    )
    return {r[0]: r[1] for r in rows}


def ch_merge(
    run: Callable[..., list[tuple[Any, ...]]],
    db: str,
    source: str,
    source_params: dict[str, Any] | None = None,
) -> None:
    """Fold ``source``'s rows (events new to the store) into the rollup; ``source_params``
    are the parameters ``source`` itself binds."""
    sp = source_params or {}
    zones = ch_zones(run, db, source, sp)
    params: dict[str, Any] = dict(sp)
    arms = []
    for i, (ws, tz) in enumerate(sorted(zones.items())):
        params[f"zw{i}"] = ws
        arms.append(f"workspace_id = {{zw{i}:String}}, toString(toDate(ts, '{check_zone(tz)}'))")
    default = f"toString(toDate(ts, '{DEFAULT_ZONE}'))"
    day = f"multiIf({', '.join(arms)}, {default})" if arms else default
    tag = uuid.uuid4().hex
    rb, rs, rn = (f"{db}._r{x}_{tag}" for x in ("b", "s", "n"))
    try:
        run(
            f"CREATE TABLE {rb} ENGINE = Memory AS SELECT workspace_id AS ws,"
            " campaign_id AS cid, event AS ev, if(user_id != '', user_id, visitor_id) AS person,"
            f" toString(channel) AS ch, {day} AS day,"
            f" if(event IN {_MONEY_EVENTS}, 0, ifNull(revenue, 0)) AS rev"
            f" FROM {source} WHERE campaign_id != '' AND NOT is_bot",
            params,
        )
        if not int(run(f"SELECT count() FROM {rb}")[0][0]):
            return
        run(f"CREATE TABLE {rs} ENGINE = Memory AS {_scoped(rb, 'person')}")
        run(
            f"CREATE TABLE {rn} ENGINE = Memory AS SELECT * FROM (SELECT DISTINCT ws, cid,"
            " scope, key, ev, cityHash64(ws, cid, scope, key, ev, person) AS k FROM"
            f" {rs} WHERE ev IN {_PEOPLE_EVENTS}) b WHERE k NOT IN (SELECT k FROM {db}.{PEOPLE}"
            f" WHERE (workspace_id, campaign_id) IN (SELECT DISTINCT ws, cid FROM {rb})"
            f" AND k IN (SELECT cityHash64(ws, cid, scope, key, ev, person) FROM {rs}))"
        )
        run(f"INSERT INTO {db}.{PEOPLE} SELECT ws, cid, k FROM {rn}")
        run(
            f"INSERT INTO {db}.{ROLLUP} SELECT ws, cid, scope, key, {_aggregates()} FROM ("
            f"SELECT ws, cid, scope, key, ev, 1 AS n, rev, 0 AS np FROM {rs} UNION ALL"
            f" SELECT ws, cid, scope, key, ev, 0, 0, 1 FROM {rn}) d"
            " GROUP BY ws, cid, scope, key"
        )
    finally:
        for t in (rb, rs, rn):
            run(f"DROP TABLE IF EXISTS {t}")


def ch_rebuild(
    run: Callable[..., list[tuple[Any, ...]]],
    db: str,
    events: str,
    campaigns: Sequence[tuple[str, str]] | None = None,
) -> None:
    """Recompute the rollup of the given (workspace, campaign) pairs (all when None) from the
    events (each event once, in case a merge has not yet collapsed a racing writer's repeat)."""
    if campaigns is not None and not campaigns:
        return
    if campaigns is None:
        for table in (ROLLUP, PEOPLE):
            run(f"TRUNCATE TABLE {db}.{table}")
        ch_merge(run, db, f"(SELECT * FROM {events} LIMIT 1 BY workspace_id, event_id)")
        return
    params = {"rw": [w for w, _ in campaigns], "rc": [c for _, c in campaigns]}
    pairs = "has(arrayZip({rw:Array(String)}, {rc:Array(String)}), (workspace_id, campaign_id))"
    for table in (ROLLUP, PEOPLE):
        run(f"ALTER TABLE {db}.{table} DELETE WHERE {pairs} SETTINGS mutations_sync = 2", params)
    src = f"(SELECT * FROM {events} WHERE {pairs} LIMIT 1 BY workspace_id, event_id)"
    ch_merge(run, db, src, params)
