"""All OLTP SQL of the event pipeline (the event store has its own, events/store/)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from liebian.events.models import AppliedEvent

if TYPE_CHECKING:
    from liebian.events.hooks import HookEvent


@functools.cache
def _mark_stmt(dialect: str) -> Any:
    make: Any = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    table = AppliedEvent.__table__
    return (
        make(table)
        .on_conflict_do_nothing(index_elements=["workspace_id", "event_id"])
        .returning(table.c.workspace_id, table.c.event_id)
    )


def mark_applied(session: Session, events: Sequence[HookEvent], now: datetime) -> list[HookEvent]:
    """Write a marker for each event not applied before; return those, in their order.

    One multi-row ``INSERT … ON CONFLICT DO NOTHING RETURNING``: the rows it returns are the
    events this transaction applies. A concurrent transaction inserting the same key waits for
    the other's commit and then skips it (PostgreSQL), or cannot run at all (SQLite's single
    writer), so two workers never both apply one event.
    """
    first: dict[tuple[str, str], HookEvent] = {}
    for event in events:
        first.setdefault((event.workspace_id, event.event_id[:128]), event)
    if not first:
        return []
    rows = [
        {
            "workspace_id": ws,
            "event_id": event_id,
            "event": event.event[:64],
            "received_at": event.received_at,
            "applied_at": now,
        }
        for (ws, event_id), event in first.items()
    ]
    inserted = {
        (row[0], row[1])
        for row in session.execute(_mark_stmt(session.get_bind().dialect.name), rows)
    }
    return [event for key, event in first.items() if key in inserted]


def restamp_applied(session: Session, batch_started: datetime, done: datetime) -> None:
    """Move this batch's markers (``applied_at`` = the instant it started, unique to it) to
    when its consumers finished: one indexed UPDATE."""
    session.execute(
        update(AppliedEvent)
        .where(AppliedEvent.applied_at == batch_started)
        .values(applied_at=done)
        .execution_options(synchronize_session=False)
    )


def prune_applied(session: Session, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` of the oldest markers applied before ``before``; how many."""
    pk = (AppliedEvent.workspace_id, AppliedEvent.event_id)
    keys = session.execute(
        select(*pk)
        .where(AppliedEvent.applied_at < before)
        .order_by(AppliedEvent.applied_at)
        .limit(limit)
    ).all()
    if keys:
        session.execute(
            delete(AppliedEvent)
            .where(tuple_(*pk).in_([tuple(k) for k in keys]))
            .execution_options(synchronize_session=False)
        )
    return len(keys)
