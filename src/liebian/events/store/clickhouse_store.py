"""Scale-mode event store on ClickHouse (clickhouse-connect), or in process through chdb.

Table design (see docs/events-storage.md): ReplacingMergeTree partitioned by month, ordered
by (workspace_id, event, ts, event_id) so every query's workspace + event filter is a range
of the primary index. Dedupe is done at insert (anti-join against stored ids, helped by a
bloom-filter skip index on event_id); ReplacingMergeTree is the safety net that collapses
the rare duplicate two concurrent writers slip in, at merge time.

ClickHouse has no multi-statement transactions, so a spool segment's name is recorded after
its rows; a crash in between replays the segment and the event_id dedupe drops the repeats.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from liebian.events.store import campaign_rollup
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

_STRUCTURE = ", ".join(f"{name} {ch}" for name, _, ch in COLUMNS)


class Executor(Protocol):
    def run(
        self, sql: str, params: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> list[tuple[Any, ...]]: ...

    def load_ndjson(self, table: str, data: bytes | Path) -> None: ...

    def close(self) -> None: ...


def _array_text(values: list[Any] | tuple[Any, ...]) -> str:
    """An Array(String) query parameter as ClickHouse reads it from text (chdb binds text;
    clickhouse-connect formats Python lists itself)."""
    quoted = ("'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'" for v in values)
    return "[" + ",".join(quoted) + "]"


class ChdbExecutor:
    """ClickHouse in this process. chdb allows one embedded server per process, so every
    store shares it and keeps apart by database name."""

    _lock = threading.Lock()

    def __init__(self, path: str) -> None:
        from chdb import session

        self._session = session.Session(path if path and path != ":memory:" else "")

    def run(
        self, sql: str, params: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> list[tuple[Any, ...]]:
        bound = {
            k: _array_text(v) if isinstance(v, list | tuple) else v
            for k, v in (params or {}).items()
        }
        if timeout:
            sql = f"{sql} SETTINGS max_execution_time = {float(timeout)}"
        with self._lock:
            try:
                res = self._session.query(sql, "JSONCompact", params=bound)
            except Exception:
                # chdb leaves a cancelled query's partial output in the session's buffer, to be
                # prefixed to the next answer: a throwaway query takes it out.
                self._session.query("SELECT 1", "JSONCompact")
                raise
        raw = res.bytes()
        if not raw:
            return []
        return [tuple(r) for r in json.loads(raw)["data"]]

    def load_ndjson(self, table: str, data: bytes | Path) -> None:
        if isinstance(data, Path):
            self.run(
                f"INSERT INTO {table} SELECT * FROM file({{p:String}}, JSONEachRow, "
                f"{{s:String}}) SETTINGS date_time_input_format = 'best_effort'",
                {"p": str(data), "s": _STRUCTURE},
            )
        else:
            tmp = Path(f"/tmp/liebian-chdb-{uuid.uuid4().hex}.ndjson")
            tmp.write_bytes(data)
            try:
                self.load_ndjson(table, tmp)
            finally:
                tmp.unlink()

    def close(self) -> None:
        # The embedded server lives as long as the process; other stores may share it.
        pass


class ConnectExecutor:
    """A ClickHouse server over HTTP through clickhouse-connect."""

    def __init__(self, url: str) -> None:
        import clickhouse_connect

        self._client = clickhouse_connect.get_client(dsn=url)

    def run(
        self, sql: str, params: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> list[tuple[Any, ...]]:
        # {name:Type} placeholders are bound by the server, never spliced into the text.
        settings = {"max_execution_time": float(timeout)} if timeout else None
        res = self._client.query(sql, parameters=dict(params or {}), settings=settings)
        return [tuple(r) for r in res.result_rows]

    def load_ndjson(self, table: str, data: bytes | Path) -> None:
        block = data.read_bytes() if isinstance(data, Path) else data
        self._client.raw_insert(
            table,
            insert_block=block,
            fmt="JSONEachRow",
            settings={"date_time_input_format": "best_effort"},
        )

    def close(self) -> None:
        self._client.close()


class ClickHouseEventStore:
    dialect = "clickhouse"

    def __init__(
        self, executor: Executor, database: str = "liebian", *, query_timeout: float | None = None
    ) -> None:
        if not database.replace("_", "").isalnum():
            raise ValueError(f"bad database name: {database!r}")
        self._x = executor
        # Seconds a read may run (the server's max_execution_time cancels it); None: no limit.
        self.query_timeout = query_timeout
        self.database = database
        self.events_table = f"{database}.events"
        self.aliases_table = f"{database}.aliases"
        # First touch is computed per query from the events (no side table to keep in step).
        self.first_touch_table: str | None = None
        self._segments = f"{database}.loaded_segments"
        self._write_lock = threading.Lock()
        self._create()

    def _create(self) -> None:
        self._x.run(f"CREATE DATABASE IF NOT EXISTS {self.database}")
        self._x.run(
            f"CREATE TABLE IF NOT EXISTS {self.events_table} ({_STRUCTURE},"
            " INDEX event_id_bf event_id TYPE bloom_filter(0.01) GRANULARITY 4)"
            " ENGINE = ReplacingMergeTree(received_at)"
            " PARTITION BY toYYYYMM(ts)"
            " ORDER BY (workspace_id, event, ts, event_id)"
        )
        self._x.run(
            f"CREATE TABLE IF NOT EXISTS {self.aliases_table} (workspace_id String,"
            " visitor_id String, user_id String, created_at DateTime64(6, 'UTC'))"
            " ENGINE = ReplacingMergeTree(created_at) ORDER BY (workspace_id, visitor_id)"
        )
        self._x.run(
            f"CREATE TABLE IF NOT EXISTS {self._segments} (name String,"
            " loaded_at DateTime64(3, 'UTC'), inserted UInt64)"
            " ENGINE = ReplacingMergeTree ORDER BY name"
        )
        had_rollup = self._x.run(f"EXISTS TABLE {self.database}.{campaign_rollup.ROLLUP}")[0][0]
        for ddl in campaign_rollup.ch_ddl(self.database):
            self._x.run(ddl)
        if not int(had_rollup):
            # A database from before the rollup: fill it from the events once.
            campaign_rollup.ch_rebuild(self._x.run, self.database, self.events_table)

    def aliases_source(self) -> str:
        """Aliases collapsed to the latest per visitor without relying on merges (no FINAL)."""
        return (
            f"(SELECT workspace_id, visitor_id, argMax(user_id, created_at) AS user_id"
            f" FROM {self.aliases_table} GROUP BY workspace_id, visitor_id)"
        )

    # -- ingestion -----------------------------------------------------------------------

    def insert(self, rows: Sequence[EventRow]) -> InsertResult:
        if not rows:
            return InsertResult(0, 0)
        return self._insert(rows_to_ndjson(rows), None)

    def insert_ndjson(self, path: Path, *, segment: str | None = None) -> InsertResult:
        return self._insert(path, segment)

    def segment_loaded(self, segment: str) -> bool:
        return bool(
            self._x.run(
                f"SELECT 1 FROM {self._segments} WHERE name = {{n:String}} LIMIT 1",
                {"n": segment},
            )
        )

    def _insert(self, data: bytes | Path, segment: str | None) -> InsertResult:
        with self._write_lock:
            if segment is not None and self.segment_loaded(segment):
                return InsertResult(0, 0)
            stage = f"{self.database}._stage_{uuid.uuid4().hex}"
            new = f"{stage}_new"
            self._x.run(f"CREATE TABLE {stage} ({_STRUCTURE}) ENGINE = Memory")
            try:
                self._x.load_ndjson(stage, data)
                total = int(self._x.run(f"SELECT count() FROM {stage}")[0][0])
                cols = ", ".join(COLUMN_NAMES)
                # The batch's new events, once each: the events table and the campaign
                # rollup are both written from them.
                self._x.run(
                    f"CREATE TABLE {new} ENGINE = Memory AS SELECT {cols} FROM {stage}"
                    f" WHERE (workspace_id, event_id) NOT IN (SELECT workspace_id, event_id"
                    f" FROM {self.events_table} WHERE event_id IN (SELECT event_id FROM {stage}))"
                    f" LIMIT 1 BY workspace_id, event_id"
                )
                inserted = int(self._x.run(f"SELECT count() FROM {new}")[0][0])
                self._x.run(f"INSERT INTO {self.events_table} SELECT {cols} FROM {new}")
                campaign_rollup.ch_merge(self._x.run, self.database, new)
                # Events that carry both ids tie the visitor to the user (identity map), with
                # the load rather than on the request path; ReplacingMergeTree(created_at)
                # keeps each visitor's newest.
                self._x.run(
                    f"INSERT INTO {self.aliases_table} SELECT workspace_id,"
                    " assumeNotNull(visitor_id), assumeNotNull(argMax(user_id, ts)), max(ts)"
                    f" FROM {stage}"
                    " WHERE visitor_id != '' AND user_id != '' GROUP BY workspace_id, visitor_id"
                )
            finally:
                self._x.run(f"DROP TABLE IF EXISTS {stage}")
                self._x.run(f"DROP TABLE IF EXISTS {new}")
            if segment is not None:
                self._x.run(
                    f"INSERT INTO {self._segments} VALUES ({{n:String}}, now64(3), {{i:UInt64}})",
                    {"n": segment, "i": inserted},
                )
        return InsertResult(inserted, total - inserted)

    def add_aliases(self, aliases: Sequence[Alias]) -> int:
        if not aliases:
            return 0
        now = datetime.now(UTC)
        lines = b"".join(
            (
                json.dumps(
                    {
                        "workspace_id": a.workspace_id,
                        "visitor_id": a.visitor_id,
                        "user_id": a.user_id,
                        "created_at": (a.created_at or now)
                        .astimezone(UTC)
                        .strftime("%Y-%m-%d %H:%M:%S.%f"),
                    }
                )
                + "\n"
            ).encode()
            for a in aliases
        )
        if isinstance(self._x, ChdbExecutor):
            tmp = Path(f"/tmp/liebian-chdb-{uuid.uuid4().hex}.ndjson")
            tmp.write_bytes(lines)
            try:
                self._x.run(
                    f"INSERT INTO {self.aliases_table} SELECT * FROM file({{p:String}},"
                    " JSONEachRow, 'workspace_id String, visitor_id String, user_id String,"
                    " created_at DateTime64(6, \\'UTC\\')')",
                    {"p": str(tmp)},
                )
            finally:
                tmp.unlink()
        else:
            self._x.load_ndjson(self.aliases_table, lines)
        return len(aliases)

    # -- one person (profiles, merges, PIPL erasure) ------------------------------------

    def _person_match(self) -> str:
        # The person's user ids, or no user id and a visitor of theirs (their own aliases or
        # the store's identity map) — as in DuckDB's store.
        return (
            "has({u:Array(String)}, user_id) OR (user_id = '' AND (has({v:Array(String)},"
            f" visitor_id) OR visitor_id IN (SELECT visitor_id FROM {self.aliases_source()} a"
            " WHERE a.workspace_id = {ws:String} AND has({u:Array(String)}, a.user_id))))"
        )

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
            params["bt"] = before[0].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
            params["be"] = before[1]
            page = (
                " AND (ts < toDateTime64({bt:String}, 3, 'UTC') OR"
                " (ts = toDateTime64({bt:String}, 3, 'UTC') AND event_id < {be:String}))"
            )
        rows = self._x.run(
            "SELECT toString(ts), event_id, event, channel, campaign_id, link_id, revenue,"
            f" currency, properties FROM {self.events_table}"
            f" WHERE workspace_id = {{ws:String}} AND ({self._person_match()}){page}"
            " AND NOT has({skip:Array(String)}, event)"
            " ORDER BY ts DESC, event_id DESC LIMIT 1 BY event_id LIMIT {n:UInt32}",
            params,
        )
        return [
            PersonEvent(
                datetime.fromisoformat(str(r[0])).replace(tzinfo=UTC),
                r[1],
                r[2],
                r[3] or None,
                r[4] or None,
                r[5] or None,
                int(r[6]) if r[6] is not None else None,
                r[7] or None,
                r[8] or None,
            )
            for r in rows
        ]

    def move_person(self, workspace_id: str, from_user_id: str, to_user_id: str) -> None:
        params = {"ws": workspace_id, "f": from_user_id, "t": to_user_id}
        with self._write_lock:
            touched = self._campaigns_of(
                "user_id IN ({f:String}, {t:String})", {"ws": workspace_id, **params}
            )
            # Mutations (ALTER … UPDATE) rewrite the affected parts; mutations_sync waits for
            # them, so the next query already sees the survivor.
            for table in (self.events_table, self.aliases_table):
                self._x.run(
                    f"ALTER TABLE {table} UPDATE user_id = {{t:String}}"
                    " WHERE workspace_id = {ws:String} AND user_id = {f:String}"
                    " SETTINGS mutations_sync = 2",
                    params,
                )
            # Their campaigns' distinct counts change (two people become one).
            campaign_rollup.ch_rebuild(self._x.run, self.database, self.events_table, touched)

    def _campaigns_of(self, where: str, params: dict[str, Any]) -> list[tuple[str, str]]:
        rows = self._x.run(
            f"SELECT DISTINCT workspace_id, campaign_id FROM {self.events_table}"
            f" WHERE workspace_id = {{ws:String}} AND campaign_id != '' AND ({where})",
            params,
        )
        return [(r[0], r[1]) for r in rows]

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
        with self._write_lock:
            # The aliases name visitors too: resolve them before anything changes.
            aliased = self._x.run(
                f"SELECT DISTINCT visitor_id FROM {self.aliases_table}"
                " WHERE workspace_id = {ws:String} AND has({u:Array(String)}, user_id)",
                params,
            )
            params["v"] = sorted(set(params["v"]) | {r[0] for r in aliased})
            where = (
                "workspace_id = {ws:String} AND (has({u:Array(String)}, user_id)"
                " OR (user_id = '' AND has({v:Array(String)}, visitor_id)))"
            )
            changed = int(
                self._x.run(f"SELECT count() FROM {self.events_table} WHERE {where}", params)[0][0]
            )
            touched = self._campaigns_of(where, params)
            self._x.run(
                f"ALTER TABLE {self.events_table} UPDATE user_id = {{m:String}},"
                " visitor_id = if(visitor_id = '', '', {m:String}), ip_hash = '',"
                f" properties = '', referrer = '' WHERE {where} SETTINGS mutations_sync = 2",
                params,
            )
            self._x.run(
                f"ALTER TABLE {self.aliases_table} DELETE WHERE workspace_id = {{ws:String}}"
                " AND (has({u:Array(String)}, user_id) OR has({v:Array(String)}, visitor_id))"
                " SETTINGS mutations_sync = 2",
                params,
            )
            campaign_rollup.ch_rebuild(self._x.run, self.database, self.events_table, touched)
        return changed

    # -- reading -------------------------------------------------------------------------

    def query(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        limit = self.query_timeout
        try:
            return self._x.run(sql, params, timeout=limit)
        except Exception as exc:
            # Code 159 from chdb and from a server alike; anything else is a real fault.
            if limit and "TIMEOUT_EXCEEDED" in str(exc):
                raise timeout_error(limit) from exc
            raise

    # -- the campaign dashboard's rollup (campaign_rollup.py) ------------------------------

    def rollup_zone(self, workspace_id: str) -> str:
        rows = self._x.run(
            f"SELECT argMax(tz, updated) FROM {self.database}.{campaign_rollup.ZONES}"
            " WHERE workspace_id = {ws:String} GROUP BY workspace_id",
            {"ws": workspace_id},
        )
        return str(rows[0][0]) if rows else campaign_rollup.DEFAULT_ZONE

    def set_rollup_zone(self, workspace_id: str, tz: str) -> None:
        campaign_rollup.check_zone(tz)
        with self._write_lock:
            self._x.run(
                f"INSERT INTO {self.database}.{campaign_rollup.ZONES}"
                " VALUES ({ws:String}, {tz:String}, now64(6))",
                {"ws": workspace_id, "tz": tz},
            )
            pairs = self._x.run(
                "SELECT DISTINCT workspace_id, campaign_id FROM"
                f" {self.database}.{campaign_rollup.ROLLUP} WHERE workspace_id = {{ws:String}}",
                {"ws": workspace_id},
            )
            campaign_rollup.ch_rebuild(
                self._x.run, self.database, self.events_table, [(r[0], r[1]) for r in pairs]
            )

    def rebuild_rollup(self) -> None:
        with self._write_lock:
            campaign_rollup.ch_rebuild(self._x.run, self.database, self.events_table)

    def campaign_counts(
        self, workspace_id: str, campaign_ids: Sequence[str], *, by: str | None
    ) -> list[tuple[str, dict[str, int]]]:
        return campaign_rollup.read(
            self.query,
            f"{self.database}.{campaign_rollup.ROLLUP}",
            workspace_id,
            campaign_ids,
            by,
            ch=True,
        )

    def event_names(self, workspace_id: str) -> set[str]:
        rows = self.query(
            f"SELECT DISTINCT event FROM {self.events_table} WHERE workspace_id = {{ws:String}}",
            {"ws": workspace_id},
        )
        return {r[0] for r in rows}

    def count(self, workspace_id: str) -> int:
        rows = self.query(
            f"SELECT count() FROM {self.events_table} WHERE workspace_id = {{ws:String}}",
            {"ws": workspace_id},
        )
        return int(rows[0][0])

    def close(self) -> None:
        self._x.close()
