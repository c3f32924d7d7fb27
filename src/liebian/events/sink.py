"""Domain facts as events: a line for the event store, appended to the process's spool when
the transaction that makes the fact true commits (never when it rolls back).

Campaigns, contacts (tag changes) and other domains record what *happened* this way, so the
funnel, retention and breakdown queries work on it without code of their own. Event ids are
derived from the row the fact created, so a replay or a second emit is stored once by the
store's event_id dedupe. Without an installed sink (CLI runs, tests without a runtime) nothing
is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import orjson
from sqlalchemy.orm import Session

from liebian.events.store.base import EventRow
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
    """One NDJSON spool line; ``columns`` are EventRow's (user_id, channel, campaign_id, …)."""
    now = datetime.now(UTC)
    props = {k: v for k, v in (properties or {}).items() if v is not None}
    row = EventRow(
        workspace_id=workspace_id, event_id=event_id, event=event, ts=ts or now,
        received_at=now, properties=props or None, **columns,
    )  # fmt: skip
    return orjson.dumps(row.to_record(), option=orjson.OPT_APPEND_NEWLINE)


def emit_after_commit(session: Session, data: bytes) -> None:
    """Append ``data`` (one or more lines) once the session's transaction commits."""
    sink: SpoolSink | None = session.info.get(SINK_KEY)
    if sink is None or not data:
        return
    after_commit(session, lambda: sink.write(data))
