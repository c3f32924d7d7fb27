"""All OLTP SQL of the event pipeline (the event store has its own, events/store/)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, delete, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from liebian.events.models import AppliedEvent
from liebian.kit.precompiled import executemany, fetch_all

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
    fresh, rows = claim_unapplied(session, events, now)
    if rows:
        executemany(session, _plain_mark_stmt(), rows)
    return fresh


def claim_unapplied(
    session: Session, events: Sequence[HookEvent], now: datetime
) -> tuple[list[HookEvent], list[dict[str, Any]] | None]:
    """The events not applied before, in their order, and their markers still to write.

    PostgreSQL: the markers are written here (``INSERT … ON CONFLICT DO NOTHING RETURNING``,
    stamped ``now``; a concurrent transaction inserting the same key waits for this one's
    commit and then skips it) and the second value is None: :func:`settle_applied` moves
    their stamp. SQLite: the markers are only looked up, and :func:`settle_applied` writes
    them once the consumers are done, stamped with that time (no UPDATE of the batch's
    markers). Atomic all the same: a write session holds SQLite's write lock from its BEGIN
    IMMEDIATE, so no other transaction can mark one of these keys before this one commits.
    """
    first: dict[tuple[str, str], HookEvent] = {}
    for event in events:
        first.setdefault((event.workspace_id, event.event_id[:128]), event)
    if not first:
        return [], None
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
    dialect = session.get_bind().dialect.name
    if dialect != "sqlite":
        inserted = {(row[0], row[1]) for row in session.execute(_mark_stmt(dialect), rows)}
        return [event for key, event in first.items() if key in inserted], None
    # Without RETURNING, whose rows are each a step with the GIL released (see
    # kit/precompiled.py): the keys marked before, in one query per 500.
    seen: set[tuple[str, str]] = set()
    by_workspace: dict[str, list[str]] = {}
    for ws, event_id in first:
        by_workspace.setdefault(ws, []).append(event_id)
    for ws, event_ids in by_workspace.items():
        for start in range(0, len(event_ids), 500):
            seen.update(
                fetch_all(
                    session,
                    select(AppliedEvent.workspace_id, AppliedEvent.event_id).where(
                        AppliedEvent.workspace_id == ws,
                        AppliedEvent.event_id.in_(event_ids[start : start + 500]),
                    ),
                )
            )
    if not seen:
        return list(first.values()), rows
    fresh_rows = [r for r in rows if (r["workspace_id"], r["event_id"]) not in seen]
    return [event for key, event in first.items() if key not in seen], fresh_rows


def settle_applied(
    session: Session, pending: list[dict[str, Any]] | None, started: datetime, done: datetime
) -> None:
    """The batch's markers say ``done``, when its consumers finished: the markers
    :func:`claim_unapplied` left to write (SQLite), or those it stamped ``started``."""
    if pending is None:
        restamp_applied(session, started, done)
    elif pending:
        for row in pending:
            row["applied_at"] = done
        executemany(session, _plain_mark_stmt(), pending)


@functools.cache
def _plain_mark_stmt() -> Any:
    return sqlite.insert(cast(Table, AppliedEvent.__table__)).on_conflict_do_nothing(
        index_elements=["workspace_id", "event_id"]
    )


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
