"""Community actions as events in the event store, written once, after the commit that made
them true (the same path as campaigns' fission events: a line appended to the runtime's spool,
loaded by the flusher). So funnels, retention and breakdowns work on group joins, leaves,
messages and violations without code of their own.

=================  ===========================================  ==============================
event              when                                         properties
=================  ===========================================  ==============================
community_view     the entry page was shown                     community_id
group_routed       a scan was given a place in a group          community_id, group_id, tier
group_joined       a member joined (WeCom callback, API, or a   community_id, group_id, tier,
                   personal WeChat group's route)               scene
group_left         a member left or was removed                 community_id, group_id, tier
group_message      a group message was ingested                 community_id, group_id
group_violation    a message broke a rule                       rule, action, step
=================  ===========================================  ==============================

``user_id`` is the contact's external id when known; ``event_id`` is derived from the row or
message (``cm:join:cmb_…:<n>``), so a replay is stored once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import orjson
from sqlalchemy.orm import Session

from liebian.events.store.base import EventRow
from liebian.kit.db import after_commit

if TYPE_CHECKING:
    from liebian.app.runtime import Runtime

SINK_KEY: Final = "liebian.community_events"


class CommunityEventSink:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def write(self, data: bytes) -> None:
        spool = self.runtime.spool
        if spool is not None and data:
            spool.append_line(data)


def install(runtime: Runtime) -> None:
    runtime.sessions.kw.setdefault("info", {})[SINK_KEY] = CommunityEventSink(runtime)
    runtime.extras[SINK_KEY] = runtime.sessions.kw["info"][SINK_KEY]


def line(
    *,
    workspace_id: str,
    event: str,
    event_id: str,
    user_id: str | None = None,
    visitor_id: str | None = None,
    channel: str | None = None,
    platform: str | None = None,
    properties: dict[str, Any] | None = None,
    ts: datetime | None = None,
) -> bytes:
    now = datetime.now(UTC)
    row = EventRow(
        workspace_id=workspace_id, event_id=event_id, event=event, ts=ts or now,
        received_at=now, visitor_id=visitor_id, user_id=user_id, channel=channel,
        platform=platform, properties={k: v for k, v in (properties or {}).items() if v is not None},
    )  # fmt: skip
    return orjson.dumps(row.to_record(), option=orjson.OPT_APPEND_NEWLINE)


def emit(session: Session, **fields: Any) -> None:
    """Append the event once the session's transaction commits (never if it rolls back)."""
    sink: CommunityEventSink | None = session.info.get(SINK_KEY)
    if sink is None:
        return
    data = line(**fields)
    after_commit(session, lambda: sink.write(data))


def emit_now(runtime: Runtime, **fields: Any) -> None:
    if runtime.spool is not None:
        runtime.spool.append_line(line(**fields))
