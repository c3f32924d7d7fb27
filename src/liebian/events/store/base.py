"""The event store interface and the row schema shared by every backend.

One row per event. Clicks recorded by the redirect are events too (``event="click"``,
``is_qr`` for scans). Identity: an ``aliases`` table in the same backend maps a
``visitor_id`` to the ``user_id`` it became on sign-up; queries resolve the person as
``coalesce(alias.user_id, user_id, visitor_id)`` so a visitor's earlier clicks count as the
user's. Keeping aliases beside the events lets that join run inside the engine.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from liebian.kit.errors import DomainError

# (name, DuckDB type, ClickHouse type). Order is the on-disk column order of both backends.
# ClickHouse strings are non-nullable ('' = absent) because Nullable columns cost a mask per
# column; queries treat '' and NULL alike through NULLIF, so answers agree across backends.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("workspace_id", "VARCHAR", "LowCardinality(String)"),
    ("event_id", "VARCHAR", "String"),
    ("event", "VARCHAR", "LowCardinality(String)"),
    ("ts", "TIMESTAMP", "DateTime64(3, 'UTC')"),
    ("received_at", "TIMESTAMP", "DateTime64(3, 'UTC')"),
    ("visitor_id", "VARCHAR", "String"),
    ("user_id", "VARCHAR", "String"),
    ("click_id", "VARCHAR", "String"),
    ("link_id", "VARCHAR", "String"),
    ("channel", "VARCHAR", "LowCardinality(String)"),
    ("campaign_id", "VARCHAR", "String"),
    ("platform", "VARCHAR", "LowCardinality(String)"),
    ("device", "VARCHAR", "LowCardinality(String)"),
    ("os", "VARCHAR", "LowCardinality(String)"),
    ("browser", "VARCHAR", "LowCardinality(String)"),
    ("referrer", "VARCHAR", "String"),
    ("ip_hash", "VARCHAR", "String"),
    ("is_bot", "BOOLEAN", "Bool"),
    ("is_qr", "BOOLEAN", "Bool"),
    ("utm_source", "VARCHAR", "String"),
    ("utm_medium", "VARCHAR", "String"),
    ("utm_campaign", "VARCHAR", "String"),
    ("utm_term", "VARCHAR", "String"),
    ("utm_content", "VARCHAR", "String"),
    ("revenue", "BIGINT", "Int64"),
    ("currency", "VARCHAR", "LowCardinality(String)"),
    ("properties", "VARCHAR", "String"),
)
COLUMN_NAMES: tuple[str, ...] = tuple(c[0] for c in COLUMNS)
STRING_COLUMNS: frozenset[str] = frozenset(c[0] for c in COLUMNS if c[1] == "VARCHAR")
# Columns a query filter or breakdown may name (properties are reached as "properties.<key>").
QUERYABLE_COLUMNS: frozenset[str] = frozenset(COLUMN_NAMES) - {"workspace_id", "properties"}


def _iso(ts: datetime) -> str:
    if ts.tzinfo is None:
        raise ValueError("event timestamps must be timezone-aware")
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


record_time = _iso  # the text of ``ts`` / ``received_at`` in a record, for pre-built lines


@dataclass(slots=True)
class EventRow:
    """One event as stored. ``revenue`` is in minor units (分)."""

    workspace_id: str
    event_id: str
    event: str
    ts: datetime
    received_at: datetime | None = None
    visitor_id: str | None = None
    user_id: str | None = None
    click_id: str | None = None
    link_id: str | None = None
    channel: str | None = None
    campaign_id: str | None = None
    platform: str | None = None
    device: str | None = None
    os: str | None = None
    browser: str | None = None
    referrer: str | None = None
    ip_hash: str | None = None
    is_bot: bool = False
    is_qr: bool = False
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_term: str | None = None
    utm_content: str | None = None
    revenue: int | None = None
    currency: str | None = None
    properties: Mapping[str, Any] | str | None = field(default=None)

    def to_record(self) -> dict[str, Any]:
        """The JSON-ready dict written to the spool and read back by the stores."""
        rec: dict[str, Any] = {}
        for name in COLUMN_NAMES:
            value = getattr(self, name)
            if name in ("ts", "received_at"):
                value = _iso(value if value is not None else datetime.now(UTC))
            elif name == "properties" and value is not None and not isinstance(value, str):
                value = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            rec[name] = value
        return rec

    def to_json_line(self) -> bytes:
        return (json.dumps(self.to_record(), ensure_ascii=False) + "\n").encode()


def rows_to_ndjson(rows: Iterable[EventRow]) -> bytes:
    return b"".join(r.to_json_line() for r in rows)


class QueryTimeout(DomainError):
    """A read ran past the store's time limit and was cancelled inside the engine."""

    status = 503
    code = "query_timeout"


