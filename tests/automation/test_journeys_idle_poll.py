"""An idle executor writes nothing (decision 0051). `liebian serve` runs the executor thread
all the time; when no step is due it looks every ``interval`` (0.2 s) for work. That look is a
read: a claim — a write transaction, ``BEGIN IMMEDIATE`` and the writer lock on SQLite, an
UPDATE on PostgreSQL — is made only when a step is due, so an idle server neither writes nor
holds up the other writers. Steps of a paused journey that are due do not count as work."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from journey_support import make_tag, workspace_with_contacts
from sqlalchemy import event, func, select, update

from liebian.app.runtime import Runtime
from liebian.automation import service
from liebian.automation.executor import Executor, ExecutorConfig, ExecutorThread
from liebian.automation.models import JourneyStepExecution
from liebian.kit.clock import utcnow
from liebian.kit.db import session_scope

WRITES = ("BEGIN IMMEDIATE", "INSERT", "UPDATE", "DELETE")


@contextmanager
def statements(runtime: Runtime) -> Iterator[list[str]]:
    """Every statement sent to the database (any connection of the runtime's engines) while
    the block runs."""
    seen: list[str] = []
    lock = threading.Lock()

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        with lock:
            seen.append(statement.lstrip().upper())

    engines = {runtime.sessions.kw["bind"], runtime.read_sessions.kw["bind"]}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


def _writes(seen: list[str]) -> list[str]:
    return [s for s in seen if s.startswith(WRITES) or " UPDATE " in s[:40]]


def _journey(runtime: Runtime, name: str, contacts: list[str], ws: str, tag: str) -> str:
    with session_scope(runtime.sessions) as s:
        definition = {
            "trigger": {"type": "manual"},
            "steps": [{"id": "t", "type": "add_tag", "tag_ids": [tag]}],
        }
        j = service.create(s, ws, name, definition)
        service.publish(s, j)
        service.enrol(s, j, contacts, trigger="manual")
        return j.id


def test_an_idle_poll_reads_and_never_writes(runtime: Runtime) -> None:
    sessions = runtime.sessions
    ws, contacts = workspace_with_contacts(sessions, 3)
    tag = make_tag(sessions, ws, "空闲")
    # One step due in an hour (live journey), one due now in a paused journey.
    later = _journey(runtime, "以后", contacts[:1], ws, tag)
    paused = _journey(runtime, "暂停", contacts[1:2], ws, tag)
    E = JourneyStepExecution
    with session_scope(sessions) as s:
        s.execute(update(E).where(E.journey_id == later).values(
            due_at=utcnow() + timedelta(hours=1)))  # fmt: skip
        service.pause(s, service.get(s, ws, paused))
    thread = ExecutorThread(
        Executor(sessions, config=ExecutorConfig(lanes=1), runtime=runtime), interval=0.02
    )
    thread.start()
    try:
        time.sleep(0.2)  # the first claim at start-up (a write, finding nothing) is over
        with statements(runtime) as seen:
            time.sleep(0.5)  # ~25 looks
        looks = [s for s in seen if s.startswith("SELECT")]
        assert len(looks) >= 5, seen  # it did poll
        assert _writes(seen) == [], _writes(seen)
        # A step that falls due is claimed and run by the next look, without a wake-up.
        with session_scope(sessions) as s:
            s.execute(update(E).where(E.journey_id == later).values(due_at=utcnow()))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with session_scope(sessions) as s:
                done = s.scalar(
                    select(func.count()).where(E.journey_id == later, E.status == "done")
                )
            if done:
                break
            time.sleep(0.02)
        assert done == 1
        with session_scope(sessions) as s:
            # The paused journey's due step is left for when it resumes.
            assert s.scalar(select(E.status).where(E.journey_id == paused)) == "pending"
    finally:
        thread.stop()
    assert thread.last_error is None
