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

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from liebian.events import sink as event_sink

if TYPE_CHECKING:
    from liebian.app.runtime import Runtime


def install(runtime: Runtime) -> None:
    event_sink.install(runtime)


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
    return event_sink.event_line(
        workspace_id=workspace_id, event=event, event_id=event_id, ts=ts, properties=properties,
        visitor_id=visitor_id, user_id=user_id, channel=channel, platform=platform,
    )  # fmt: skip


def emit(session: Session, **fields: Any) -> None:
    """Append the event once the session's transaction commits (never if it rolls back)."""
    if event_sink.installed(session):
        event_sink.emit_after_commit(session, line(**fields))


def emit_now(runtime: Runtime, **fields: Any) -> None:
    if runtime.spool is not None:
        runtime.spool.append_line(line(**fields))