def timeout_error(seconds: float) -> QueryTimeout:
    return QueryTimeout(
        f"the query ran longer than {seconds:g} s and was cancelled; narrow the date range or"
        " the filters, or ask an admin to raise LIEBIAN_QUERY_TIMEOUT",
        details={"limit_seconds": seconds},
    )


@dataclass(frozen=True, slots=True)
class InsertResult:
    inserted: int  # rows newly stored
    duplicates: int  # rows skipped because their event_id was already stored (or repeated)


@dataclass(frozen=True, slots=True)
class Alias:
    workspace_id: str
    visitor_id: str
    user_id: str
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PersonEvent:
    """One event of a person's timeline (what a profile shows; no IP hash)."""

    ts: datetime  # UTC, aware
    event_id: str
    event: str
    channel: str | None
    campaign_id: str | None
    link_id: str | None
    revenue: int | None
    currency: str | None
    properties: str | None


def erased_marker(digest: str) -> str:
    return f"erased:{digest[:16]}"


@runtime_checkable
class EventStore(Protocol):
    """What the ingestion path and the analytics queries need from an event backend.

    ``dialect`` names the SQL flavour ("duckdb" or "clickhouse"); analytics builds SQL for
    it and runs it through ``query`` with every value bound as a parameter.
    """

    dialect: str
    events_table: str
    aliases_table: str
    # A table kept at ingest with each person's earliest (ms, channel), one row per
    # (workspace_id, visitor_id, person_key); None when queries compute first touch from events.
    first_touch_table: str | None

    def aliases_source(self) -> str:
        """SQL relation (workspace_id, visitor_id, user_id), one row per visitor."""
        ...

    def campaign_counts(
        self, workspace_id: str, campaign_ids: Sequence[str], *, by: str | None
    ) -> list[tuple[str, dict[str, int]]]:
        """The campaign dashboard's counters from the rollup kept at load
        (``campaign_rollup.py``): per key of ``by`` (None, channel, day, campaign)."""
        ...

    def rollup_zone(self, workspace_id: str) -> str:
        """The time zone the workspace's ``day`` counters are kept in."""
        ...

    def set_rollup_zone(self, workspace_id: str, tz: str) -> None:
        """Keep the workspace's ``day`` counters in ``tz`` (re-keys the stored ones)."""
        ...

    def rebuild_rollup(self) -> None:
        """Recompute the campaign rollup from the events (after writing events directly)."""
        ...

    def segment_loaded(self, segment: str) -> bool: ...

    def insert(self, rows: Sequence[EventRow]) -> InsertResult: ...

    def insert_ndjson(self, path: Path, *, segment: str | None = None) -> InsertResult:
        """Load an NDJSON file of ``EventRow.to_record()`` dicts in one batch.

        With ``segment`` set, the name is recorded in the same commit, and a segment already
        recorded is skipped: replaying a spool after a crash never inserts twice.
        """
        ...

    def add_aliases(self, aliases: Sequence[Alias]) -> int: ...

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
        """One person's events (by any of their user ids or visitor ids), newest first:
        ``(ts, event_id)`` descending, strictly before ``before`` when given, leaving out the
        events named in ``skip_events``."""
        ...

    def move_person(self, workspace_id: str, from_user_id: str, to_user_id: str) -> None:
        """Contacts merged: the events and aliases of ``from_user_id`` become ``to_user_id``'s."""
        ...

    def erase_person(
        self,
        workspace_id: str,
        user_ids: Sequence[str],
        visitor_ids: Sequence[str],
        marker: str,
    ) -> int:
        """PIPL erasure: the person key of every event of this person (user ids, visitor ids)
        becomes ``marker``, IP hashes and properties are cleared, and the aliases are deleted.
        Counts and sums keep adding up (one erased person). Returns the events rewritten."""
        ...

    def query(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]: ...

    def event_names(self, workspace_id: str) -> set[str]: ...

    def count(self, workspace_id: str) -> int: ...

    def close(self) -> None: ...
