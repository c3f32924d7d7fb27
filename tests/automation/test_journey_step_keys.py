"""A step row belongs to its run: with the step's own foreign keys to the workspace and the
journey dropped (decision 0056), deleting a journey or a workspace still deletes every step
row through the runs; and the wait_event index holds only the rows of wait_event steps, while
a matching event still finds those."""

from __future__ import annotations

from datetime import timedelta

from journey_support import Clock, workspace_with_contacts
from sqlalchemy import delete, func, select, text

from liebian.app.runtime import Runtime
from liebian.automation import repository, service
from liebian.automation.models import Journey, JourneyRun, JourneyStepExecution
from liebian.kit.db import session_scope
from liebian.workspaces.models import Workspace

E = JourneyStepExecution
INDEX = "ix_journey_steps_waiting"


def _journey(runtime: Runtime, ws: str, contacts: list[str], name: str, clock: Clock) -> str:
    with session_scope(runtime.sessions) as s:
        definition = {
            "trigger": {"type": "manual"},
            "steps": [
                {"id": "w", "type": "wait_event", "event": "paid", "timeout": {"days": 3}},
                {"id": "pause", "type": "wait", "duration": {"hours": 1}},
            ],
        }
        j = service.create(s, ws, name, definition)
        service.publish(s, j)
        service.enrol(s, j, contacts, trigger="manual", now=clock())
        return j.id


def _steps(runtime: Runtime, **where: str) -> int:
    with session_scope(runtime.sessions) as s:
        stmt = select(func.count()).select_from(E)
        for column, value in where.items():
            stmt = stmt.where(getattr(E, column) == value)
        return int(s.scalar(stmt) or 0)


def test_deleting_a_journey_or_a_workspace_deletes_its_step_rows(runtime: Runtime) -> None:
    clock = Clock()
    ws, contacts = workspace_with_contacts(runtime.sessions, 3)
    kept = _journey(runtime, ws, contacts, "留下", clock)
    gone = _journey(runtime, ws, contacts[:2], "删除", clock)
    assert _steps(runtime, journey_id=gone) == 2 and _steps(runtime, journey_id=kept) == 3
    with session_scope(runtime.sessions) as s:
        s.execute(delete(Journey).where(Journey.id == gone))
    assert _steps(runtime, journey_id=gone) == 0
    assert _steps(runtime, journey_id=kept) == 3
    with session_scope(runtime.sessions) as s:
        s.execute(delete(Workspace).where(Workspace.id == ws))
    assert _steps(runtime) == 0
    with session_scope(runtime.sessions) as s:
        assert s.scalar(select(func.count()).select_from(JourneyRun)) == 0


def test_the_waiting_index_holds_wait_event_rows_and_still_matches(runtime: Runtime) -> None:
    clock = Clock()
    ws, contacts = workspace_with_contacts(runtime.sessions, 2)
    _journey(runtime, ws, contacts, "等待", clock)
    with session_scope(runtime.sessions) as s:
        if s.get_bind().dialect.name == "postgresql":
            ddl = s.scalar(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"), {"n": INDEX}
            )
        else:
            ddl = s.scalar(text("SELECT sql FROM sqlite_master WHERE name = :n"), {"n": INDEX})
        assert "waiting_event IS NOT NULL" in str(ddl)
        clock.advance(minutes=5)
        matched = repository.match_waiting(s, ws, "paid", contacts[:1], clock())
    assert matched == 1
    with session_scope(runtime.sessions) as s:
        rows = s.execute(select(E.event_matched, E.due_at).where(E.step_id == "w")).all()
    assert sorted(m for m, _ in rows) == [False, True]
    assert any(m and due <= clock() + timedelta(seconds=1) for m, due in rows)
