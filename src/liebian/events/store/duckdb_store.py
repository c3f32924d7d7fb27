"""Embedded event store: one DuckDB file beside the OLTP database.

Dedupe happens at insert: a batch is staged, collapsed on its idempotency key and
anti-joined against the keys already stored, all inside one transaction. The key is the
128-bit MD5 of (workspace_id, NUL, event_id), kept in a compact side table ``event_keys``:
the anti-join then reads 16 bytes per stored event instead of decompressing every stored
event_id string (5-10x less work per batch with millions of rows stored), and dedupe stays
exact for any practical purpose (two distinct ids collide with probability ~n^2/2^129).
A unique index would do the same but DuckDB's ART index makes bulk loads several times
slower and lives in memory; the unindexed anti-join keeps ingest fast (docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from liebian.events.store import campaign_rollup, duckdb_community, duckdb_first_touch
from liebian.events.store.base import (
    COLUMN_NAMES,
    COLUMNS,
    Alias,
    EventRow,
    InsertResult,
    PersonEvent,
    rows_to_ndjson,
    timeout_error,
)

# The person an event belongs to before identity aliases, as the 64-bit key every analytics
# query groups and joins on. Stored with the event (DuckDB only) because hashing the id text at
# query time was ~0.4 s of CPU per 3M events; ClickHouse computes it in the query.
PERSON_KEY_SQL = "hash(coalesce(nullif(user_id, ''), visitor_id))"
# hash() may change between DuckDB releases: the file records what this probe hashed to when
# its keys were computed, and they are recomputed on open if the engine now hashes otherwise.
_HASH_PROBE_SQL = "SELECT CAST(hash('liebian person key probe') AS VARCHAR)"
_EVENTS_DDL = (
    "CREATE TABLE IF NOT EXISTS events ("
    + ", ".join(f"{name} {duck}" for name, duck, _ in COLUMNS)
    + ", person_key UBIGINT)"
)
_META_DDL = "CREATE TABLE IF NOT EXISTS store_meta (key VARCHAR PRIMARY KEY, value VARCHAR)"
# (workspace, visitor) pairs whose alias this process remembers writing (see add_aliases).
ALIAS_CACHE_SIZE = 200_000
_ALIASES_DDL = (
    "CREATE TABLE IF NOT EXISTS aliases (workspace_id VARCHAR NOT NULL, "
    "visitor_id VARCHAR NOT NULL, user_id VARCHAR NOT NULL, created_at TIMESTAMP, "
    "PRIMARY KEY (workspace_id, visitor_id))"
)
# One row per stored event: its idempotency key (see the module docstring).
_KEYS_DDL = "CREATE TABLE event_keys (k UHUGEINT NOT NULL)"
# Events that tie their visitor to their user in the identity map (aliases).
_ALIASING = "visitor_id <> '' AND user_id <> ''"
# NUL cannot occur in either id, so (workspace, id) pairs map to distinct strings.
KEY_SQL = "md5_number(concat(workspace_id, chr(0), event_id))"
_SEGMENTS_DDL = (
    "CREATE TABLE IF NOT EXISTS loaded_segments (name VARCHAR PRIMARY KEY, "
    "loaded_at TIMESTAMP DEFAULT current_timestamp, inserted BIGINT)"
)

# read_json reads timestamps as text so that both "2024-01-01 00:00:00.123" (UTC, what the
# spool writes) and ISO 8601 with an offset parse; TIMESTAMPTZ honours the offset and the
# session time zone is UTC, so naive strings are UTC. The instant becomes the naive UTC
# TIMESTAMP through its epoch microseconds: the same value as ``AT TIME ZONE 'UTC'``, without
# ICU's time zone conversion per row (~0.1 µs of the loader's CPU per timestamp).
_JSON_COLUMNS = (
    "{"
    + ", ".join(
        f"'{name}': '{'VARCHAR' if duck == 'TIMESTAMP' else duck}'" for name, duck, _ in COLUMNS
    )
    + "}"
)
_SELECT_CAST = ", ".join(
    f"make_timestamp(epoch_us(CAST({name} AS TIMESTAMPTZ))) AS {name}"
    if duck == "TIMESTAMP"
    else (f"coalesce({name}, false) AS {name}" if duck == "BOOLEAN" else name)
    for name, duck, _ in COLUMNS
)


class DuckDBEventStore:
    dialect = "duckdb"
    events_table = "events"
    aliases_table = "aliases"
    first_touch_table: str | None = duckdb_first_touch.TABLE
    # Community events with their ids as columns, kept at load (communities' group metrics).
    community_table: str | None = duckdb_community.TABLE
    # Their day rows already counted per (local day, key) in the rollup zone (same module).
    community_days_table: str | None = duckdb_community.DAYS

    def __init__(
        self, path: str | Path, *, threads: int | None = None, query_timeout: float | None = None
    ) -> None:
        self.path = str(path)
        # Seconds a read may run before it is interrupted inside DuckDB (None: no limit).
        self.query_timeout = query_timeout
        config: dict[str, Any] = {}
        if threads:
            config["threads"] = threads
        self._con = duckdb.connect(self.path, config=config)
        # ICU is statically linked but not autoloaded for settings; naive timestamps are UTC.
        self._con.execute("LOAD icu")
        self._con.execute("SET TimeZone = 'UTC'")
        self._write_lock = threading.Lock()
        # (workspace, visitor) → user id this process last wrote to ``aliases`` (bounded LRU,
        # under the write lock): an event stream repeats the same people, and re-upserting a
        # mapping that has not changed cost a DuckDB upsert per batch on the request path.
        # Cleared by every other write to the table (move_person, erase_person).
        self._alias_cache: OrderedDict[tuple[str, str], str] = OrderedDict()
        for ddl in (_EVENTS_DDL, _ALIASES_DDL, _SEGMENTS_DDL, _META_DDL):
            self._con.execute(ddl)
        self._ensure_person_keys()
        has_keys = self._con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'event_keys'"
            " AND database_name = current_database() AND schema_name = 'main'"
        ).fetchone()
        if not (has_keys and has_keys[0]):
            # A file from before event_keys existed: derive the keys once, atomically.
            self._con.execute("BEGIN TRANSACTION")
            self._con.execute(_KEYS_DDL)
            self._con.execute(f"INSERT INTO event_keys SELECT {KEY_SQL} FROM events")
            self._con.execute("COMMIT")
        probe = (self._con.execute(_HASH_PROBE_SQL).fetchone() or ("",))[0]
        duckdb_first_touch.ensure(self._con, probe)
        duckdb_community.ensure(self._con, probe)
        campaign_rollup.duck_ensure(self._con, probe)

    def _ensure_person_keys(self) -> None:
        """Add and fill ``events.person_key`` in files from before it existed, or after a
        DuckDB upgrade that changed ``hash()``; one transaction, once."""
        con = self._con
        probe = (con.execute(_HASH_PROBE_SQL).fetchone() or ("",))[0]
        recorded = con.execute("SELECT value FROM store_meta WHERE key = 'person_hash'").fetchone()
        if recorded and recorded[0] == probe:
            return
        con.execute("BEGIN TRANSACTION")
        columns = {r[0] for r in con.execute("DESCRIBE events").fetchall()}
        if "person_key" not in columns:
            con.execute("ALTER TABLE events ADD COLUMN person_key UBIGINT")
        con.execute(f"UPDATE events SET person_key = {PERSON_KEY_SQL}")
        con.execute(
            "INSERT OR REPLACE INTO store_meta VALUES ('person_hash', $probe)", {"probe": probe}
        )
        con.execute("COMMIT")

    @contextlib.contextmanager
    def _transaction(self, *, alias_cache: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write transaction on a cursor of its own, under the write lock: committed when
        the block ends, rolled back if it raises (``alias_cache``: the identity map changes,
        so the in-memory alias cache is dropped first)."""
        with self._write_lock:
            if alias_cache:
                self._alias_cache.clear()
            con = self._con.cursor()
            try:
                con.execute("BEGIN TRANSACTION")
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            finally:
                con.close()

    def aliases_source(self) -> str:
        """The aliases relation queries join (one row per visitor thanks to the primary key)."""
        return "aliases"

    # -- ingestion -----------------------------------------------------------------------

    def insert(self, rows: Sequence[EventRow]) -> InsertResult:
        if not rows:
            return InsertResult(0, 0)
        fd, name = tempfile.mkstemp(suffix=".ndjson", prefix="liebian-batch-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(rows_to_ndjson(rows))
            return self.insert_ndjson(Path(name))
        finally:
            os.unlink(name)

    def insert_ndjson(self, path: Path, *, segment: str | None = None) -> InsertResult:
        return self._load([path], None if segment is None else [segment])

    def insert_segments(self, segments: Sequence[tuple[Path, str]]) -> InsertResult:
        """Load several spool segments as ONE batch, in one transaction that records all their
        names; a segment already recorded is left out (a replay after a crash between the
        commit and the deletes). What each statement of a load costs beside its rows (above
        all the dedupe's scan of every stored key, and the first-touch join) is then paid
        once for all of them, and two full segments fill whole row groups (decision 0053)."""
        return self._load([p for p, _ in segments], [n for _, n in segments])

    def _load(self, paths: list[Path], segments: list[str] | None) -> InsertResult:
        with self._write_lock:
            con = self._con.cursor()
            try:
                con.execute("BEGIN TRANSACTION")
                if segments is not None:
                    done = {
                        str(row[0])
                        for row in con.execute(
                            "SELECT name FROM loaded_segments WHERE list_contains($names, name)",
                            {"names": segments},
                        ).fetchall()
                    }
                    if done:
                        kept = [
                            (p, n) for p, n in zip(paths, segments, strict=True) if n not in done
                        ]
                        paths, segments = [p for p, _ in kept], [n for _, n in kept]
                    if not paths:
                        con.execute("ROLLBACK")
                        return InsertResult(0, 0)
                con.execute(
                    "CREATE OR REPLACE TEMP TABLE _stage AS SELECT "
                    + _SELECT_CAST
                    + f", {KEY_SQL} AS _k"
                    + f" FROM read_json($path, format='newline_delimited', columns={_JSON_COLUMNS})",
                    {"path": str(paths[0]) if len(paths) == 1 else [str(p) for p in paths]},
                )
                # With the counts, which of the derived tables the batch can touch at all: a
                # merge with nothing to merge still costs its statements, and each statement
                # takes the GIL several times (decisions 0038, 0053). Each filter is the first
                # one of the merge it stands for (or wider), so a skipped merge had no rows.
                total, distinct, aliasing, touching, community, campaign = con.execute(
                    "SELECT count(*), count(DISTINCT _k),"
                    f" count(*) FILTER (WHERE {_ALIASING}),"
                    f" count(*) FILTER (WHERE {duckdb_first_touch.BATCH_FILTER}),"
                    f" count(*) FILTER (WHERE {duckdb_community.BATCH_FILTER}),"
                    f" count(*) FILTER (WHERE {campaign_rollup.DUCK_BATCH_FILTER}) FROM _stage"
                ).fetchone() or (0, 0, 0, 0, 0, 0)
                # Keys already stored: an inner join hashes the small batch and streams the
                # stored keys past it (NOT EXISTS would build a hash table of every stored key).
                con.execute(
                    "CREATE OR REPLACE TEMP TABLE _dup AS SELECT DISTINCT s._k AS k"
                    " FROM _stage s INNER JOIN event_keys d ON d.k = s._k"
                )
                if distinct == total and not _scalar(con, "SELECT count(*) FROM _dup"):
                    # The common case (nothing repeated, nothing seen before): the batch goes
                    # in as it is; the collapse below costs as much as the load itself.
                    source = "_stage"
                else:
                    # Collapse repeats inside the batch (first wins), skip keys already stored.
                    con.execute(
                        "CREATE OR REPLACE TEMP TABLE _new AS SELECT * FROM (SELECT *,"
                        " row_number() OVER (PARTITION BY _k) AS _rn FROM _stage) s"
                        " WHERE _rn = 1 AND NOT EXISTS (SELECT 1 FROM _dup d WHERE d.k = s._k)"
                    )
                    source = "_new"
                inserted = _scalar(
                    con,
                    f"INSERT INTO events ({', '.join(COLUMN_NAMES)}, person_key)"
                    f" SELECT {', '.join(COLUMN_NAMES)}, {PERSON_KEY_SQL} FROM {source}",
                )
                con.execute(f"INSERT INTO event_keys SELECT _k FROM {source}")
                # Events that carry both ids tie the visitor to the user (identity map), in
                # the load's own transaction rather than on the request path: the newest
                # event of a visitor wins, as in ClickHouse's ReplacingMergeTree(created_at).
                # No RETURNING: with it DuckDB took ~60 µs of CPU per visitor already mapped
                # (statement and commit) against ~1.5 without, and every event carrying both
                # ids of a known person is one (docs/benchmarks.md, session 8).
                if aliasing:
                    con.execute(
                        "INSERT INTO aliases SELECT workspace_id, visitor_id,"
                        " arg_max(user_id, ts), max(ts)"
                        f" FROM {source} WHERE {_ALIASING}"
                        " GROUP BY workspace_id, visitor_id"
                        " ON CONFLICT (workspace_id, visitor_id) DO UPDATE SET"
                        " user_id = excluded.user_id, created_at = excluded.created_at"
                        " WHERE aliases.created_at IS NULL"
                        " OR excluded.created_at >= aliases.created_at"
                    )
                # The visitors this load may have re-mapped are forgotten by the alias cache
                # (add_aliases writes them again next time); read only when it holds any.
                aliased = (
                    con.execute(
                        f"SELECT DISTINCT workspace_id, visitor_id FROM {source} WHERE {_ALIASING}"
                    ).fetchall()
                    if aliasing and self._alias_cache
                    else []
                )
                if touching:
                    duckdb_first_touch.merge_batch(con, source, PERSON_KEY_SQL)
                if community:
                    duckdb_community.merge_batch(con, source, PERSON_KEY_SQL)
                if campaign:
                    campaign_rollup.duck_merge(con, source, PERSON_KEY_SQL)
                if source == "_new":
                    con.execute("DROP TABLE _new")
                con.execute("DROP TABLE _stage")
                con.execute("DROP TABLE _dup")
                if segments is not None:
                    # How many rows each segment added is known only for a segment loaded
                    # alone; a group's names are recorded without it (NULL).
                    con.execute(
                        "INSERT INTO loaded_segments (name, inserted)"
                        " SELECT unnest($n::VARCHAR[]), $i::BIGINT",
                        {"n": segments, "i": inserted if len(segments) == 1 else None},
                    )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            finally:
                con.close()
            for workspace_id, visitor_id in aliased:
                self._alias_cache.pop((workspace_id, visitor_id), None)
        return InsertResult(inserted, total - inserted)

    def _remember_aliases(self, rows: Sequence[tuple[str, str, str]]) -> None:
        """What the identity map now says for these visitors (under the write lock)."""
        cache = self._alias_cache
        for workspace_id, visitor_id, user_id in rows:
            cache[(workspace_id, visitor_id)] = user_id
            cache.move_to_end((workspace_id, visitor_id))
        while len(cache) > ALIAS_CACHE_SIZE:
            cache.popitem(last=False)

    def segment_loaded(self, segment: str) -> bool:
        cur = self._con.cursor()
        try:
            return bool(
                cur.execute(
                    "SELECT 1 FROM loaded_segments WHERE name = $n", {"n": segment}
                ).fetchone()
            )
        finally:
            cur.close()

    def add_aliases(self, aliases: Sequence[Alias]) -> int:
        if not aliases:
            return 0
        # Latest alias of a visitor wins: a visitor re-identified as another user (shared
        # device) moves to that user from then on. One upsert may not touch a row twice.
        latest: dict[tuple[str, str], Alias] = {}
        for a in aliases:  # the newest per visitor (no time: now, so newest; ties: the later)
            key = (a.workspace_id, a.visitor_id)
            held = latest.get(key)
            if held is None or _alias_time(a) >= _alias_time(held):
                latest[key] = a
        cache = self._alias_cache
        # Known mappings first without the lock (single dict reads, safe under the GIL): a
        # batch of known people then never waits behind the flusher's load for the lock.
        if all(cache.get(key) == a.user_id for key, a in latest.items()):
            return 0
        with self._write_lock:
            rows = [a for key, a in latest.items() if cache.get(key) != a.user_id]
            if not rows:
                return 0
            cur = self._con.cursor()
            try:
                # One statement over unnested lists: executemany ran one upsert per alias
                # (~25 ms each on a busy machine, inside the request: a batch with 200
                # signups spent 5 s here).
                written = cur.execute(
                    "INSERT INTO aliases SELECT w, v, u, coalesce(t, now()::TIMESTAMP) FROM"
                    " (SELECT unnest($w) AS w, unnest($v) AS v, unnest($u) AS u,"
                    " unnest($t::TIMESTAMP[]) AS t)"
                    " ON CONFLICT (workspace_id, visitor_id) DO UPDATE SET"
                    " user_id = excluded.user_id, created_at = excluded.created_at"
                    # The newest alias of a visitor wins, whichever is written last (as in
                    # ClickHouse's ReplacingMergeTree(created_at) and the load path above).
                    " WHERE aliases.created_at IS NULL OR excluded.created_at >= aliases.created_at"
                    " RETURNING workspace_id, visitor_id, user_id",
                    {
                        "w": [a.workspace_id for a in rows],
                        "v": [a.visitor_id for a in rows],
                        "u": [a.user_id for a in rows],
                        "t": [a.created_at for a in rows],
                    },
                ).fetchall()
            finally:
                cur.close()
            self._remember_aliases(written)
        return len(written)

    # -- one person (profiles, merges, PIPL erasure) ------------------------------------

    def person_events(
        self,
        workspace_id: str,
        user_ids: Sequence[str],
        visitor_ids: Sequence[str],
        *,
        before: tuple[datetime, str] | None,
        limit: int,
        skip_events: Sequence[str] = (),
    ) -> list[PersonEvent]:
        params: dict[str, Any] = {
            "ws": workspace_id,
            "u": list(user_ids),
            "v": list(visitor_ids),
            "n": limit,
            "skip": list(skip_events),
        }
        page = ""
        if before is not None:
            params["bt"] = before[0].astimezone(UTC).replace(tzinfo=None)
            params["be"] = before[1]
            page = " AND (ts < $bt OR (ts = $bt AND event_id < $be))"
        rows = self.query(
            "SELECT ts, event_id, event, nullif(channel, ''), nullif(campaign_id, ''),"
            " nullif(link_id, ''), revenue, nullif(currency, ''), properties FROM events"
            f" WHERE workspace_id = $ws AND ({_PERSON_MATCH}){page}"
            " AND NOT list_contains($skip::VARCHAR[], event)"
            " ORDER BY ts DESC, event_id DESC LIMIT $n",
            params,
        )
        return [PersonEvent(r[0].replace(tzinfo=UTC), *r[1:]) for r in rows]

    def move_person(self, workspace_id: str, from_user_id: str, to_user_id: str) -> None:
        params = {"ws": workspace_id, "f": from_user_id, "t": to_user_id}
        with self._transaction(alias_cache=True) as con:
            # Their campaigns' distinct counts change (two people become one).
            touched = campaign_rollup.duck_campaigns_of(
                con, workspace_id, "user_id IN ($f, $t)", params
            )
            con.execute(
                "UPDATE events SET user_id = $t, person_key = hash($t::VARCHAR)"
                " WHERE workspace_id = $ws AND user_id = $f",
                params,
            )
            con.execute(
                "UPDATE aliases SET user_id = $t WHERE workspace_id = $ws AND user_id = $f",
                params,
            )
            duckdb_community.move_person(con, params)
            con.execute(
                f"DELETE FROM {duckdb_first_touch.TABLE} WHERE workspace_id = $ws"
                " AND person_key IN (hash($f::VARCHAR), hash($t::VARCHAR))",
                params,
            )
            duckdb_first_touch.refill_person(con, workspace_id, to_user_id)
            campaign_rollup.duck_rebuild(con, touched)

    def erase_person(
        self,
        workspace_id: str,
        user_ids: Sequence[str],
        visitor_ids: Sequence[str],
        marker: str,
    ) -> int:
        params: dict[str, Any] = {
            "ws": workspace_id,
            "u": list(user_ids),
            "v": list(visitor_ids),
            "m": marker,
        }
        with self._transaction(alias_cache=True) as con:
            # The aliases name visitors too: collect them before the rows change.
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _erase_v AS SELECT unnest($v::VARCHAR[]) AS v"
                " UNION SELECT visitor_id FROM aliases"
                " WHERE workspace_id = $ws AND list_contains($u::VARCHAR[], user_id)",
                _only(params, "ws", "u", "v"),
            )
            erased = (
                "list_contains($u::VARCHAR[], user_id) OR (coalesce(user_id, '') = ''"
                " AND visitor_id IN (SELECT v FROM _erase_v))"
            )
            touched = campaign_rollup.duck_campaigns_of(
                con, workspace_id, erased, _only(params, "ws", "u")
            )
            duckdb_community.erase(con, erased, _only(params, "ws", "u"))
            changed = _scalar_p(
                con,
                "UPDATE events SET user_id = $m,"
                " visitor_id = CASE WHEN coalesce(visitor_id, '') = '' THEN visitor_id"
                " ELSE $m END, ip_hash = NULL, properties = NULL, referrer = NULL,"
                " person_key = hash($m::VARCHAR) WHERE workspace_id = $ws AND"
                " (list_contains($u::VARCHAR[], user_id) OR (coalesce(user_id, '') = ''"
                " AND visitor_id IN (SELECT v FROM _erase_v)))",
                _only(params, "ws", "u", "m"),
            )
            con.execute(
                f"DELETE FROM {duckdb_first_touch.TABLE} WHERE workspace_id = $ws AND"
                " (person_key IN (SELECT hash(x) FROM (SELECT unnest($u::VARCHAR[]) AS x))"
                " OR visitor_id IN (SELECT v FROM _erase_v) OR person_key = hash($m::VARCHAR))",
                _only(params, "ws", "u", "m"),
            )
            con.execute(
                "DELETE FROM aliases WHERE workspace_id = $ws AND"
                " (list_contains($u::VARCHAR[], user_id) OR visitor_id IN (SELECT v FROM _erase_v))",
                _only(params, "ws", "u"),
            )
            con.execute("DROP TABLE _erase_v")
            duckdb_first_touch.refill_person(con, workspace_id, marker)
            campaign_rollup.duck_rebuild(con, touched)
        return changed

    # -- reading -------------------------------------------------------------------------

    def query(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        cur = self._con.cursor()
        limit = self.query_timeout
        # interrupt() from a timer cancels the running statement inside the engine (its
        # threads stop and memory is freed), which a thread abandoned by its caller would not.
        timer = threading.Timer(limit, cur.interrupt) if limit else None
        try:
            if timer is not None:
                timer.start()
            return cur.execute(sql, dict(params)).fetchall()
        except duckdb.InterruptException as exc:
            raise timeout_error(limit or 0) from exc
        finally:
            if timer is not None:
                timer.cancel()
            cur.close()

    # -- the campaign dashboard's rollup (campaign_rollup.py) ------------------------------

    def rollup_zone(self, workspace_id: str) -> str:
        rows = self.query(
            f"SELECT tz FROM {campaign_rollup.ZONES} WHERE workspace_id = $ws", {"ws": workspace_id}
        )
        return str(rows[0][0]) if rows else campaign_rollup.DEFAULT_ZONE

    def set_rollup_zone(self, workspace_id: str, tz: str) -> None:
        with self._write_lock:
            con = self._con.cursor()
            try:
                # The community metrics' days are kept in the same zone (duckdb_community).
                campaign_rollup.duck_set_zone(
                    con, workspace_id, tz, lambda: duckdb_community.rekey(con, workspace_id)
                )
            finally:
                con.close()

    def rebuild_rollup(self) -> None:
        with self._transaction() as con:
            campaign_rollup.duck_rebuild(con)
            duckdb_community.rebuild(con)  # kept at load too: the same rule applies

    def campaign_counts(
        self, workspace_id: str, campaign_ids: Sequence[str], *, by: str | None
    ) -> list[tuple[str, dict[str, int]]]:
        return campaign_rollup.read(
            self.query, campaign_rollup.ROLLUP, workspace_id, campaign_ids, by, ch=False
        )

    def connection(self) -> duckdb.DuckDBPyConnection:
        """A cursor for callers that need DuckDB itself (e.g. COPY ... TO for exports)."""
        return self._con.cursor()

    def event_names(self, workspace_id: str) -> set[str]:
        rows = self.query(
            "SELECT DISTINCT event FROM events WHERE workspace_id = $ws", {"ws": workspace_id}
        )
        return {r[0] for r in rows}

    def count(self, workspace_id: str) -> int:
        rows = self.query(
            "SELECT count(*) FROM events WHERE workspace_id = $ws", {"ws": workspace_id}
        )
        return int(rows[0][0])

    def close(self) -> None:
        self._con.close()


# An event is the person's when its user id is one of theirs, or it has no user id and its
# visitor is one of theirs (their own alias list, or the store's identity map).
_PERSON_MATCH = (
    "list_contains($u::VARCHAR[], user_id) OR (coalesce(user_id, '') = '' AND"
    " (list_contains($v::VARCHAR[], visitor_id) OR visitor_id IN (SELECT visitor_id FROM aliases"
    " WHERE workspace_id = $ws AND list_contains($u::VARCHAR[], user_id))))"
)


def _only(params: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    # DuckDB refuses parameters a statement does not use.
    return {k: params[k] for k in keys}


def _scalar_p(con: duckdb.DuckDBPyConnection, sql: str, params: Mapping[str, Any]) -> int:
    row = con.execute(sql, dict(params)).fetchone()
    return int(row[0]) if row else 0


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0


def _alias_time(alias: Alias) -> datetime:
    return alias.created_at.replace(tzinfo=None) if alias.created_at else datetime.max
