"""Domain facts as events: a line for the event store, appended to the process's spool when
the transaction that makes the fact true commits (never when it rolls back).

Campaigns, contacts (tag changes) and other domains record what *happened* this way, so the
funnel, retention and breakdown queries work on it without code of their own. Event ids are
derived from the row the fact created, so a replay or a second emit is stored once by the
store's event_id dedupe. Without an installed sink (CLI runs, tests without a runtime) nothing
is written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import orjson
from sqlalchemy.orm import Session

from liebian.events.store.base import EventRow, record_time
from liebian.kit.db import after_commit

if TYPE_CHECKING:
    from liebian.app.runtime import Runtime

SINK_KEY: Final = "liebian.event_sink"


class SpoolSink:
    """Appends event lines to the runtime's spool (absent in CLI runs: then nothing)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def write(self, data: bytes) -> None:
        spool = self.runtime.spool
        if spool is not None and data:
            spool.append_line(data)


def install(runtime: Runtime) -> SpoolSink:
    """Put one sink into every session the runtime's factory makes (idempotent)."""
    info = runtime.sessions.kw.setdefault("info", {})
    sink = info.get(SINK_KEY)
    if not isinstance(sink, SpoolSink):
        sink = info[SINK_KEY] = SpoolSink(runtime)
    return sink


def installed(session: Session) -> bool:
    return session.info.get(SINK_KEY) is not None


def event_line(
    *,
    workspace_id: str,
    event: str,
    event_id: str,
    ts: datetime | None = None,
    properties: Mapping[str, Any] | None = None,
    **columns: Any,
) -> bytes:
    """One NDJSON spool line; ``columns`` are EventRow's (user_id, channel, campaign_id, …).

    The record ``EventRow(...).to_record()`` would make, built from a copy of a blank record
    (entry decisions write two events each: the dataclass and its per-column loop were a
    tenth of a decision's CPU)."""
    now = record_time(datetime.now(UTC))
    record = _BLANK.copy()
    for name, value in columns.items():
        if name not in _SETTABLE:
            raise TypeError(f"event_line() got an unexpected column {name!r}")
        record[name] = value
    record["workspace_id"] = workspace_id
    record["event_id"] = event_id
    record["event"] = event
    record["ts"] = now if ts is None else record_time(ts)
    record["received_at"] = now
    props = {k: v for k, v in (properties or {}).items() if v is not None}
    if props:
        record["properties"] = properties_json(props)
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


_BLANK: Final = EventRow("", "", "", datetime(1970, 1, 1, tzinfo=UTC)).to_record()
_SETTABLE: Final = frozenset(_BLANK) - {
    "workspace_id", "event_id", "event", "ts", "received_at", "properties"
}  # fmt: skip


def properties_json(props: Mapping[str, Any]) -> str:
    """``properties`` as ``EventRow.to_record`` writes it (compact JSON, not ASCII-escaped);
    orjson where it can (the same text for strings, numbers, lists and dicts), json's
    rules otherwise (integers past 64 bits, non-string keys)."""
    try:
        return orjson.dumps(props).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(props, ensure_ascii=False, separators=(",", ":"))


def emit_after_commit(session: Session, data: bytes) -> None:
    """Append ``data`` (one or more lines) once the session's transaction commits."""
    sink: SpoolSink | None = session.info.get(SINK_KEY)
    if sink is None or not data:
        return
    after_commit(session, lambda: sink.write(data))
