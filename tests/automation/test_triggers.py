"""Triggers on SQLite and PostgreSQL: bus changes (tags, segments), events (with property
filters, waits, goals), date-attribute scans, entry rules."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from journey_support import Clock, make_tag, workspace_with_contacts
from sqlalchemy import select

from liebian.app.runtime import Runtime
from liebian.automation import service
from liebian.automation.executor import Executor, ExecutorConfig
from liebian.automation.models import JourneyRun, JourneyStepExecution
from liebian.automation.triggers import JourneyEvents, apply_events, drain_outbox, install, scan
from liebian.events.hooks import HookEvent
from liebian.kit.db import session_scope


def _journey(s: Any, ws: str, name: str, trigger: dict[str, Any], steps: list[Any],
             **extra: Any) -> str:  # fmt: skip
    j = service.create(s, ws, name, {"trigger": trigger, "steps": steps, **extra})
    service.publish(s, j)
    return j.id


def _runs(runtime: Runtime, journey_id: str) -> list[JourneyRun]:
    with session_scope(runtime.sessions) as s:
        return list(s.scalars(select(JourneyRun).where(JourneyRun.journey_id == journey_id)))


def _event(ws: str, name: str, user: str, eid: str, **props: Any) -> HookEvent:
    now = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    return HookEvent(workspace_id=ws, event_id=eid, event=name, ts=now, received_at=now,
                     user_id=user, properties=props or None)  # fmt: skip


def test_bus_event_and_date_triggers(runtime: Runtime) -> None:
    from liebian.contacts.attributes import define, set_attributes
    from liebian.contacts.tags import add_tags

    sessions = runtime.sessions
    ws, contacts = workspace_with_contacts(sessions, 3)
    vip, marker = make_tag(sessions, ws, "VIP"), make_tag(sessions, ws, "标记")
    mark = [{"id": "m", "type": "add_tag", "tag_ids": [marker]}]
    clock = Clock()
    install(sessions)  # the trigger outbox, as serve and workers install it
    from liebian.segments.models import Segment

    with session_scope(sessions) as s:
        define(s, ws, "birthday", "date", "生日")
        s.add(Segment(id="seg_x", workspace_id=ws, name="新客", kind="static"))
        s.flush()
        on_tag = _journey(s, ws, "打标签", {"type": "tag_added", "tag_id": vip}, mark)
        on_seg = _journey(s, ws, "进人群", {"type": "segment_entered", "segment_id": "seg_x"},
                          mark, entry={"mode": "every_time"})  # fmt: skip
        on_buy = _journey(
            s, ws, "首单", {"type": "event", "event": "purchase", "where": {"first": True}},
            [{"id": "w", "type": "wait_event", "event": "share", "timeout": {"days": 2},
              "timeout_next": None}, *mark],
            goal_event="share",
        )  # fmt: skip
        on_bday = _journey(
            s, ws, "生日", {"type": "date_attribute", "attribute": "birthday", "offset_days": -7,
                           "at": "10:00"}, mark,
        )  # fmt: skip
    with session_scope(sessions) as s:
        add_tags(s, ws, contacts[:2], [vip])
    # segments publish this with their change (the outbox row is written in that transaction)
    from liebian.kit.bus import publish_after_commit

    with session_scope(sessions) as s:
        publish_after_commit(s, "segment.entered", {"workspace_id": ws, "segment_id": "seg_x",
                                                    "contact_ids": [contacts[2]], "version": 3})  # fmt: skip
        publish_after_commit(s, "segment.entered", {"workspace_id": ws,
                             "segment_id": "seg_other", "contact_ids": [contacts[0]]})  # fmt: skip
    # a change rolled back writes nothing
    try:
        with session_scope(sessions) as s:
            add_tags(s, ws, contacts[2:], [vip])
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    assert drain_outbox(sessions, clock()) == 3
    assert sorted(r.contact_id for r in _runs(runtime, on_tag)) == sorted(contacts[:2])
    assert [r.contact_id for r in _runs(runtime, on_seg)] == [contacts[2]]
    # the marker tag added by the journeys themselves triggers nothing (no journey on it)
    assert drain_outbox(sessions, clock()) == 0
    # events: the hooks consumer selects names live journeys use
    consumer = JourneyEvents()
    with runtime.sessions() as s:
        consumer.refresh(s)
    assert consumer.names == {"purchase", "share"}
    assert consumer.select({"event": "purchase", "user_id": "u000000"})
    assert not consumer.select({"event": "page_view", "user_id": "u000000"})
    with session_scope(sessions) as s:
        apply_events(s, [
            _event(ws, "purchase", "u000000", "e1", first=True),
            _event(ws, "purchase", "u000001", "e2", first=False),  # filtered out
            _event(ws, "purchase", "u000002", "e3", first=True),
        ], now=clock())  # fmt: skip
    assert sorted(r.contact_id for r in _runs(runtime, on_buy)) == sorted(
        [contacts[0], contacts[2]]
    )
    ex = Executor(sessions, clock=clock, config=ExecutorConfig(), runtime=runtime)
    try:
        ex.run_until_idle()
        with session_scope(sessions) as s:  # u000000 shares: its wait ends at once, converted
            apply_events(s, [_event(ws, "share", "u000000", "e4")], now=clock())
        ex.run_until_idle()
        clock.advance(days=2, seconds=1)
        ex.run_until_idle()
    finally:
        ex.close()
    with session_scope(sessions) as s:
        waits = {
            r.contact_id: e.result
            for e, r in s.execute(
                select(JourneyStepExecution, JourneyRun)
                .join(JourneyRun, JourneyRun.id == JourneyStepExecution.run_id)
                .where(JourneyRun.journey_id == on_buy, JourneyStepExecution.step_id == "w")
            )
        }
    assert waits == {contacts[0]: "event:share", contacts[2]: "timeout"}
    buy_runs = {r.contact_id: r for r in _runs(runtime, on_buy)}
    assert buy_runs[contacts[0]].converted_at is not None
    assert buy_runs[contacts[2]].converted_at is None
    # date attribute: a birthday 7 days after today (Shanghai) starts the journey at 10:00
    today = clock().astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai")).date()
    bday = today + timedelta(days=7)
    with session_scope(sessions) as s:
        set_attributes(
            s, ws, contacts[1], {"birthday": date(1990, bday.month, bday.day).isoformat()}
        )
        set_attributes(s, ws, contacts[2], {"birthday": "1991-01-01"})
    with session_scope(sessions) as s:
        assert scan(s, clock()) == 1
    with session_scope(sessions) as s:
        assert scan(s, clock()) == 0  # once a day
        due = s.scalar(
            select(JourneyStepExecution.due_at)
            .join(JourneyRun, JourneyRun.id == JourneyStepExecution.run_id)
            .where(JourneyRun.journey_id == on_bday)
        )
    assert due == datetime.combine(today, datetime.min.time(), tzinfo=UTC) + timedelta(hours=2)


def test_entry_rule_once_per_days(runtime: Runtime) -> None:
    sessions = runtime.sessions
    ws, contacts = workspace_with_contacts(sessions, 1)
    t = make_tag(sessions, ws, "x")
    clock = Clock()
    with session_scope(sessions) as s:
        jid = _journey(s, ws, "每周", {"type": "manual"}, [{"id": "a", "type": "add_tag",
                       "tag_ids": [t]}], entry={"mode": "once_per_days", "days": 7})  # fmt: skip
    ex = Executor(sessions, clock=clock, config=ExecutorConfig(), runtime=runtime)
    try:
        entered = []
        for _day in range(10):
            with session_scope(sessions) as s:
                got = service.enrol(s, service.get(s, ws, jid), contacts, trigger="manual",
                                    now=clock())  # fmt: skip
                entered.append(got.entered)
            ex.run_until_idle()
            clock.advance(days=1)
    finally:
        ex.close()
    assert entered == [1, 0, 0, 0, 0, 0, 0, 1, 0, 0]
